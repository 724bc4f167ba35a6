"""Manifests and indexes, their references, and the referrers of a subject."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from registry.db.models import Manifest, ManifestBlob, ManifestReference, Tag
from registry.db.session import fetch_one, insert_ignoring_conflicts
from registry.oci.manifest import Manifest as ParsedManifest


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    id: int
    digest: str
    media_type: str
    size: int


@dataclass(frozen=True, slots=True)
class ReferrerRecord:
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations: dict[str, Any] | None


# Payloads are fetched separately (``payload``): HEAD never needs them, and GET can take them
# from a cache, since a digest's bytes never change.
_COLUMNS = (Manifest.id, Manifest.digest, Manifest.media_type, Manifest.size)


# The pull hot path's lookups, as plain SQL for fetch_rows.
_FIND_BY_TAG = (
    "SELECT m.id, m.digest, m.media_type, m.size FROM manifests m"
    " JOIN repositories r ON r.id = m.repository_id JOIN tags t ON t.manifest_id = m.id"
    " WHERE r.name = :repository AND t.name = :tag"
)
_FIND_BY_DIGEST = (
    "SELECT m.id, m.digest, m.media_type, m.size FROM manifests m"
    " JOIN repositories r ON r.id = m.repository_id"
    " WHERE r.name = :repository AND m.digest = :digest"
)


def _record(row: Any) -> ManifestRecord | None:
    return ManifestRecord(row.id, row.digest, row.media_type, row.size) if row else None


class ManifestStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_digest(self, repository_id: int, digest: str) -> ManifestRecord | None:
        row = (
            await self.session.execute(
                select(*_COLUMNS).where(
                    Manifest.repository_id == repository_id, Manifest.digest == digest
                )
            )
        ).first()
        return _record(row)

    async def by_tag(self, repository_id: int, tag: str) -> ManifestRecord | None:
        row = (
            await self.session.execute(
                select(*_COLUMNS)
                .join(Tag, Tag.manifest_id == Manifest.id)
                .where(Tag.repository_id == repository_id, Tag.name == tag)
            )
        ).first()
        return _record(row)

    async def find(
        self, repository: str, *, tag: str | None = None, digest: str | None = None
    ) -> ManifestRecord | None:
        """A manifest of ``repository`` by tag or digest, in one query (the pull hot path)."""
        if tag is not None:
            sql = _FIND_BY_TAG
            params = {"repository": repository, "tag": tag}
        else:
            sql = _FIND_BY_DIGEST
            params = {"repository": repository, "digest": digest}
        row = await fetch_one(self.session, sql, params)
        return ManifestRecord(row[0], row[1], row[2], row[3]) if row else None

    async def payload(self, manifest_id: int) -> bytes:
        row = await fetch_one(
            self.session, "SELECT payload FROM manifests WHERE id = :id", {"id": manifest_id}
        )
        if row is None:
            raise LookupError(f"manifest {manifest_id} is gone")
        return bytes(row[0])

    async def missing(self, repository_id: int, digests: Iterable[str]) -> set[str]:
        wanted = set(digests)
        if not wanted:
            return set()
        present = await self.session.scalars(
            select(Manifest.digest).where(
                Manifest.repository_id == repository_id, Manifest.digest.in_(wanted)
            )
        )
        return wanted - set(present.all())

    async def put(
        self, repository_id: int, digest: str, payload: bytes, parsed: ParsedManifest
    ) -> int:
        """Store a manifest and its references; pushing the same bytes again changes nothing.

        The row is read back FOR SHARE, so a concurrent DELETE of the same manifest waits for
        this transaction instead of removing the row the caller is about to tag.
        """
        values = {
            "repository_id": repository_id,
            "digest": digest,
            "media_type": parsed.media_type,
            "size": len(payload),
            "payload": payload,
            "artifact_type": parsed.referrer_artifact_type,
            "subject_digest": parsed.subject.digest if parsed.subject else None,
            "annotations": parsed.annotations or None,
        }
        locked = (
            select(Manifest.id)
            .where(Manifest.repository_id == repository_id, Manifest.digest == digest)
            .with_for_update(read=True)
        )
        manifest_id = await self.session.scalar(locked)
        for _ in range(3):
            if manifest_id is not None:
                break
            await self.session.execute(
                insert_ignoring_conflicts(
                    self.session, Manifest, values, ["repository_id", "digest"]
                )
            )
            # None only if a concurrent delete removed the row our insert deferred to.
            manifest_id = await self.session.scalar(locked)
        if manifest_id is None:
            raise RuntimeError(f"manifest {digest} kept vanishing while being stored")
        for blob in {d.digest for d in parsed.blob_references()}:
            await self.session.execute(
                insert_ignoring_conflicts(
                    self.session,
                    ManifestBlob,
                    {"manifest_id": manifest_id, "blob_digest": blob},
                    ["manifest_id", "blob_digest"],
                )
            )
        for child in {d.digest for d in parsed.manifests}:
            await self.session.execute(
                insert_ignoring_conflicts(
                    self.session,
                    ManifestReference,
                    {"parent_id": manifest_id, "child_digest": child},
                    ["parent_id", "child_digest"],
                )
            )
        return manifest_id

    async def delete(self, repository_id: int, digest: str) -> bool:
        """Delete a manifest; its tags and reference rows go with it (ON DELETE CASCADE)."""
        manifest_id = await self.session.scalar(
            select(Manifest.id).where(
                Manifest.repository_id == repository_id, Manifest.digest == digest
            )
        )
        if manifest_id is None:
            return False
        # Explicit deletes as well, so the cascade does not depend on SQLite's FK pragma.
        for model, column in (
            (Tag, Tag.manifest_id),
            (ManifestBlob, ManifestBlob.manifest_id),
            (ManifestReference, ManifestReference.parent_id),
        ):
            await self.session.execute(delete(model).where(column == manifest_id))
        await self.session.execute(delete(Manifest).where(Manifest.id == manifest_id))
        return True

    async def referrers(
        self, repository_id: int, subject: str, artifact_type: str | None = None
    ) -> list[ReferrerRecord]:
        query = (
            select(
                Manifest.digest,
                Manifest.media_type,
                Manifest.size,
                Manifest.artifact_type,
                Manifest.annotations,
            )
            .where(Manifest.repository_id == repository_id, Manifest.subject_digest == subject)
            .order_by(Manifest.created_at, Manifest.id)
        )
        if artifact_type is not None:
            query = query.where(Manifest.artifact_type == artifact_type)
        rows = (await self.session.execute(query)).all()
        return [
            ReferrerRecord(r.digest, r.media_type, r.size, r.artifact_type, r.annotations)
            for r in rows
        ]

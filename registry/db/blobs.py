"""Blobs and the repository links through which every blob read goes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from registry.db.models import Blob, Repository, RepositoryBlob, utcnow
from registry.db.session import execute_sql, fetch_one


@dataclass(frozen=True, slots=True)
class BlobRecord:
    digest: str
    size: int


class BlobStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, digest: str) -> BlobRecord | None:
        row = await self.session.get(Blob, digest)
        return BlobRecord(row.digest, row.size) if row else None

    async def linked(self, repository_id: int, digest: str) -> BlobRecord | None:
        """The blob if this repository may read it; None if it is absent or not linked here."""
        row = (
            await self.session.execute(
                select(Blob.digest, Blob.size)
                .join(RepositoryBlob, RepositoryBlob.blob_digest == Blob.digest)
                .where(RepositoryBlob.repository_id == repository_id, Blob.digest == digest)
            )
        ).first()
        return BlobRecord(row.digest, row.size) if row else None

    async def linked_by_name(self, repository: str, digest: str) -> BlobRecord | None:
        """As ``linked``, by repository name, in one query (the pull hot path)."""
        row = await fetch_one(
            self.session,
            "SELECT b.digest, b.size FROM blobs b"
            " JOIN repository_blobs l ON l.blob_digest = b.digest"
            " JOIN repositories r ON r.id = l.repository_id"
            " WHERE r.name = :repository AND b.digest = :digest",
            {"repository": repository, "digest": digest},
        )
        return BlobRecord(row[0], row[1]) if row else None

    async def missing(self, repository_id: int, digests: Iterable[str]) -> set[str]:
        wanted = set(digests)
        if not wanted:
            return set()
        # FOR SHARE: a concurrent unlink waits until the manifest that needs these links is
        # stored (and then its references keep the blobs from garbage collection).
        present = await self.session.scalars(
            select(RepositoryBlob.blob_digest)
            .where(
                RepositoryBlob.repository_id == repository_id,
                RepositoryBlob.blob_digest.in_(wanted),
            )
            .with_for_update(read=True)
        )
        return wanted - set(present.all())

    async def add(self, digest: str, size: int) -> None:
        await execute_sql(
            self.session,
            "INSERT INTO blobs (digest, size, created_at) VALUES (:digest, :size, :now)"
            " ON CONFLICT (digest) DO NOTHING",
            {"digest": digest, "size": size, "now": utcnow()},
        )

    async def link(self, repository_id: int, digest: str) -> None:
        await execute_sql(
            self.session,
            "INSERT INTO repository_blobs (repository_id, blob_digest, created_at)"
            " VALUES (:repository, :digest, :now)"
            " ON CONFLICT (repository_id, blob_digest) DO NOTHING",
            {"repository": repository_id, "digest": digest, "now": utcnow()},
        )

    async def unlink(self, repository_id: int, digest: str) -> bool:
        result = await self.session.execute(
            delete(RepositoryBlob).where(
                RepositoryBlob.repository_id == repository_id,
                RepositoryBlob.blob_digest == digest,
            )
        )
        return bool(result.rowcount)

    async def linked_in_tenant(self, tenant: str, digest: str) -> BlobRecord | None:
        """The blob if any repository of ``tenant`` links it: automatic mounts stay inside."""
        row = (
            await self.session.execute(
                select(Blob.digest, Blob.size)
                .join(RepositoryBlob, RepositoryBlob.blob_digest == Blob.digest)
                .join(Repository, Repository.id == RepositoryBlob.repository_id)
                .where(
                    Blob.digest == digest,
                    (Repository.name == tenant)
                    | Repository.name.startswith(f"{tenant}/", autoescape=True),
                )
                .limit(1)
            )
        ).first()
        return BlobRecord(row.digest, row.size) if row else None

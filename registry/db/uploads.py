"""Upload sessions: where an upload stands, visible to every process that serves the registry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from registry.db.models import Repository, UploadSession, utcnow


@dataclass(frozen=True, slots=True)
class UploadRecord:
    id: str
    repository_id: int
    size: int
    writer_state: dict[str, Any] | None
    created_at: datetime


class UploadStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self,
        upload_id: str,
        repository_id: int,
        *,
        holder: str | None = None,
        held_until: datetime | None = None,
    ) -> UploadRecord:
        """A new session; with ``holder``, already claimed by the request creating it."""
        now = utcnow()
        self.session.add(
            UploadSession(
                id=upload_id,
                repository_id=repository_id,
                size=0,
                writer_state=None,
                holder=holder,
                held_until=held_until if holder else None,
                created_at=now,
                updated_at=now,
            )
        )
        await self.session.flush()
        return UploadRecord(upload_id, repository_id, 0, None, now)

    async def get(self, upload_id: str, repository_id: int) -> UploadRecord | None:
        row = (
            await self.session.execute(
                select(UploadSession).where(
                    UploadSession.id == upload_id, UploadSession.repository_id == repository_id
                )
            )
        ).scalar_one_or_none()
        if row is None:
            return None
        return UploadRecord(row.id, row.repository_id, row.size, row.writer_state, row.created_at)

    async def claim(self, upload_id: str, size: int, holder: str, until: datetime) -> bool:
        """Take the upload for one request if it stands at ``size`` and nobody holds it."""
        now = utcnow()
        result = await self.session.execute(
            update(UploadSession)
            .where(
                UploadSession.id == upload_id,
                UploadSession.size == size,
                (UploadSession.holder.is_(None)) | (UploadSession.held_until < now),
            )
            .values(holder=holder, held_until=until, updated_at=now)
        )
        return bool(result.rowcount)

    async def advance(
        self,
        upload_id: str,
        holder: str,
        size: int,
        writer_state: dict[str, Any],
        *,
        release: bool = True,
    ) -> bool:
        """Record the holder's progress; false if its claim was lost meanwhile."""
        values: dict[str, Any] = {
            "size": size,
            "writer_state": writer_state,
            "updated_at": utcnow(),
        }
        if release:
            values.update(holder=None, held_until=None)
        result = await self.session.execute(
            update(UploadSession)
            .where(UploadSession.id == upload_id, UploadSession.holder == holder)
            .values(**values)
        )
        return bool(result.rowcount)

    async def release(self, upload_id: str, holder: str) -> None:
        await self.session.execute(
            update(UploadSession)
            .where(UploadSession.id == upload_id, UploadSession.holder == holder)
            .values(holder=None, held_until=None)
        )

    async def delete(self, upload_id: str) -> bool:
        result = await self.session.execute(
            delete(UploadSession).where(UploadSession.id == upload_id)
        )
        return bool(result.rowcount)

    async def expired(self, before: datetime, limit: int = 100) -> list[tuple[str, str]]:
        """(upload id, repository name) of sessions untouched since ``before``."""
        rows = await self.session.execute(
            select(UploadSession.id, Repository.name)
            .join(Repository, Repository.id == UploadSession.repository_id)
            .where(UploadSession.updated_at < before)
            .limit(limit)
        )
        return [(r.id, r.name) for r in rows]

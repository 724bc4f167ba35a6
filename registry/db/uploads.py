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

    async def create(self, upload_id: str, repository_id: int) -> UploadRecord:
        now = utcnow()
        self.session.add(
            UploadSession(
                id=upload_id,
                repository_id=repository_id,
                size=0,
                writer_state=None,
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

    async def advance(
        self, upload_id: str, expected_size: int, size: int, writer_state: dict[str, Any]
    ) -> bool:
        """Record progress only if nobody else moved the upload meanwhile (compare-and-set)."""
        result = await self.session.execute(
            update(UploadSession)
            .where(UploadSession.id == upload_id, UploadSession.size == expected_size)
            .values(size=size, writer_state=writer_state, updated_at=utcnow())
        )
        return bool(result.rowcount)

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

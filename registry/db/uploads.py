"""Upload sessions: where an upload stands, visible to every process that serves the registry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from registry.db.models import Repository, UploadSession, utcnow
from registry.db.session import as_datetime, as_json, execute_sql, fetch_one


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
        await execute_sql(
            self.session,
            "INSERT INTO upload_sessions"
            " (id, repository_id, size, holder, held_until, created_at, updated_at)"
            " VALUES (:id, :repository, 0, :holder, :until, :now, :now)",
            {
                "id": upload_id,
                "repository": repository_id,
                "holder": holder,
                "until": held_until if holder else None,
                "now": now,
            },
        )
        return UploadRecord(upload_id, repository_id, 0, None, now)

    async def get(self, upload_id: str, repository_id: int) -> UploadRecord | None:
        row = await fetch_one(
            self.session,
            "SELECT size, writer_state, created_at FROM upload_sessions"
            " WHERE id = :id AND repository_id = :repository",
            {"id": upload_id, "repository": repository_id},
        )
        if row is None:
            return None
        created = as_datetime(row[2])
        assert created is not None
        return UploadRecord(upload_id, repository_id, row[0], as_json(row[1]), created)

    async def claim(self, upload_id: str, size: int, holder: str, until: datetime) -> bool:
        """Take the upload for one request if it stands at ``size`` and nobody holds it."""
        return bool(
            await execute_sql(
                self.session,
                "UPDATE upload_sessions SET holder = :holder, held_until = :until,"
                " updated_at = :now WHERE id = :id AND size = :size"
                " AND (holder IS NULL OR held_until < :now)",
                {"id": upload_id, "size": size, "holder": holder, "until": until, "now": utcnow()},
            )
        )

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
        await execute_sql(
            self.session,
            "UPDATE upload_sessions SET holder = NULL, held_until = NULL"
            " WHERE id = :id AND holder = :holder",
            {"id": upload_id, "holder": holder},
        )

    async def delete(self, upload_id: str) -> bool:
        return bool(
            await execute_sql(
                self.session, "DELETE FROM upload_sessions WHERE id = :id", {"id": upload_id}
            )
        )

    async def expired(self, before: datetime, limit: int = 100) -> list[tuple[str, str]]:
        """(upload id, repository name) of sessions untouched since ``before``."""
        rows = await self.session.execute(
            select(UploadSession.id, Repository.name)
            .join(Repository, Repository.id == UploadSession.repository_id)
            .where(UploadSession.updated_at < before)
            .limit(limit)
        )
        return [(r.id, r.name) for r in rows]

"""Tags: names pointing at manifests, listed in lexical order with pagination."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from registry.db.models import Tag, utcnow
from registry.db.session import upsert


class TagStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def set(self, repository_id: int, name: str, manifest_id: int) -> None:
        now = utcnow()
        await self.session.execute(
            upsert(
                self.session,
                Tag,
                {
                    "repository_id": repository_id,
                    "name": name,
                    "manifest_id": manifest_id,
                    "updated_at": now,
                },
                ["repository_id", "name"],
                {"manifest_id": manifest_id, "updated_at": now},
            )
        )

    async def list(self, repository_id: int, limit: int | None, last: str | None) -> list[str]:
        query = select(Tag.name).where(Tag.repository_id == repository_id).order_by(Tag.name)
        if last:
            query = query.where(Tag.name > last)
        if limit is not None:
            query = query.limit(limit)
        return list((await self.session.scalars(query)).all())

    async def delete(self, repository_id: int, name: str) -> bool:
        result = await self.session.execute(
            delete(Tag).where(Tag.repository_id == repository_id, Tag.name == name)
        )
        return bool(result.rowcount)

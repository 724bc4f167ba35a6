"""Repositories: created on first push, listed by the catalog."""

from __future__ import annotations

from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from registry.db.models import Manifest, Repository, RepositoryBlob, utcnow
from registry.db.session import execute_sql, fetch_one


class RepositoryStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_id(self, name: str) -> int | None:
        row = await fetch_one(
            self.session, "SELECT id FROM repositories WHERE name = :name", {"name": name}
        )
        return row[0] if row else None

    async def get_or_create(self, name: str) -> int:
        repo_id = await self.get_id(name)
        if repo_id is not None:
            return repo_id
        await execute_sql(
            self.session,
            "INSERT INTO repositories (name, created_at) VALUES (:name, :now)"
            " ON CONFLICT (name) DO NOTHING",
            {"name": name, "now": utcnow()},
        )
        repo_id = await self.get_id(name)
        assert repo_id is not None
        return repo_id

    async def catalog(self, limit: int | None, last: str | None) -> list[str]:
        """Names of repositories that hold content, sorted, after ``last``."""
        has_content = or_(
            exists().where(Manifest.repository_id == Repository.id),
            exists().where(RepositoryBlob.repository_id == Repository.id),
        )
        query = select(Repository.name).where(has_content).order_by(Repository.name)
        if last:
            query = query.where(Repository.name > last)
        if limit is not None:
            query = query.limit(limit)
        return list((await self.session.scalars(query)).all())

    async def any_in_tenant(self, tenant: str) -> bool:
        """Whether any repository of ``tenant`` holds content (manifests or blobs)."""
        names = select(Repository.id).where(
            (Repository.name == tenant) | Repository.name.startswith(f"{tenant}/", autoescape=True)
        )
        has = or_(
            exists().where(Manifest.repository_id.in_(names)),
            exists().where(RepositoryBlob.repository_id.in_(names)),
        )
        return bool(await self.session.scalar(select(has)))

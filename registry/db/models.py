"""The metadata schema. Alembic migrations in migrations/ must match it (a test checks).

References are modelled explicitly (repository->blob links, manifest->blob, index->child,
tag->manifest, referrer->subject) so that garbage collection can find what is unreferenced
from the database alone, without walking storage.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

DIGEST = String(200)


def listed_name(length: int) -> String:
    """A name listed in order (catalog, tags): compared bytewise on every database.

    Distribution sorts by bytes, and so does SQLite (BINARY). PostgreSQL would use the
    database's default collation, under which en_US puts ``a_b`` before ``a-b`` and ``a``
    before ``B``: the "C" collation keeps order and ``last`` pagination bytewise there too.
    """
    return String(length).with_variant(String(length, collation="C"), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Repository(Base):
    __tablename__ = "repositories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(listed_name(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Blob(Base):
    """A blob's content, stored once by digest however many repositories link to it."""

    __tablename__ = "blobs"

    digest: Mapped[str] = mapped_column(DIGEST, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RepositoryBlob(Base):
    """Which repository may read which blob: every blob read goes through this link."""

    __tablename__ = "repository_blobs"

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    blob_digest: Mapped[str] = mapped_column(
        ForeignKey("blobs.digest", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Manifest(Base):
    """A manifest or index, its payload kept byte for byte as pushed."""

    __tablename__ = "manifests"
    __table_args__ = (
        UniqueConstraint("repository_id", "digest", name="uq_manifests_repository_digest"),
        Index("ix_manifests_subject", "repository_id", "subject_digest"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(DIGEST)
    media_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    artifact_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    subject_digest: Mapped[str | None] = mapped_column(DIGEST, nullable=True)
    annotations: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ManifestBlob(Base):
    """A blob (config or layer) a manifest references."""

    __tablename__ = "manifest_blobs"

    manifest_id: Mapped[int] = mapped_column(
        ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True
    )
    blob_digest: Mapped[str] = mapped_column(
        ForeignKey("blobs.digest", ondelete="RESTRICT"), primary_key=True, index=True
    )


class ManifestReference(Base):
    """A child manifest an index lists, by digest within the same repository."""

    __tablename__ = "manifest_references"

    parent_id: Mapped[int] = mapped_column(
        ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True
    )
    child_digest: Mapped[str] = mapped_column(DIGEST, primary_key=True, index=True)


class Tag(Base):
    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("repository_id", "name", name="uq_tags_repository_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(listed_name(128))
    manifest_id: Mapped[int] = mapped_column(
        ForeignKey("manifests.id", ondelete="CASCADE"), index=True
    )
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UploadSession(Base):
    """A blob upload in progress. Kept here, not in process memory, so any process continues it."""

    __tablename__ = "upload_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), index=True
    )
    # Bytes received and stored so far: the next chunk must start here.
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    # The storage writer's resumable state (see storage.driver.FileWriter.state).
    writer_state: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The request currently writing a chunk, and until when its claim holds: one writer at a
    # time, whichever process or replica it runs on (docs/uploads.md).
    holder: Mapped[str | None] = mapped_column(String(36), nullable=True)
    held_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, index=True
    )


# --- Identities, tenants and what they may do (auth.policy decides; these only record). ---


class Tenant(Base):
    """A namespace: the first path component of its repositories' names."""

    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    # Public tenants may be pulled anonymously; nothing else is public.
    public: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    # argon2id, from auth.passwords.
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(default=False)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"

    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    # reader, writer or admin (auth.policy.ROLE_ACTIONS).
    role: Mapped[str] = mapped_column(String(32))


class Robot(Base):
    """A non-human account of one tenant, for CI pushes and cluster pulls."""

    __tablename__ = "robots"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_robots_tenant_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    # Keyed fast hash of a high-entropy secret (auth.passwords.robot_secret_hash).
    secret_hash: Mapped[str] = mapped_column(String(255))
    # Comma-separated actions the robot may do on its tenant's repositories.
    actions: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# The tables whose rows decide who may sign in and what they are granted.
IDENTITY_TABLES = ("tenants", "users", "memberships", "robots")


class IdentityGeneration(Base):
    """One row, its value raised by database triggers (migration 0005) on every change to
    IDENTITY_TABLES, whoever makes it: a process may reuse what it decided from those tables
    for as long as the value it decided under is still the current one."""

    __tablename__ = "identity_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class RefreshToken(Base):
    """A long-lived token `docker login` keeps; it dies with its account (ON DELETE CASCADE)."""

    __tablename__ = "refresh_tokens"

    # sha256 of the token: the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    robot_id: Mapped[int | None] = mapped_column(
        ForeignKey("robots.id", ondelete="CASCADE"), nullable=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class LoginFailure(Base):
    """Recent failed logins, per account and per client address, shared by every replica."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "account:<name>" or "address:<ip>".
    key: Mapped[str] = mapped_column(String(300))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

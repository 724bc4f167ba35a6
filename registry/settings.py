"""Typed settings: embedded defaults, one YAML file over them, then BERTH_* environment overrides.

``config/berth.yaml`` documents every key with its default; a test keeps the two identical.
Environment variables name nested keys with a double underscore: ``BERTH_STORAGE__ROOT=/srv``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ENV_PREFIX = "BERTH_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(5000, ge=0, le=65535)
    # Worker processes; 0 means one per CPU core.
    workers: int = Field(1, ge=0)
    # The URL clients use to reach this registry (behind a proxy it differs from host:port).
    external_url: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = True


class DatabaseSettings(_Section):
    # SQLAlchemy URL; empty means SQLite at <data_dir>/berth.db.
    url: str = ""
    # Run Alembic migrations when the server starts.
    migrate_on_start: bool = True
    pool_size: int = Field(10, ge=1)
    echo: bool = False


class S3Settings(_Section):
    # Bucket holding everything; it must exist. Required when storage.driver is "s3".
    bucket: str = ""
    # Key prefix under which the storage layout lives, e.g. "berth" -> berth/blobs/...
    prefix: str = ""
    # Region; empty means boto3's default (AWS_REGION, ~/.aws/config, else us-east-1).
    region: str = ""
    # Endpoint of an S3-compatible store (MinIO, SeaweedFS, Ceph); empty means AWS.
    endpoint_url: str = ""
    # Path-style addressing (http://host/bucket/key), which most non-AWS stores want.
    path_style: bool = False
    # Static credentials; empty means boto3's default chain (environment, profile, IAM role).
    access_key_id: str = ""
    secret_access_key: str = ""
    # Answer blob GETs with a 307 to a presigned URL, so clients download from the store.
    redirect: bool = False
    # Host that presigned URLs are signed for, when clients reach the store by another name
    # than endpoint_url; empty means endpoint_url.
    public_endpoint_url: str = ""
    # Lifetime of presigned URLs.
    presign_expiry_seconds: int = Field(1200, ge=1, le=7 * 24 * 3600)
    # Attempts per S3 request (botocore "standard" retries with backoff) before answering 503.
    max_attempts: int = Field(5, ge=1, le=20)
    # Multipart part size in bytes (S3's minimum is 5 MiB); each upload in progress holds up
    # to one part in memory, and an object may have at most 10,000 parts.
    part_size: int = Field(8 * 1024 * 1024, ge=5 * 1024 * 1024, le=5 * 1024 * 1024 * 1024)


class StorageSettings(_Section):
    # "filesystem" (under root) or "s3" (the s3 section).
    driver: Literal["filesystem", "s3"] = "filesystem"
    # Root directory for the filesystem driver; empty means <data_dir>/storage.
    root: str = ""
    s3: S3Settings = S3Settings()

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> StorageSettings:
        if self.driver == "s3" and not self.s3.bucket:
            raise ValueError("storage.s3.bucket is required when storage.driver is s3")
        return self


class UploadSettings(_Section):
    # Upload sessions untouched for this long are expired and their data removed.
    expire_after_seconds: int = Field(24 * 3600, ge=60)
    # How often the expiry sweep runs.
    sweep_interval_seconds: int = Field(600, ge=5)


class ThrottleSettings(_Section):
    # Failed logins allowed per account within the window.
    max_failures: int = Field(5, ge=1)
    # Failed logins allowed per client address within the window: higher, since many clients
    # (a node's kubelet and its pods, an office behind NAT) share one address.
    max_failures_per_address: int = Field(50, ge=1)
    window_seconds: int = Field(300, ge=1)


class AuthSettings(_Section):
    # "token": Docker token authentication (the default). "none": every client may do
    # everything, for trusted networks only.
    mode: Literal["token", "none"] = "token"
    # The `service` clients name in token requests and the `aud` of every token.
    service: str = "berth"
    # The `iss` of every token.
    issuer: str = "berth"
    # Lifetime of access tokens.
    token_ttl_seconds: int = Field(300, ge=10, le=86400)
    # ES256 (default) or RS256, for keys generated at first start.
    algorithm: Literal["ES256", "RS256"] = "ES256"
    # PEM private key that signs tokens. Empty: <data_dir>/keys/signing.pem, generated on first
    # start. Replicas must share it (mount the same file).
    signing_key: str = ""
    # PEM public keys also accepted when verifying (keys being rotated out).
    verification_keys: list[str] = []
    # Refresh tokens (docker login's identity tokens) last this long; 0 means until revoked.
    refresh_token_ttl_days: int = Field(0, ge=0)
    # Name of the site admin created on first start (password: BERTH_ADMIN_PASSWORD or generated).
    bootstrap_admin: str = "admin"
    # Audit log (JSON lines): a file path, or "-" for standard error. Empty: <data_dir>/audit.log.
    audit_log: str = ""
    throttle: ThrottleSettings = ThrottleSettings()


class Settings(_Section):
    # Directory for the embedded defaults: SQLite database and filesystem storage.
    data_dir: str = "./data"
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    storage: StorageSettings = StorageSettings()
    uploads: UploadSettings = UploadSettings()
    auth: AuthSettings = AuthSettings()

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_path / 'berth.db'}"

    @property
    def keys_path(self) -> Path:
        return self.data_path / "keys"

    @property
    def external_url(self) -> str:
        """The URL clients reach this registry at, without a trailing slash."""
        if self.server.external_url:
            return self.server.external_url.rstrip("/")
        host = self.server.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.server.port}"

    @property
    def storage_root(self) -> Path:
        return (
            Path(self.storage.root).expanduser().resolve()
            if self.storage.root
            else (self.data_path / "storage")
        )


class SettingsError(Exception):
    pass


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key == f"{ENV_PREFIX}ADMIN_PASSWORD":
            continue
        parts = key[len(ENV_PREFIX) :].lower().split("__")
        # Other programs' BERTH_* variables (test helpers, wrappers) are not settings.
        if parts[0] not in Settings.model_fields:
            continue
        node = overrides
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        # Plain strings: pydantic turns "5001" into 5001 and "true" into True where the field
        # wants it, and a path like "~" or a host like "::" stays what it says. Lists and
        # mappings may be given in YAML/JSON flow style: BERTH_AUTH__VERIFICATION_KEYS=[a, b].
        value: Any = raw
        if raw.lstrip().startswith(("[", "{")):
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError:
                value = raw
        node[parts[-1]] = value
    return overrides


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Defaults < YAML file < environment < explicit overrides (the CLI's flags)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"cannot read configuration {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise SettingsError(f"configuration {path} is not a mapping")
        data = loaded
    data = _merge(data, _env_overrides(dict(os.environ if environ is None else environ)))
    data = _merge(data, overrides or {})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(f"invalid configuration: {exc}") from exc

"""Typed settings: embedded defaults, one YAML file over them, then BERTH_* environment overrides.

``config/berth.yaml`` documents every key with its default; a test keeps the two identical.
Environment variables name nested keys with a double underscore: ``BERTH_STORAGE__ROOT=/srv``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


class StorageSettings(_Section):
    driver: Literal["filesystem"] = "filesystem"
    # Root directory for the filesystem driver; empty means <data_dir>/storage.
    root: str = ""


class UploadSettings(_Section):
    # Upload sessions untouched for this long are expired and their data removed.
    expire_after_seconds: int = Field(24 * 3600, ge=60)
    # How often the expiry sweep runs.
    sweep_interval_seconds: int = Field(600, ge=5)


class AuthSettings(_Section):
    # "none": every request may do everything (issue 3 brings token auth).
    mode: Literal["none"] = "none"


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
        node = overrides
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        # YAML parsing gives "5001" -> 5001, "true" -> True, as in the file.
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            node[parts[-1]] = raw
        if node[parts[-1]] is None:
            node[parts[-1]] = ""
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

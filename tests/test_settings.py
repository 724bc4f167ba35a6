"""registry.settings: defaults < YAML file < BERTH_* environment < explicit overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from registry.settings import Settings, SettingsError, load_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO_ROOT / "config" / "berth.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "berth.yaml"
    path.write_text(text)
    return path


# --- defaults ---------------------------------------------------------------------------------


def test_defaults() -> None:
    s = load_settings(environ={})
    assert s == Settings()
    assert s.server.host == "127.0.0.1"
    assert s.server.port == 5000
    assert s.data_dir == "./data"
    assert s.database.url == ""
    assert s.storage.driver == "filesystem"


def test_default_database_and_storage_live_under_data_dir(tmp_path: Path) -> None:
    s = load_settings(environ={}, overrides={"data_dir": str(tmp_path / "d")})
    data = (tmp_path / "d").resolve()
    assert s.data_path == data
    assert s.database_url == f"sqlite:///{data / 'berth.db'}"
    assert s.storage_root == data / "storage"


def test_relative_data_dir_is_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(environ={})
    assert s.data_path == (tmp_path / "data").resolve()
    assert s.database_url == f"sqlite:///{(tmp_path / 'data').resolve() / 'berth.db'}"


def test_explicit_database_url_and_storage_root(tmp_path: Path) -> None:
    s = load_settings(
        environ={},
        overrides={
            "database": {"url": "postgresql://u:p@db/berth"},
            "storage": {"root": str(tmp_path / "blobs")},
        },
    )
    assert s.database_url == "postgresql://u:p@db/berth"
    assert s.storage_root == (tmp_path / "blobs").resolve()


def test_no_path_and_no_environ_reads_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Any other BERTH_* variable (BERTH_TEST_POSTGRES_URL, say) would be an unknown key.
    for key in [k for k in os.environ if k.startswith("BERTH_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("BERTH_SERVER__PORT", "5999")
    assert load_settings().server.port == 5999


# --- the YAML file ----------------------------------------------------------------------------


def test_file_overrides_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        data_dir: /srv/berth
        server:
          port: 8080
          log_level: debug
        uploads:
          expire_after_seconds: 3600
        """.replace("\n        ", "\n"),
    )
    s = load_settings(path, environ={})
    assert s.data_dir == "/srv/berth"
    assert s.server.port == 8080
    assert s.server.log_level == "debug"
    assert s.uploads.expire_after_seconds == 3600
    # Keys the file leaves out keep their defaults, also inside a section it does mention.
    assert s.server.host == "127.0.0.1"
    assert s.server.workers == 1
    assert s.uploads.sweep_interval_seconds == 600
    assert s.database == Settings().database


@pytest.mark.parametrize("text", ["", "# only a comment\n", "null\n"])
def test_empty_file_means_defaults(tmp_path: Path, text: str) -> None:
    assert load_settings(write(tmp_path, text), environ={}) == Settings()


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_non_mapping_file_is_rejected(tmp_path: Path, text: str) -> None:
    with pytest.raises(SettingsError, match="not a mapping"):
        load_settings(write(tmp_path, text), environ={})


def test_missing_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(tmp_path / "absent.yaml", environ={})


def test_malformed_yaml_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(write(tmp_path, "server: [unclosed\n"), environ={})


# --- the environment --------------------------------------------------------------------------


def test_env_overrides_nested_keys_with_types() -> None:
    s = load_settings(
        environ={
            "BERTH_SERVER__PORT": "5001",
            "BERTH_SERVER__ACCESS_LOG": "false",
            "BERTH_STORAGE__ROOT": "/srv/blobs",
            "BERTH_DATA_DIR": "/srv/data",
            "BERTH_DATABASE__URL": "postgresql://berth:secret@db:5432/berth",
        }
    )
    assert s.server.port == 5001
    assert isinstance(s.server.port, int)
    assert s.server.access_log is False
    assert s.storage.root == "/srv/blobs"
    assert s.storage_root == Path("/srv/blobs").resolve()
    assert s.data_dir == "/srv/data"
    assert s.database.url == "postgresql://berth:secret@db:5432/berth"


def test_env_keys_are_case_insensitive_after_the_prefix() -> None:
    assert load_settings(environ={"BERTH_server__Port": "5002"}).server.port == 5002


def test_env_empty_value_is_empty_string() -> None:
    s = load_settings(environ={"BERTH_STORAGE__ROOT": "", "BERTH_SERVER__EXTERNAL_URL": ""})
    assert s.storage.root == ""
    assert s.server.external_url == ""


def test_unrelated_env_is_ignored() -> None:
    environ = {"PATH": "/bin", "HOME": "/root", "BERTHA": "x", "XBERTH_SERVER__PORT": "1"}
    assert load_settings(environ=environ) == Settings()


def test_admin_password_is_not_a_setting() -> None:
    assert load_settings(environ={"BERTH_ADMIN_PASSWORD": "hunter2"}) == Settings()


def test_env_numeric_looking_value_for_a_string_field_stays_a_string() -> None:
    assert load_settings(environ={"BERTH_DATA_DIR": "2024"}).data_dir == "2024"
    assert load_settings(environ={"BERTH_AUTH__ISSUER": "0755"}).auth.issuer == "0755"


def test_env_list_in_flow_style() -> None:
    s = load_settings(environ={"BERTH_AUTH__VERIFICATION_KEYS": "[/keys/a.pem, /keys/b.pem]"})
    assert s.auth.verification_keys == ["/keys/a.pem", "/keys/b.pem"]


def test_env_ipv6_wildcard_host_stays_a_string() -> None:
    assert load_settings(environ={"BERTH_SERVER__HOST": "::"}).server.host == "::"


def test_env_tilde_storage_root_is_the_home_directory() -> None:
    s = load_settings(environ={"BERTH_STORAGE__ROOT": "~"})
    assert s.storage_root == Path.home().resolve()


# --- precedence -------------------------------------------------------------------------------


def test_precedence_defaults_file_env_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "server:\n  port: 6000\n  host: 0.0.0.0\n  workers: 4\ndata_dir: /from/file\n",
    )
    environ = {"BERTH_SERVER__PORT": "7000", "BERTH_SERVER__WORKERS": "8"}
    overrides = {"server": {"port": 8000}}
    s = load_settings(path, environ=environ, overrides=overrides)
    assert s.server.port == 8000  # explicit override beats env, file and default
    assert s.server.workers == 8  # env beats file
    assert s.server.host == "0.0.0.0"  # file beats default
    assert s.data_dir == "/from/file"
    assert s.server.log_level == "info"  # default where nobody says otherwise

    assert load_settings(path, environ=environ).server.port == 7000
    assert load_settings(path, environ={}).server.port == 6000
    assert load_settings(environ={}).server.port == 5000


def test_env_merges_into_a_file_section_rather_than_replacing_it(tmp_path: Path) -> None:
    path = write(tmp_path, "database:\n  url: sqlite:////tmp/x.db\n  pool_size: 3\n")
    s = load_settings(path, environ={"BERTH_DATABASE__ECHO": "true"})
    assert s.database.url == "sqlite:////tmp/x.db"
    assert s.database.pool_size == 3
    assert s.database.echo is True


# --- rejection --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "unknown: 1\n",
        "server:\n  prot: 5001\n",
        "storage:\n  driver: filesystem\n  bucket: x\n",
        "auth:\n  mode: none\n  users: []\n",
    ],
)
def test_unknown_keys_in_file_are_rejected(tmp_path: Path, text: str) -> None:
    with pytest.raises(SettingsError, match="invalid configuration"):
        load_settings(write(tmp_path, text), environ={})


@pytest.mark.parametrize(
    "environ",
    [{"BERTH_SERVER__PROT": "5001"}, {"BERTH_SERVER__PORT__X": "1"}],
)
def test_unknown_keys_in_env_are_rejected(environ: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        load_settings(environ=environ)


def test_unknown_keys_in_overrides_are_rejected() -> None:
    with pytest.raises(SettingsError):
        load_settings(environ={}, overrides={"server": {"nope": 1}})


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("server", "port", -1),
        ("server", "port", 65536),
        ("server", "port", "http"),
        ("server", "workers", -1),
        ("server", "log_level", "verbose"),
        ("server", "access_log", "sometimes"),
        ("database", "pool_size", 0),
        ("storage", "driver", "s3-not-yet"),
        ("uploads", "expire_after_seconds", 59),
        ("uploads", "sweep_interval_seconds", 4),
        ("auth", "mode", "token-not-yet"),
    ],
)
def test_invalid_values_are_rejected(tmp_path: Path, section: str, key: str, value: Any) -> None:
    path = write(tmp_path, yaml.safe_dump({section: {key: value}}))
    with pytest.raises(SettingsError, match="invalid configuration"):
        load_settings(path, environ={})


def test_invalid_env_value_is_rejected() -> None:
    with pytest.raises(SettingsError):
        load_settings(environ={"BERTH_SERVER__PORT": "not-a-port"})


def test_section_given_as_scalar_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SettingsError):
        load_settings(write(tmp_path, "server: 5000\n"), environ={})


# --- config/berth.yaml: the documented example of every key ------------------------------------


def _missing_keys(model: type[BaseModel], mapping: Any, prefix: str = "") -> list[str]:
    """Every field of ``model`` (recursively) that ``mapping`` does not mention."""
    if not isinstance(mapping, dict):
        return [prefix.rstrip(".") or "<root>"]
    missing = []
    for name, field in model.model_fields.items():
        if name not in mapping:
            missing.append(f"{prefix}{name}")
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            missing.extend(_missing_keys(annotation, mapping[name], f"{prefix}{name}."))
    return missing


def test_example_config_parses_into_exactly_the_defaults() -> None:
    assert EXAMPLE_CONFIG.is_file(), f"{EXAMPLE_CONFIG} must document every setting"
    assert load_settings(EXAMPLE_CONFIG, environ={}) == Settings()


def test_example_config_mentions_every_key() -> None:
    assert EXAMPLE_CONFIG.is_file(), f"{EXAMPLE_CONFIG} must document every setting"
    mapping = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    assert _missing_keys(Settings, mapping) == []


def test_missing_keys_walks_every_section() -> None:
    # The drift check above is only as good as this walk: it must see nested fields.
    assert "server.port" in _missing_keys(Settings, {"server": {}})
    assert "uploads.sweep_interval_seconds" in _missing_keys(Settings, {"uploads": {}})
    full = Settings().model_dump()
    assert _missing_keys(Settings, full) == []
    del full["storage"]["root"]
    assert _missing_keys(Settings, full) == ["storage.root"]


def test_other_programs_berth_variables_are_ignored() -> None:
    # Only variables naming a settings section are settings; BERTH_DOCKER_BIN is a test helper's.
    settings = load_settings(environ={"BERTH_DOCKER_BIN": "/usr/bin/docker", "BERTH_NOPE": "1"})
    assert settings == Settings()

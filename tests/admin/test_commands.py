"""The administration CLI as scripts use it: ``python -m registry ...`` in a subprocess against a
fresh data directory, checking exit codes, --json output and the Kubernetes Secret."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry.auth.keys import load_keys
from registry.auth.passwords import verify_password, verify_robot_secret
from registry.db.identities import IdentityStore
from registry.db.session import Database
from tests.support.processes import REPO_ROOT, run

pytestmark = pytest.mark.anyio


def berth(
    data_dir: Path, *args: str, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return run(
        [sys.executable, "-m", "registry", *args, "--data-dir", str(data_dir)],
        input=input,
        check=False,
        cwd=REPO_ROOT,
        env={"PYTHONPATH": pythonpath, **(env or {})},
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result).stdout)


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory made by the CLI alone: tenant acme, user alice (writer)."""
    data = tmp_path_factory.mktemp("cli") / "data"
    ok(berth(data, "tenant", "create", "acme"))
    ok(berth(data, "user", "create", "alice", "--password-stdin", input="s3cret-password\n"))
    ok(berth(data, "member", "add", "acme", "alice", "--role", "writer"))
    return data


async def stored_user(data: Path, name: str) -> Any:
    db = Database(f"sqlite:///{data / 'berth.db'}")
    try:
        async with db.read() as session:
            return await IdentityStore(session).user(name)
    finally:
        await db.dispose()


async def stored_robot(data: Path, tenant: str, name: str) -> Any:
    db = Database(f"sqlite:///{data / 'berth.db'}")
    try:
        async with db.read() as session:
            return await IdentityStore(session).robot(tenant, name)
    finally:
        await db.dispose()


def test_help_lists_commands_and_exit_codes() -> None:
    result = ok(run([sys.executable, "-m", "registry", "--help"], cwd=REPO_ROOT))
    for word in ("tenant", "user", "member", "robot", "serve", "migrate", "exit codes"):
        assert word in result.stdout
    for command in (
        ["tenant", "create"],
        ["user", "create"],
        ["member", "add"],
        ["robot", "create"],
        ["robot", "list"],
    ):
        result = ok(run([sys.executable, "-m", "registry", *command, "--help"], cwd=REPO_ROOT))
        assert "exit codes" in result.stdout and "--json" in result.stdout


async def test_fresh_data_dir_and_password_stdin(populated: Path) -> None:
    assert (populated / "berth.db").exists()
    user = await stored_user(populated, "alice")
    assert user is not None and verify_password(user.password_hash, "s3cret-password")
    users = as_json(berth(populated, "user", "list", "--json"))
    assert {u["name"]: u["tenants"] for u in users}["alice"] == {"acme": "writer"}
    assert all("password" not in json.dumps(u) for u in users)
    members = as_json(berth(populated, "member", "list", "acme", "--json"))
    assert members == [{"tenant": "acme", "user": "alice", "role": "writer"}]


def test_json_output_and_exit_codes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert as_json(berth(data, "tenant", "create", "globex", "--public", "--json")) == {
        "name": "globex",
        "public": True,
    }
    assert berth(data, "tenant", "create", "globex").returncode == 4
    assert berth(data, "tenant", "create", "Not/Valid").returncode == 2
    assert berth(data, "tenant", "remove", "missing").returncode == 3
    assert berth(data, "member", "add", "missing", "nobody").returncode == 3
    assert berth(data, "member", "add", "globex", "nobody").returncode == 3
    assert berth(data, "member", "add", "globex", "x", "--role", "owner").returncode == 2
    assert berth(data, "robot", "create", "globex/ci", "--access", "push").returncode == 2
    assert berth(data, "robot", "create", "globex", "--access", "pull").returncode == 2
    assert berth(data, "user", "create", "bob", "--password-stdin", input="short\n").returncode == 2
    result = berth(data, "tenant", "nonsense")
    assert result.returncode == 2 and "invalid choice" in result.stderr
    assert berth(data, "tenant").returncode == 2

    assert as_json(berth(data, "tenant", "set-public", "globex", "--off", "--json")) == {
        "name": "globex",
        "public": False,
    }
    assert as_json(berth(data, "tenant", "list", "--json")) == [{"name": "globex", "public": False}]
    assert as_json(berth(data, "tenant", "remove", "globex", "--json"))["deleted"] is True
    assert as_json(berth(data, "tenant", "list", "--json")) == []
    # Errors go to stderr, never into the JSON on stdout.
    result = berth(data, "tenant", "remove", "globex", "--json")
    assert result.returncode == 3 and result.stdout == "" and "not found" in result.stderr


async def test_user_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = as_json(berth(data, "user", "create", "root", "--admin", "--json"))
    assert created["is_admin"] is True
    generated = created["password"]  # no --password-stdin: generated and shown once
    user = await stored_user(data, "root")
    assert verify_password(user.password_hash, generated)

    ok(berth(data, "user", "set-password", "root", "--password-stdin", input="new-password\r\n"))
    user = await stored_user(data, "root")
    assert verify_password(user.password_hash, "new-password")
    assert as_json(berth(data, "user", "set-admin", "root", "--off", "--json"))["is_admin"] is False
    assert as_json(berth(data, "user", "disable", "root", "--json"))["disabled"] is True
    assert as_json(berth(data, "user", "enable", "root", "--json"))["disabled"] is False
    ok(berth(data, "user", "rm", "root"))
    assert berth(data, "user", "remove", "root").returncode == 3
    assert berth(data, "user", "disable", "root").returncode == 3


async def test_robot_create_prints_its_secret_once(populated: Path) -> None:
    created = as_json(
        berth(populated, "robot", "create", "acme/ci", "--access", "pull,push", "--json")
    )
    assert created["username"] == "acme+ci"
    assert created["robot"]["actions"] == ["pull", "push"]
    assert created["robot"]["expires_at"] is None
    pepper = load_keys(populated / "keys", "ES256").pepper
    robot = await stored_robot(populated, "acme", "ci")
    assert verify_robot_secret(pepper, robot.secret_hash, created["secret"])

    listed = as_json(berth(populated, "robot", "list", "acme", "--json"))
    assert [r["username"] for r in listed] == ["acme+ci"]
    assert "secret" not in json.dumps(listed)
    assert berth(populated, "robot", "create", "acme/ci", "--access", "pull").returncode == 4

    rotated = as_json(berth(populated, "robot", "rotate-secret", "acme+ci", "--json"))
    assert rotated["secret"] != created["secret"]
    robot = await stored_robot(populated, "acme", "ci")
    assert verify_robot_secret(pepper, robot.secret_hash, rotated["secret"])
    assert as_json(berth(populated, "robot", "disable", "acme/ci", "--json"))["disabled"] is True
    assert as_json(berth(populated, "robot", "enable", "acme/ci", "--json"))["disabled"] is False
    ok(berth(populated, "robot", "remove", "acme/ci"))
    assert berth(populated, "robot", "remove", "acme/ci").returncode == 3
    assert berth(populated, "robot", "list", "missing").returncode == 3


def test_robot_expiry(populated: Path) -> None:
    on_date = as_json(
        berth(
            populated,
            "robot",
            "create",
            "acme/dated",
            "--access",
            "pull",
            "--expires-in",
            "2999-01-31",
            "--json",
        )
    )
    assert on_date["robot"]["expires_at"].startswith("2999-01-31T00:00:00")
    in_days = ok(
        berth(populated, "robot", "create", "acme/temp", "--access", "pull", "--expires-in", "30d")
    )
    assert "expires" in in_days.stdout and "secret:" in in_days.stdout
    result = berth(
        populated, "robot", "create", "acme/old", "--access", "pull", "--expires-in", "2001-01-01"
    )
    assert result.returncode == 2 and "past" in result.stderr


def _dockerconfig(secret: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))


def test_k8s_secret(populated: Path) -> None:
    result = ok(
        berth(
            populated,
            "robot",
            "create",
            "acme/puller",
            "--access",
            "pull",
            "--k8s-secret",
            "acme-pull",
            "--namespace",
            "apps",
            env={"BERTH_SERVER__EXTERNAL_URL": "https://registry.example.com:8443/"},
        )
    )
    secret = yaml.safe_load(result.stdout)
    assert secret["apiVersion"] == "v1"
    assert secret["kind"] == "Secret"
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["metadata"] == {"name": "acme-pull", "namespace": "apps"}
    config = _dockerconfig(secret)
    assert list(config["auths"]) == ["registry.example.com:8443"]
    entry = config["auths"]["registry.example.com:8443"]
    assert entry["username"] == "acme+puller"
    assert base64.b64decode(entry["auth"]).decode() == f"acme+puller:{entry['password']}"
    assert "secret" in result.stderr  # the note says where the secret went

    # JSON with --json (kubectl applies either); the default host is the server's own address.
    secret = as_json(
        berth(
            populated,
            "robot",
            "rotate-secret",
            "acme/puller",
            "--k8s-secret",
            "acme-pull",
            "--json",
        )
    )
    assert "namespace" not in secret["metadata"]
    entry = _dockerconfig(secret)["auths"]["127.0.0.1:5000"]
    assert (
        entry["password"]
        != _dockerconfig(yaml.safe_load(result.stdout))["auths"]["registry.example.com:8443"][
            "password"
        ]
    )

    for bad in (["--k8s-secret", "Bad_Name"], ["--k8s-secret", "ok", "--namespace", "a.b"]):
        failed = berth(populated, "robot", "create", "acme/x", "--access", "pull", *bad)
        assert failed.returncode == 2, failed.stderr
    failed = berth(populated, "robot", "create", "acme/x", "--access", "pull", "--namespace", "n")
    assert failed.returncode == 2
    assert berth(populated, "robot", "list", "acme", "--json").stdout.count("acme+x") == 0


def test_admin_changes_are_audited(populated: Path) -> None:
    events = [json.loads(line) for line in (populated / "audit.log").read_text().splitlines()]
    seen = {(e["action"], e["target"]) for e in events}
    assert {
        ("tenant.create", "acme"),
        ("user.create", "alice"),
        ("member.set", "acme/alice"),
    } <= seen
    assert all(e["actor"] == "local-cli" for e in events)
    assert "s3cret-password" not in (populated / "audit.log").read_text()


def test_serve_and_migrate_still_parse() -> None:
    from registry.cli import build_parser

    args = build_parser().parse_args(["serve", "--port", "5001", "--data-dir", "/tmp/x"])
    assert (args.command, args.port, args.data_dir) == ("serve", 5001, "/tmp/x")
    args = build_parser().parse_args(["migrate", "--revision", "head"])
    assert (args.command, args.revision) == ("migrate", "head")

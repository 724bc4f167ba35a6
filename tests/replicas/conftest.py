"""Several Berth replicas acting as one registry: one PostgreSQL, one S3 bucket, one keys dir.

Session fixtures start ONE PostgreSQL cluster and ONE SeaweedFS, then TWO ``berth serve``
processes (``replica_a``, ``replica_b``) on their own ports and data dirs, sharing the database,
the bucket, the token-signing key and the robot pepper, as a Kubernetes Deployment would. A
tenant and its writer are made once with the admin CLI against the same database.

SeaweedFS can be stopped and started again on the same ports and data (``ServiceS3``), and
PostgreSQL restarted (``PostgresServer.restart``), for the fault tests.

When a server cannot start, tests are skipped locally, but fail in CI (``CI`` set): a broken CI
image must never turn the suite green.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import sys
import tempfile
import uuid
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

# As in tests/e2e: make `tests.support` importable under a bare `pytest` too.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from tests.support.images import ImageLayout, write_image_layout  # noqa: E402
from tests.support.postgres import PostgresServer, start_postgres  # noqa: E402
from tests.support.processes import (  # noqa: E402
    REPO_ROOT,
    Account,
    ContainerdProcess,
    Daemon,
    DaemonStartError,
    RegistryProcess,
    run,
    start_containerd,
    start_registry,
    wait_until,
)
from tests.support.seaweed import SeaweedS3, _spawn_clean, start_seaweed  # noqa: E402

# The smallest part S3 allows, so that a few MiB of test data spans several parts.
PART_SIZE = 5 * 1024 * 1024
TENANT = "acme"


def unavailable(reason: str) -> NoReturn:
    """Skip locally, fail in CI: a server that cannot start there is a broken environment."""
    if os.environ.get("CI"):
        pytest.fail(f"replica-suite prerequisite unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------- S3, restartable


@dataclass
class ServiceS3:
    """SeaweedFS that can be stopped and started again with the same ports, identity and data.

    ``start_seaweed`` makes fresh credentials and ports each time, so the restart re-runs the
    exact command line of the first start (its identities file stays in ``root``).
    """

    server: SeaweedS3
    root: Path
    cmd: list[str]
    env: dict[str, str]
    restarts: list[Daemon] = field(default_factory=list)

    @property
    def endpoint_url(self) -> str:
        return self.server.endpoint_url

    @property
    def port(self) -> int:
        return int(self.endpoint_url.rsplit(":", 1)[1])

    @property
    def bucket(self) -> str:
        return self.server.bucket

    @property
    def daemon(self) -> Daemon:
        return self.server.daemon

    def client(self) -> Any:
        return self.server.client()

    def running(self) -> bool:
        return self.daemon.alive() and not self.daemon.stopped

    def stop(self) -> None:
        self.daemon.stop()

    def start(self, timeout: float = 60.0) -> None:
        if self.running():
            return
        daemon = _spawn_clean("seaweedfs", self.cmd, self.root / "weed.log", self.env, self.root)
        self.server.daemon = daemon
        self.restarts.append(daemon)

        def ready() -> bool:
            client = self.client()
            client.put_object(Bucket=self.bucket, Key="probe", Body=b"ok")
            client.delete_object(Bucket=self.bucket, Key="probe")
            return True

        daemon._wait_ready(ready, timeout)

    def log_tail(self, lines: int = 60) -> str:
        return self.server.log_tail(lines)

    def destroy(self) -> None:
        self.daemon.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _start_s3() -> ServiceS3:
    root = Path(tempfile.mkdtemp(prefix="berth-s3r-", dir="/tmp"))
    try:
        server = start_seaweed(root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = str(root)
    return ServiceS3(server=server, root=root, cmd=list(server.daemon.proc.args), env=env)


@pytest.fixture(scope="session")
def servers() -> Iterator[tuple[PostgresServer, ServiceS3]]:
    """PostgreSQL and SeaweedFS, started side by side: each takes a few seconds."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        pg_future, s3_future = pool.submit(start_postgres), pool.submit(_start_s3)
        wait([pg_future, s3_future])
    pg = pg_future.result() if pg_future.exception() is None else None
    s3 = s3_future.result() if s3_future.exception() is None else None
    try:
        problems = [
            f"{name} did not start: {future.exception()}"
            for name, future in (("PostgreSQL", pg_future), ("SeaweedFS", s3_future))
            if future.exception() is not None
        ]
        for future in (pg_future, s3_future):
            error = future.exception()
            if error is not None and not isinstance(error, DaemonStartError):
                raise error
        if problems:
            unavailable("\n".join(problems))
        assert pg is not None and s3 is not None
        yield pg, s3
    finally:
        if s3 is not None:
            s3.destroy()
        if pg is not None:
            pg.destroy()


@pytest.fixture(scope="session")
def postgres(servers: tuple[PostgresServer, ServiceS3]) -> PostgresServer:
    return servers[0]


@pytest.fixture(scope="session")
def s3(servers: tuple[PostgresServer, ServiceS3]) -> ServiceS3:
    return servers[1]


# --------------------------------------------------------------------------- the replicas


@dataclass
class Cluster:
    """What the replicas share, and how to start one more."""

    env: dict[str, str]
    keys_dir: Path
    postgres: PostgresServer
    s3: ServiceS3
    admin: Account
    writer: Account
    base_dir: Path
    replicas: list[RegistryProcess] = field(default_factory=list)

    def start_replica(self, name: str, **extra_env: str) -> RegistryProcess:
        try:
            replica = start_registry(self.base_dir / name, extra_env={**self.env, **extra_env})
        except DaemonStartError as exc:
            pytest.fail(f"Berth replica {name} did not start:\n{exc}", pytrace=False)
        self.replicas.append(replica)
        return replica

    def cli(self, *args: str, input: str | None = None) -> str:
        """The admin CLI on the shared database, as an operator runs it from anywhere."""
        data_dir = self.base_dir / "cli"
        data_dir.mkdir(exist_ok=True)
        cmd = [sys.executable, "-m", "registry", *args, "--data-dir", str(data_dir)]
        return run(cmd, env=self.env, input=input, cwd=REPO_ROOT, timeout=60).stdout

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()


def write_signing_key(keys_dir: Path) -> Path:
    """A P-256 PKCS#8 key, as `openssl ecparam ... | openssl pkcs8 -topk8 -nocrypt` makes it,
    and the robot pepper beside it, where the registry looks for it."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key = keys_dir / "signing.pem"
    key.write_bytes(pem)
    (keys_dir / "robot-pepper").write_bytes(secrets.token_bytes(32))
    for path in (key, keys_dir / "robot-pepper"):
        path.chmod(0o600)
    return key


@pytest.fixture(scope="session")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer, s3: ServiceS3
) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("replicas")
    keys_dir = base / "shared-keys"
    signing_key = write_signing_key(keys_dir)
    admin = Account("admin", secrets.token_urlsafe(18))
    env = {
        "BERTH_AUTH__MODE": "token",
        "BERTH_ADMIN_PASSWORD": admin.password,
        "BERTH_AUTH__SIGNING_KEY": str(signing_key),
        # Every client logs in from 127.0.0.1: the default throttle would lock it out.
        "BERTH_AUTH__THROTTLE__MAX_FAILURES": "100000",
        "BERTH_AUTH__THROTTLE__MAX_FAILURES_PER_ADDRESS": "100000",
        "BERTH_DATABASE__URL": postgres.url(),
        "BERTH_DATABASE__POOL_SIZE": "5",
        "BERTH_STORAGE__DRIVER": "s3",
        "BERTH_STORAGE__S3__BUCKET": s3.bucket,
        "BERTH_STORAGE__S3__PREFIX": "registry",
        "BERTH_STORAGE__S3__ENDPOINT_URL": s3.endpoint_url,
        "BERTH_STORAGE__S3__REGION": s3.server.region,
        "BERTH_STORAGE__S3__PATH_STYLE": "true",
        "BERTH_STORAGE__S3__ACCESS_KEY_ID": s3.server.access_key_id,
        "BERTH_STORAGE__S3__SECRET_ACCESS_KEY": s3.server.secret_access_key,
        # Two attempts, so that an outage answers 503 quickly.
        "BERTH_STORAGE__S3__MAX_ATTEMPTS": "2",
        "BERTH_STORAGE__S3__PART_SIZE": str(PART_SIZE),
    }
    c = Cluster(
        env=env, keys_dir=keys_dir, postgres=postgres, s3=s3, admin=admin, writer=admin,
        base_dir=base,
    )  # fmt: skip
    try:
        # One after the other: the first one migrates the database and creates the admin.
        c.start_replica("a")
        c.start_replica("b")
        writer = Account("alice", secrets.token_urlsafe(12))
        with ThreadPoolExecutor(max_workers=2) as pool:
            made = [
                pool.submit(c.cli, "tenant", "create", TENANT),
                pool.submit(
                    c.cli, "user", "create", writer.username, "--password-stdin",
                    input=writer.password + "\n",
                ),
            ]  # fmt: skip
            for future in made:
                future.result()
        c.cli("member", "add", TENANT, writer.username, "--role", "writer")
        c.writer = writer
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session")
def replica_a(cluster: Cluster) -> RegistryProcess:
    return cluster.replicas[0]


@pytest.fixture(scope="session")
def replica_b(cluster: Cluster) -> RegistryProcess:
    return cluster.replicas[1]


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository in the shared tenant, unique to this test."""
    test = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"{TENANT}/{test}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def healthy(cluster: Cluster) -> Iterator[None]:
    """For tests that stop a server: whatever happens, both servers run again afterwards."""
    try:
        yield
    finally:
        cluster.s3.start()
        if cluster.postgres.proc is None or cluster.postgres.proc.poll() is not None:
            cluster.postgres.start()


# --------------------------------------------------------------------------- clients


def token(replica: RegistryProcess, account: Account, scope: str) -> str:
    """A token from ``replica``'s /auth/token, as a client gets one with Basic credentials."""
    response = httpx.get(
        f"{replica.url}/auth/token",
        params={"service": "berth", "scope": scope},
        auth=(account.username, account.password),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture(scope="session")
def skopeo() -> str:
    path = shutil.which("skopeo")
    if path is None:
        unavailable("`skopeo` is not installed")
    return path


@pytest.fixture(scope="session")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerdProcess]:
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        unavailable("containerd or ctr is not installed")
    try:
        daemon = start_containerd(tmp_path_factory.mktemp("containerd"))
    except DaemonStartError as exc:
        unavailable(f"containerd did not start: {exc}")
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def single_layout(tmp_path_factory: pytest.TempPathFactory) -> ImageLayout:
    return write_image_layout(tmp_path_factory.mktemp("layouts") / "single", "replicas", tag="v1")


def wait_ready(replica: RegistryProcess, expected: int, timeout: float = 30) -> httpx.Response:
    def check() -> httpx.Response | None:
        response = httpx.get(f"{replica.url}/health/ready", timeout=10)
        return response if response.status_code == expected else None

    return wait_until(check, timeout=timeout, message=f"/health/ready to answer {expected}")


# --------------------------------------------------------------------------- reporting


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # A failure often only makes sense next to the servers' logs.
    if report.failed and call.when == "call":
        c = getattr(item, "funcargs", {}).get("cluster")
        if isinstance(c, Cluster):
            for i, replica in enumerate(c.replicas):
                report.sections.append((f"replica {i} log (tail)", replica.log_tail(60)))
            with contextlib.suppress(Exception):
                report.sections.append(("seaweedfs log (tail)", c.s3.log_tail(30)))
    return report

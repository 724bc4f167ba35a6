"""A throwaway PostgreSQL server for tests: Debian's binaries, its own cluster, loopback only.

As root the cluster runs as the ``postgres`` user (initdb refuses root), through ``setpriv``,
which execs rather than forks, so the PID we hold is the postmaster's own and we stop it by it.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import DaemonStartError, free_port, run, wait_until


def postgres_bin_dir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _as_postgres() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path
    port: int
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "berth") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 60) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    *_as_postgres(),
                    str(self.bin_dir / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.root),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    # A test cluster: durability is not what is under test, speed is welcome.
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=300",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise DaemonStartError(f"postgres exited:\n{self.log_path.read_text()[-3000:]}")
            result = run(
                [self.bin_dir / "pg_isready", "-h", "127.0.0.1", "-p", str(self.port)],
                check=False,
                timeout=10,
            )
            return result.returncode == 0

        wait_until(ready, timeout=timeout, message="postgres to accept connections")

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: disconnect clients, then exit
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self, name: str) -> str:
        run(
            [
                self.bin_dir / "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                f'CREATE DATABASE "{name}"',
            ],
            timeout=30,
        )
        return self.url(name)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """initdb a new cluster in a fresh directory under /tmp and start it on a free port."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise DaemonStartError("PostgreSQL is not installed (Debian package postgresql)")
    # Under /tmp, world-traversable: pytest's own temp dirs are 0700 root, which the postgres
    # user cannot enter; the socket path must also stay short.
    root = Path(tempfile.mkdtemp(prefix="berth-pg-", dir="/tmp"))
    root.chmod(0o755)
    (root / "data").mkdir(mode=0o700)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(root / "data", "postgres", "postgres")
    run(
        [
            *_as_postgres(),
            bin_dir / "initdb",
            "-D",
            root / "data",
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ],
        timeout=120,
    )
    server = PostgresServer(bin_dir=bin_dir, root=root, port=free_port())
    try:
        server.start()
        server.create_database("berth")
    except BaseException:
        server.destroy()
        raise
    return server


if __name__ == "__main__":  # a quick manual check: python -m tests.support.postgres
    pg = start_postgres()
    print(pg.url(), "pid", pg.pid)
    time.sleep(1)
    pg.destroy()

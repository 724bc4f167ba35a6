"""Start and stop the servers the benchmark measures: Berth, CNCF Distribution, and nginx.

Every server listens on 127.0.0.1 only, writes under the run's temporary directory, and is
stopped by the PID this module started (then any children it left, by their PIDs).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DISTRIBUTION_BIN = "/usr/bin/docker-registry"
NGINX_BIN = "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- process trees and their memory


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants that are alive now."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if os.path.exists(f"/proc/{p}"):
            out.append(p)
            todo.extend(children(p))
    return out


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss(pid: int) -> int:
    return sum(rss_bytes(p) for p in tree(pid))


class Server:
    """One server process started by us; ``stop()`` ends it and its children by PID."""

    name = "server"

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir, self.port = workdir, port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{self.name}.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
        )
        log.close()

    def wait_ready(self, path: str, expect: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.proc.returncode}); see {self.log_path}"
                )
            try:
                with urllib.request.urlopen(self.base + path, timeout=2) as r:
                    status = r.status
            except urllib.error.HTTPError as e:
                status = e.code
            except OSError:
                time.sleep(0.1)
                continue
            if status == expect:
                return
            raise RuntimeError(f"{self.name}: GET {path} answered {status}, expected {expect}")
        raise RuntimeError(f"{self.name} not ready after {timeout}s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pids = tree(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for p in pids[1:]:  # workers the parent did not reap
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)


class Berth(Server):
    name = "berth"
    user, password = "benchpush", "bench-push-password-0123456789"

    def __init__(self, workdir: Path, port: int, workers: int = 2) -> None:
        super().__init__(workdir, port)
        self.data_dir = workdir / "berth-data"
        self.workers = workers
        self.robot_user = ""
        self.robot_secret = ""

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        env.update(
            BERTH_DATA_DIR=str(self.data_dir),
            BERTH_SERVER__HOST="127.0.0.1",
            BERTH_SERVER__PORT=str(self.port),
            BERTH_SERVER__WORKERS=str(self.workers),
            BERTH_SERVER__LOG_LEVEL="warning",
            BERTH_SERVER__ACCESS_LOG="false",
            BERTH_AUTH__MODE="token",
            BERTH_AUTH__TOKEN_TTL_SECONDS="3600",
            BERTH_ADMIN_PASSWORD="bench-admin-password-0123456789",
        )
        return env

    def cli(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "registry", *args],
            env=self.env(),
            cwd=REPO,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"berth {' '.join(args)} failed ({done.returncode}): {done.stderr}")
        return done.stdout

    def setup(self) -> None:
        """Tenant, a writer, and the robot for the token step, through the CLI, before start."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.cli("tenant", "create", "bench")
        self.cli("user", "create", self.user, "--password-stdin", stdin=self.password + "\n")
        self.cli("member", "add", "bench", self.user, "--role", "writer")
        robot = json.loads(
            self.cli("robot", "create", "bench/puller", "--access", "pull", "--json")
        )
        self.robot_user, self.robot_secret = robot["username"], robot["secret"]

    def certificate_pem(self) -> bytes:
        """Berth's token signing key as a self-signed certificate (Distribution's trust root)."""
        sys.path.insert(0, str(REPO))
        from registry.auth.keys import load_keys

        return load_keys(self.data_dir / "keys", "ES256").certificate_pem()

    def start(self) -> None:
        self._spawn([sys.executable, "-m", "registry", "serve"], self.env())
        self.wait_ready("/v2/", 401)

    def token(self, scopes: list[str], user: str | None = None, password: str | None = None) -> str:
        creds = f"{user or self.user}:{password or self.password}".encode()
        query = "&".join(["service=berth", *(f"scope={s}" for s in scopes)])
        req = urllib.request.Request(
            f"{self.base}/auth/token?{query}",
            headers={"Authorization": "Basic " + base64.b64encode(creds).decode()},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return str(json.loads(r.read())["token"])


class Distribution(Server):
    name = "distribution"

    def __init__(self, workdir: Path, port: int, realm: str, cert_pem: bytes) -> None:
        super().__init__(workdir, port)
        self.root = workdir / "distribution-data"
        self.root.mkdir(parents=True, exist_ok=True)
        self.cert = workdir / "berth-token-signer.pem"
        self.cert.write_bytes(cert_pem)
        self.config = workdir / "distribution.yml"
        # JSON is YAML: no quoting surprises.
        self.config.write_text(
            json.dumps(
                {
                    "version": 0.1,
                    "log": {"level": "warn", "accesslog": {"disabled": True}},
                    "storage": {
                        "filesystem": {"rootdirectory": str(self.root)},
                        "delete": {"enabled": True},
                    },
                    "http": {"addr": f"127.0.0.1:{port}"},
                    "auth": {
                        "token": {
                            "realm": realm,
                            "service": "berth",
                            "issuer": "berth",
                            "rootcertbundle": str(self.cert),
                        }
                    },
                },
                indent=2,
            )
        )

    def start(self) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir)}
        self._spawn([DISTRIBUTION_BIN, "serve", str(self.config)], env)
        self.wait_ready("/v2/", 401)


class Nginx(Server):
    """Serves ``files`` (GET /files/NAME) and accepts PUT into tmpfs (/sink/...), to measure
    what the benchmark's own clients can do at most."""

    name = "nginx"

    def __init__(self, workdir: Path, port: int, files_dir: Path, sink_dir: Path) -> None:
        super().__init__(workdir, port)
        self.prefix = workdir / "nginx"
        for sub in ("logs", "tmp"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        sink_dir.mkdir(parents=True, exist_ok=True)
        (sink_dir / "sink").mkdir(exist_ok=True)
        (sink_dir / "tmp").mkdir(exist_ok=True)
        self.conf = self.prefix / "nginx.conf"
        # Workers run as the master's user, so they can write the sink we created.
        user = "user root;" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"""
{user}
daemon off;
master_process on;
worker_processes 2;
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_max_body_size 0;
    client_body_temp_path {sink_dir}/tmp;
    server {{
        listen 127.0.0.1:{port};
        location /files/ {{ alias {files_dir}/; }}
        location /sink/ {{
            root {sink_dir};
            dav_methods PUT DELETE;
            create_full_put_path on;
        }}
        location = /start {{
            add_header Location /sink/$request_id always;
            return 202;
        }}
    }}
}}
"""
        )

    def start(self) -> None:
        self._spawn([NGINX_BIN, "-p", str(self.prefix), "-c", str(self.conf)])
        self._wait_listen()

    def _wait_listen(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited; see {self.log_path}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start listening")

"""Start and stop real daemons for end-to-end tests.

Every daemon gets its own temporary directories and listens on loopback or on a
unix socket inside its directory, so tests never touch the machine's own
containerd or dockerd. A daemon is stopped by the PID we started (SIGTERM, then
SIGKILL to the process group we created): never by name, so nothing else on the
machine is touched.

Facts about the sandbox these helpers were written in (Debian 12 packages):

* containerd 1.6 starts as root with a generated config whose only changes are
  root/state/socket paths, the ``opt`` plugin path, and the CRI plugin disabled
  (CRI would want CNI and a streaming port, which we don't need). The overlayfs
  snapshotter works on ext4 here; ``start_containerd`` asks the daemon and falls
  back to ``native`` when overlayfs does not report ``ok``.
* With ``start_containerd(..., cri=True)`` the CRI plugin stays on for its image service
  (what a kubelet calls): no TCP service, private empty CNI directories (it starts without
  networking and only logs that CNI is not ready), the streaming server on a random loopback
  port, the snapshotter chosen as above, and registries reached over plain HTTP through a
  ``config_path`` hosts directory (``certs.d/HOST:PORT/hosts.toml``).
* dockerd 20.10 starts with ``--storage-driver=vfs --iptables=false
  --ip6tables=false --bridge=none`` and its own data root, exec root, pidfile and
  socket; it launches a private containerd under the exec root and stops it on
  SIGTERM. Unix socket paths must stay under 108 bytes, hence the short exec root
  under /tmp.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from tests.support.images import MT_INDEX, MT_MANIFEST, sha256_digest

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
# sun_path is 108 bytes; containerd appends ".ttrpc" to its socket path.
MAX_SOCKET_PATH = 100


class DaemonStartError(RuntimeError):
    """A daemon could not be started; the message carries its log tail."""


class CommandFailed(AssertionError):
    """A client command exited non-zero; an AssertionError so pytest shows the output."""

    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        cmd = " ".join(str(a) for a in result.args)
        super().__init__(
            f"command failed (exit {result.returncode}): {cmd}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str = "condition",
) -> T:
    """Call ``predicate`` until it returns something truthy; return that value.

    Exceptions raised by the predicate count as "not yet" (the last one is chained
    to the TimeoutError to explain what went wrong), except DaemonStartError.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except DaemonStartError:
            raise  # the daemon died: waiting longer cannot help
        except Exception as exc:  # the predicate decides what "ready" means
            last_exc = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"timed out after {timeout:.0f}s waiting for {message}"
            ) from last_exc
        time.sleep(interval)


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    timeout: float = 120,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    input: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a client command with a timeout, capturing output for assertion messages."""
    full_env = {**os.environ, **(env or {})}
    try:
        result = subprocess.run(
            [str(c) for c in cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            input=input,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr
        raise AssertionError(
            f"command timed out after {timeout}s: {' '.join(map(str, cmd))}\n"
            f"--- stdout ---\n{out}\n--- stderr ---\n{err}"
        ) from exc
    if check and result.returncode != 0:
        raise CommandFailed(result)
    return result


def _short_dir(preferred: Path, needed: str, prefix: str) -> tuple[Path, bool]:
    """``preferred`` if ``needed`` fits into a socket path below it, else a fresh dir in /tmp.

    The boolean says whether the caller created a temporary directory it must remove.
    """
    if len(str(preferred / needed)) <= MAX_SOCKET_PATH:
        preferred.mkdir(parents=True, exist_ok=True)
        return preferred, False
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")), True


@dataclass
class Daemon:
    """A process we started in its own session, with its output in ``log_path``."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    cleanup_dirs: list[Path] = field(default_factory=list)
    stopped: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL to our own process group; safe to call twice."""
        if self.stopped:
            return  # the group id may belong to someone else by now
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.proc.wait(10)
        # A daemon's helpers (a worker, dockerd's containerd) may outlive the parent.
        self._kill_group()
        for d in self.cleanup_dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.cleanup_dirs.clear()

    def _kill_group(self) -> None:
        # start_new_session=True made the group id equal to our child's pid.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def _wait_ready(self, ready: Callable[[], object], timeout: float) -> None:
        def check() -> object:
            if not self.alive():
                raise DaemonStartError(
                    f"{self.name} exited with code {self.proc.returncode} during start-up.\n"
                    f"log ({self.log_path}):\n{self.log_tail()}"
                )
            return ready()

        try:
            wait_until(check, timeout=timeout, interval=0.2, message=f"{self.name} to be ready")
        except DaemonStartError:
            self.stop()
            raise
        except TimeoutError as exc:
            self.stop()
            raise DaemonStartError(
                f"{exc} (cause: {exc.__cause__!r})\nlog ({self.log_path}):\n{self.log_tail()}"
            ) from exc


def _spawn(
    name: str,
    cmd: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Daemon:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    return Daemon(name=name, proc=proc, log_path=log_path)


# --------------------------------------------------------------------------- registry


@dataclass
class RegistryProcess:
    """The Berth registry under test, listening on ``host:port`` over plain HTTP."""

    daemon: Daemon | None
    host: str
    port: int
    data_dir: Path | None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        """``host:port`` as clients put it in image references."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.daemon.pid if self.daemon else None

    def log_tail(self, lines: int = 60) -> str:
        return self.daemon.log_tail(lines) if self.daemon else "(external registry)"

    def stop(self) -> None:
        if self.daemon:
            self.daemon.stop()


def start_registry(
    data_dir: Path,
    port: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    config: Path | None = None,
    host: str = "127.0.0.1",
    timeout: float = 60.0,
) -> RegistryProcess:
    """Run ``python -m registry serve`` from this checkout and wait for ``GET /v2/``.

    The server's output goes to ``data_dir/registry.log``. It inherits the
    environment, so ``BERTH_*`` settings (a PostgreSQL URL, say) reach it;
    ``extra_env`` adds more, e.g. ``{"BERTH_SERVER__WORKERS": "2"}``.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    cmd = [
        sys.executable,
        "-m",
        "registry",
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    if config is not None:
        cmd += ["--config", str(config)]
    # PYTHONPATH makes the checkout importable even when it is not pip-installed.
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    # Without auth unless the caller asks for it: suites about the OCI API speak to it directly,
    # the auth suites pass BERTH_AUTH__MODE=token.
    env = {
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": pythonpath,
        "BERTH_AUTH__MODE": "none",
        **(extra_env or {}),
    }
    daemon = _spawn("registry", cmd, data_dir / "registry.log", env=env, cwd=REPO_ROOT)
    url = f"http://{host}:{port}/v2/"

    def ready() -> bool:
        httpx.get(url, timeout=2)  # any status means the server is answering
        return True

    daemon._wait_ready(ready, timeout)
    return RegistryProcess(daemon=daemon, host=host, port=port, data_dir=data_dir)


def external_registry(url: str) -> RegistryProcess:
    """Wrap an already running registry (e.g. a reference implementation) for the tests."""
    parsed = httpx.URL(url)
    if parsed.port is None:
        raise ValueError(f"registry URL needs an explicit port: {url}")
    return RegistryProcess(daemon=None, host=parsed.host, port=parsed.port, data_dir=None)


@dataclass(frozen=True)
class Account:
    """A user or robot of the registry under test, as clients log in with it."""

    username: str
    password: str

    @property
    def creds(self) -> str:
        """``user:password``, as skopeo's --creds and ctr's --user take it."""
        return f"{self.username}:{self.password}"


@dataclass(frozen=True)
class AuthAccounts:
    """The accounts the token-auth suites share, made with the admin CLI once per session."""

    tenant: str  # private
    other_tenant: str  # private, for isolation checks
    public_tenant: str  # anyone may pull
    admin: Account  # the bootstrap site admin
    writer: Account  # writer of `tenant`
    reader: Account  # reader of `tenant`
    outsider: Account  # writer of `other_tenant` only
    public_writer: Account  # writer of `public_tenant`
    pusher: Account  # robot of `tenant` with pull,push
    foreign_puller: Account  # robot of `other_tenant` with pull
    puller_secret_yaml: str  # `robot create TENANT/puller --access pull --k8s-secret ...`


def berth_cli(
    registry: RegistryProcess,
    *args: str,
    input: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """``python -m registry ARGS --data-dir DATA``: the admin CLI on the registry's database.

    The CLI acts on the database directly, so it works while the server runs. It is told the
    server's host and port, as a deployment's config file would, so what it prints for clients
    (the host in a Kubernetes Secret) names the running server.
    """
    if registry.data_dir is None:
        raise ValueError("the admin CLI needs a registry these tests started (a data dir)")
    env = {
        "BERTH_AUTH__MODE": "token",
        "BERTH_SERVER__HOST": registry.host,
        "BERTH_SERVER__PORT": str(registry.port),
    }
    cmd = [sys.executable, "-m", "registry", *args, "--data-dir", str(registry.data_dir)]
    return run(cmd, env=env, input=input, check=check, cwd=REPO_ROOT, timeout=60)


class BearerChallengeAuth(httpx.Auth):
    """httpx auth that answers a registry's Bearer challenge with a token for ``account``,
    as a client does: GET the realm with Basic credentials and the challenge's scope."""

    def __init__(self, account: Account) -> None:
        self.basic = httpx.BasicAuth(account.username, account.password)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        response = yield request
        challenge = response.headers.get("www-authenticate", "")
        if response.status_code != 401 or not challenge.lower().startswith("bearer "):
            return
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm")
        params.pop("error", None)
        token_request = httpx.Request("GET", realm, params=params)
        token_response = yield next(self.basic.auth_flow(token_request))
        token_response.read()
        if token_response.status_code != 200:
            return
        request.headers["Authorization"] = f"Bearer {token_response.json()['token']}"
        yield request


DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ALL_MANIFEST_TYPES = (MT_MANIFEST, MT_INDEX, DOCKER_MANIFEST, DOCKER_LIST)


class RegistryAPI:
    """Raw OCI distribution calls for assertions the clients do not expose."""

    def __init__(self, registry: RegistryProcess, auth: httpx.Auth | None = None) -> None:
        self.registry = registry
        # With token auth on, e.g. BearerChallengeAuth(admin): each call gets its own token.
        self.client = httpx.Client(base_url=registry.url, timeout=30, auth=auth)

    def close(self) -> None:
        self.client.close()

    def get_manifest(
        self, repo: str, ref: str, accept: tuple[str, ...] = ALL_MANIFEST_TYPES, head: bool = False
    ) -> httpx.Response:
        return self.client.request(
            "HEAD" if head else "GET",
            f"/v2/{repo}/manifests/{ref}",
            headers={"Accept": ", ".join(accept)},
        )

    def manifest_digest(self, repo: str, ref: str) -> str:
        """The digest the registry reports for ``ref``, asserting it matches the body."""
        resp = self.get_manifest(repo, ref)
        assert resp.status_code == 200, describe(resp)
        header = resp.headers.get("Docker-Content-Digest")
        body_digest = sha256_digest(resp.content)
        assert header == body_digest, (
            f"Docker-Content-Digest {header} != sha256(body) {body_digest}"
        )
        return body_digest

    def tags(self, repo: str) -> list[str]:
        resp = self.client.get(f"/v2/{repo}/tags/list")
        assert resp.status_code == 200, describe(resp)
        return list(resp.json().get("tags") or [])

    def blob_exists(self, repo: str, digest: str) -> bool:
        resp = self.client.head(f"/v2/{repo}/blobs/{digest}")
        assert resp.status_code in (200, 404), describe(resp)
        return resp.status_code == 200

    def delete_manifest(self, repo: str, ref: str) -> httpx.Response:
        return self.client.delete(f"/v2/{repo}/manifests/{ref}")


def describe(resp: httpx.Response) -> str:
    """Request and response in one string, for assertion messages."""
    req = resp.request
    body = resp.text[:2000] if resp.request.method != "HEAD" else ""
    return (
        f"{req.method} {req.url} -> {resp.status_code}\n"
        f"request headers: {dict(req.headers)}\n"
        f"response headers: {dict(resp.headers)}\nbody: {body}"
    )


# --------------------------------------------------------------------------- containerd


@dataclass
class ContainerdProcess:
    daemon: Daemon
    socket: Path
    root: Path
    snapshotter: str
    namespace: str = "berth-e2e"
    hosts_dir: Path | None = None  # the CRI plugin's registry config_path, when CRI is on

    @property
    def cri(self) -> bool:
        return self.hosts_dir is not None

    @property
    def pid(self) -> int:
        return self.daemon.pid

    def ctr_env(self) -> dict[str, str]:
        return {"CONTAINERD_SNAPSHOTTER": self.snapshotter, "CONTAINERD_NAMESPACE": self.namespace}

    def ctr(
        self, *args: str | os.PathLike[str], timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``ctr --address SOCK ARGS...`` against this daemon."""
        return run(
            ["ctr", "--address", str(self.socket), *args],
            timeout=timeout,
            env=self.ctr_env(),
            check=check,
        )

    def log_tail(self, lines: int = 60) -> str:
        return self.daemon.log_tail(lines)

    def stop(self) -> None:
        self.daemon.stop()


CRI_PLUGIN = "io.containerd.grpc.v1.cri"


@dataclass(frozen=True)
class CRIConfig:
    """The CRI plugin's settings: its image service, without networking or a TCP port."""

    snapshotter: str
    hosts_dir: Path  # config_path: one HOST:PORT/hosts.toml per plain-HTTP registry
    cni_dir: Path  # private, empty CNI bin and conf dirs: the host's /etc/cni is never read


def containerd_config(root: Path, state: Path, sock: Path, cri: CRIConfig | None = None) -> str:
    # Only what differs from the built-in defaults. CRI is disabled unless asked for: it wants
    # CNI and a streaming server, and ctr does not need it. Snapshotters that need special
    # filesystems or kernel modules are disabled to keep the log quiet.
    disabled = [
        "io.containerd.snapshotter.v1.aufs",
        "io.containerd.snapshotter.v1.btrfs",
        "io.containerd.snapshotter.v1.devmapper",
        "io.containerd.snapshotter.v1.zfs",
    ]
    if cri is None:
        disabled.insert(0, CRI_PLUGIN)
    text = (
        "version = 2\n"
        f"root = {json.dumps(str(root))}\n"
        f"state = {json.dumps(str(state))}\n"
        f"disabled_plugins = {json.dumps(disabled)}\n"
        "[grpc]\n"
        f"  address = {json.dumps(str(sock))}\n"
        "[debug]\n"
        '  level = "info"\n'
        '[plugins."io.containerd.internal.v1.opt"]\n'
        f"  path = {json.dumps(str(root / 'opt'))}\n"
    )
    if cri is not None:
        text += (
            f'[plugins."{CRI_PLUGIN}"]\n'
            "  disable_tcp_service = true\n"
            '  stream_server_address = "127.0.0.1"\n'
            '  stream_server_port = "0"\n'
            "  enable_selinux = false\n"
            f'[plugins."{CRI_PLUGIN}".containerd]\n'
            f"  snapshotter = {json.dumps(cri.snapshotter)}\n"
            f'[plugins."{CRI_PLUGIN}".cni]\n'
            f"  bin_dir = {json.dumps(str(cri.cni_dir / 'bin'))}\n"
            f"  conf_dir = {json.dumps(str(cri.cni_dir / 'conf'))}\n"
            f'[plugins."{CRI_PLUGIN}".registry]\n'
            f"  config_path = {json.dumps(str(cri.hosts_dir))}\n"
        )
    return text


def write_plain_http_hosts(hosts_dir: Path, address: str) -> Path:
    """containerd's hosts.toml for a registry at ``address`` (host:port) over plain HTTP."""
    host_dir = hosts_dir / address
    host_dir.mkdir(parents=True, exist_ok=True)
    path = host_dir / "hosts.toml"
    path.write_text(
        f'server = "http://{address}"\n'
        f'[host."http://{address}"]\n'
        '  capabilities = ["pull", "resolve", "push"]\n'
    )
    return path


def _plugin_status(plugins: str, type_: str, name: str) -> str | None:
    """The STATUS column of ``ctr plugins ls`` for one plugin, or None if it is not listed."""
    for line in plugins.splitlines():
        cols = line.split()
        if cols[:2] == [type_, name]:
            return cols[-1]
    return None


def start_containerd(
    tmpdir: Path,
    timeout: float = 60.0,
    cri: bool = False,
    plain_http_registries: Sequence[str] = (),
) -> ContainerdProcess:
    """A private containerd (own root, state and socket) that ``ctr`` can talk to.

    With ``cri=True`` the CRI plugin serves its ImageService on the same socket, and pulls from
    ``plain_http_registries`` (``host:port``) over plain HTTP. ``ctr`` needs none of that.
    """
    binary = shutil.which("containerd")
    if binary is None or shutil.which("ctr") is None:
        raise DaemonStartError("containerd or ctr is not installed (Debian package containerd)")
    tmpdir = Path(tmpdir)
    tmpdir.mkdir(parents=True, exist_ok=True)
    sock_dir, made = _short_dir(tmpdir, "containerd.sock.ttrpc", "berth-ctd-")
    sock = sock_dir / "containerd.sock"
    root, state = tmpdir / "root", tmpdir / "state"
    config = tmpdir / "config.toml"
    cri_config: CRIConfig | None = None
    if cri:
        cri_config = CRIConfig("overlayfs", tmpdir / "certs.d", tmpdir / "cni")
        for sub in ("bin", "conf"):
            (cri_config.cni_dir / sub).mkdir(parents=True, exist_ok=True)
        for address in plain_http_registries:
            write_plain_http_hosts(cri_config.hosts_dir, address)

    def launch() -> tuple[Daemon, str]:
        sock_dir.mkdir(parents=True, exist_ok=True)  # a stopped first attempt removed it
        config.write_text(containerd_config(root, state, sock, cri_config))
        daemon = _spawn("containerd", [binary, "--config", str(config)], tmpdir / "containerd.log")
        if made:
            daemon.cleanup_dirs.append(sock_dir)

        def ready() -> bool:
            return run(["ctr", "--address", str(sock), "version"], timeout=10).returncode == 0

        daemon._wait_ready(ready, timeout)
        return daemon, run(["ctr", "--address", str(sock), "plugins", "ls"], timeout=10).stdout

    daemon, plugins = launch()
    overlay_ok = _plugin_status(plugins, "io.containerd.snapshotter.v1", "overlayfs") == "ok"
    snapshotter = "overlayfs" if overlay_ok else "native"
    if cri_config is not None:
        if not overlay_ok:
            # The CRI plugin needs its snapshotter at start: start again with the fallback.
            daemon.stop()
            cri_config = CRIConfig("native", cri_config.hosts_dir, cri_config.cni_dir)
            daemon, plugins = launch()
        status = _plugin_status(plugins, "io.containerd.grpc.v1", "cri")
        if status != "ok":
            daemon.stop()
            raise DaemonStartError(
                f"containerd's CRI plugin did not start (status {status!r}).\n"
                f"plugins:\n{plugins}\nlog ({daemon.log_path}):\n{daemon.log_tail()}"
            )
    return ContainerdProcess(
        daemon=daemon,
        socket=sock,
        root=root,
        snapshotter=snapshotter,
        hosts_dir=cri_config.hosts_dir if cri_config else None,
    )


# --------------------------------------------------------------------------- dockerd


@dataclass
class DockerdProcess:
    daemon: Daemon
    socket: Path
    config_dir: Path  # DOCKER_CONFIG: keeps `docker manifest` state out of ~/.docker
    docker_bin: str

    @property
    def pid(self) -> int:
        return self.daemon.pid

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.host, "DOCKER_CONFIG": str(self.config_dir)}

    def docker(
        self, *args: str | os.PathLike[str], timeout: float = 180, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run([self.docker_bin, *args], timeout=timeout, env=self.env(), check=check)

    def log_tail(self, lines: int = 60) -> str:
        return self.daemon.log_tail(lines)

    def stop(self) -> None:
        self.daemon.stop()


def find_docker_cli() -> str | None:
    """The docker CLI to use: $E2E_DOCKER_BIN, else the first ``docker`` on PATH."""
    return os.environ.get("E2E_DOCKER_BIN") or shutil.which("docker")


def start_dockerd(
    tmpdir: Path, insecure_registries: Sequence[str] = (), timeout: float = 90.0
) -> DockerdProcess:
    """A private dockerd on vfs storage with no networking changes to the host."""
    binary = shutil.which("dockerd")
    cli = find_docker_cli()
    if binary is None or cli is None:
        raise DaemonStartError("dockerd or the docker CLI is not installed (Debian docker.io)")
    tmpdir = Path(tmpdir)
    tmpdir.mkdir(parents=True, exist_ok=True)
    # The exec root holds containerd's sockets, so it must have a short path.
    exec_root = Path(tempfile.mkdtemp(prefix="berth-dk-", dir="/tmp"))
    sock = exec_root / "docker.sock"
    config_dir = tmpdir / "client-config"
    config_dir.mkdir(exist_ok=True)
    # An explicit (empty) daemon config so /etc/docker/daemon.json cannot interfere.
    daemon_json = tmpdir / "daemon.json"
    daemon_json.write_text("{}")
    cmd = [
        binary,
        "--config-file",
        str(daemon_json),
        "--storage-driver=vfs",
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "--data-root",
        str(tmpdir / "data"),
        "--exec-root",
        str(exec_root),
        "--pidfile",
        str(tmpdir / "docker.pid"),
        "-H",
        f"unix://{sock}",
    ]
    for reg in insecure_registries:
        cmd += ["--insecure-registry", reg]
    daemon = _spawn("dockerd", cmd, tmpdir / "dockerd.log")
    daemon.cleanup_dirs.append(exec_root)

    def ready() -> bool:
        transport = httpx.HTTPTransport(uds=str(sock))
        with httpx.Client(transport=transport, timeout=2) as client:
            return client.get("http://docker/_ping").status_code == 200

    daemon._wait_ready(ready, timeout)
    return DockerdProcess(daemon=daemon, socket=sock, config_dir=config_dir, docker_bin=cli)

"""`berth serve` with several workers: each listens on its own socket, and connections spread."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT, RegistryProcess, start_registry, wait_until

LISTEN, ESTABLISHED = "0A", "01"


def _tcp_sockets(port: int, state: str) -> set[str]:
    """Inodes of this host's IPv4 TCP sockets on local ``port`` in ``state`` (/proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
            found.add(fields[9])
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _workers(parent: int) -> list[int]:
    """The worker processes: spawned children (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    reg = start_registry(
        tmp_path_factory.mktemp("serve-2workers"), extra_env={"BERTH_SERVER__WORKERS": "2"}
    )
    try:
        # Ready means one worker answers; the test needs both listening.
        wait_until(
            lambda: len(_tcp_sockets(reg.port, LISTEN)) == 2 or None,
            message="both workers listening",
        )
        yield reg
    finally:
        reg.stop()


def test_each_worker_listens_and_the_supervisor_does_not(two_workers: RegistryProcess) -> None:
    assert two_workers.pid is not None
    listening = _tcp_sockets(two_workers.port, LISTEN)
    workers = _workers(two_workers.pid)
    assert len(workers) == 2
    for pid in workers:
        assert len(_socket_inodes(pid) & listening) == 1, pid
    # The supervisor holds the port with a socket that never listens: it takes no connections.
    assert not _socket_inodes(two_workers.pid) & listening


def test_a_burst_of_keep_alive_connections_reaches_both_workers(
    two_workers: RegistryProcess,
) -> None:
    """With one shared socket, the worker that woke first took the whole burst (all 20 of a
    load generator's connections on one worker, one core idle). Per-worker sockets let the
    kernel spread them: all 16 on one worker has odds of 2 in 65,536."""
    assert two_workers.pid is not None
    connections = [http.client.HTTPConnection("127.0.0.1", two_workers.port) for _ in range(16)]
    try:
        for conn in connections:
            conn.connect()
        for conn in connections:
            conn.request("GET", "/v2/")
            response = conn.getresponse()
            response.read()
            assert response.status == 200
        established = _tcp_sockets(two_workers.port, ESTABLISHED)
        held = [len(_socket_inodes(pid) & established) for pid in _workers(two_workers.pid)]
        assert sum(held) == 16, held
        assert min(held) >= 1, held
    finally:
        for conn in connections:
            conn.close()


def test_a_second_registry_on_a_taken_port_fails_instead_of_sharing_it(
    two_workers: RegistryProcess, tmp_path: Path
) -> None:
    """SO_REUSEPORT would let a second server join the first one's port and take some of its
    connections; `serve` checks first that the port is free."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "BERTH_AUTH__MODE": "none"}
    argv = [sys.executable, "-m", "registry", "serve", "--port", str(two_workers.port)]
    argv += ["--workers", "2", "--data-dir", str(tmp_path / "second")]
    second = subprocess.run(
        argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert second.returncode != 0
    assert "cannot listen on" in second.stderr, second.stderr[-2000:]
    assert len(_tcp_sockets(two_workers.port, LISTEN)) == 2
    conn = http.client.HTTPConnection("127.0.0.1", two_workers.port)
    conn.request("GET", "/v2/")
    assert conn.getresponse().status == 200
    conn.close()

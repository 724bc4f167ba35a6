"""The benchmark's own HTTP/1.1 clients, kept lean so that the servers are what is measured.

* Big blobs: one blocking socket per request. Uploads go out with ``sendfile`` (the kernel
  copies page cache to the socket; chunked PATCH bodies are ``sendfile`` runs between chunk
  headers); downloads ``recv_into`` a preallocated buffer and are hashed after the clock stops.
  ``run.py`` measures this client once against nginx, so its ceiling is known.
* Small blobs: asyncio streams (uvloop when available), one keep-alive connection per worker.
  wrk and hey cannot run the two-request upload protocol (POST, then PUT to the Location
  answered), so pushes of many small blobs use this client; so do their pulls, which check
  every body's sha256.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

CHUNK = 8 * 1024 * 1024


class CheckFailed(Exception):
    """A server's answer was not the one the protocol requires."""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    length: int = 0  # bytes of body received (into the caller's buffer for big downloads)


def _target(base: str, location: str) -> str:
    """Path and query of a Location (Distribution answers absolute URLs, Berth relative)."""
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def with_query(path: str, key: str, value: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}{key}={value}"


def _host_port(base: str) -> tuple[str, int]:
    parts = urlsplit(base)
    assert parts.hostname in ("127.0.0.1", "localhost", "::1"), "loopback only"
    return parts.hostname, parts.port or 80


def _head(method: str, path: str, host: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    return status, headers


# --- blocking client for big transfers


class BigClient:
    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base
        self.host, self.port = _host_port(base)
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=300)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        return sock

    def _read(self, sock: socket.socket, method: str, into: memoryview | None = None) -> Answer:
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            if not data:
                raise CheckFailed("connection closed before the response head")
            buf += data
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        status, headers = _parse_head(head)
        if method == "HEAD" or status in (204, 304):
            return Answer(status, headers)
        if "content-length" in headers:
            length = int(headers["content-length"])
            if into is not None and status == 200:
                if length > len(into):
                    raise CheckFailed(f"body of {length} bytes exceeds the buffer")
                into[: len(rest)] = rest
                got = len(rest)
                while got < length:
                    n = sock.recv_into(into[got:length])
                    if n == 0:
                        raise CheckFailed(f"connection closed after {got} of {length} bytes")
                    got += n
                return Answer(status, headers, length=got)
            body = bytearray(rest)
            while len(body) < length:
                data = sock.recv(min(1 << 20, length - len(body)))
                if not data:
                    raise CheckFailed("connection closed mid-body")
                body += data
            return Answer(status, headers, bytes(body), len(body))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            data = bytearray(rest)
            while not data.endswith(b"0\r\n\r\n"):
                more = sock.recv(65536)
                if not more:
                    break
                data += more
            return Answer(status, headers, _dechunk(bytes(data)))
        return Answer(status, headers)

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> Answer:
        with self._connect() as sock:
            h = {**self.auth, **(headers or {}), "Content-Length": str(len(body))}
            if method in ("GET", "HEAD"):
                del h["Content-Length"]
            sock.sendall(_head(method, path, f"{self.host}:{self.port}", h) + body)
            return self._read(sock, method)

    def send_file(
        self, method: str, path: str, file: str, size: int, *, chunked: bool, into_status: int
    ) -> Answer:
        """Stream ``size`` bytes of ``file`` as the request body (Content-Length or chunked)."""
        h = {**self.auth, "Content-Type": "application/octet-stream"}
        if chunked:
            h["Transfer-Encoding"] = "chunked"
        else:
            h["Content-Length"] = str(size)
        with self._connect() as sock, open(file, "rb") as f:
            sock.sendall(_head(method, path, f"{self.host}:{self.port}", h))
            if chunked:
                offset = 0
                while offset < size:
                    n = min(CHUNK, size - offset)
                    sock.send(f"{n:x}\r\n".encode(), socket.MSG_MORE)
                    sent = sock.sendfile(f, offset, n)
                    if sent != n:
                        raise CheckFailed(f"sendfile sent {sent} of {n} bytes")
                    sock.send(b"\r\n", socket.MSG_MORE if offset + n < size else 0)
                    offset += n
                sock.sendall(b"0\r\n\r\n")
            else:
                sent = sock.sendfile(f, 0, size)
                if sent != size:
                    raise CheckFailed(f"sendfile sent {sent} of {size} bytes")
            answer = self._read(sock, method)
        expect(answer, into_status, f"{method} {path.split('?')[0]}")
        return answer

    def download(self, path: str, into: memoryview) -> Answer:
        with self._connect() as sock:
            sock.sendall(_head("GET", path, f"{self.host}:{self.port}", self.auth))
            return self._read(sock, "GET", into)


def _dechunk(data: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        end = data.index(b"\r\n", pos)
        n = int(data[pos:end].split(b";")[0], 16)
        if n == 0:
            return bytes(out)
        out += data[end + 2 : end + 2 + n]
        pos = end + 2 + n + 2


def expect(answer: Answer, status: int, what: str) -> None:
    if answer.status != status:
        raise CheckFailed(
            f"{what}: status {answer.status}, expected {status}: {answer.body[:300]!r}"
        )


def expect_digest(answer: Answer, digest: str, what: str) -> None:
    got = answer.headers.get("docker-content-digest")
    if got != digest:
        raise CheckFailed(f"{what}: Docker-Content-Digest {got!r}, expected {digest}")


# --- the registry protocol on top of it


def push_big(
    client: BigClient, repo: str, file: str, size: int, digest: str, *, streamed: bool
) -> float:
    """Push one blob; seconds from the POST to the 201 of the final PUT."""
    t0 = time.perf_counter()
    start = client.request("POST", f"/v2/{repo}/blobs/uploads/")
    expect(start, 202, "POST upload")
    location = _target(client.base, start.headers["location"])
    if streamed:
        patched = client.send_file("PATCH", location, file, size, chunked=True, into_status=202)
        location = _target(client.base, patched.headers["location"])
        done = client.request("PUT", with_query(location, "digest", digest))
    else:
        done = client.send_file(
            "PUT",
            with_query(location, "digest", digest),
            file,
            size,
            chunked=False,
            into_status=201,
        )
    elapsed = time.perf_counter() - t0
    expect(done, 201, "PUT upload")
    expect_digest(done, digest, "PUT upload")
    return elapsed


def pull_big(client: BigClient, path: str, buffer: memoryview, size: int, digest: str) -> float:
    """GET a blob into ``buffer``; the sha256 is checked after the clock stops."""
    t0 = time.perf_counter()
    got = client.download(path, buffer)
    elapsed = time.perf_counter() - t0
    expect(got, 200, f"GET {path}")
    if got.length != size:
        raise CheckFailed(f"GET {path}: {got.length} bytes, expected {size}")
    actual = "sha256:" + hashlib.sha256(buffer[:size]).hexdigest()
    if actual != digest:
        raise CheckFailed(f"GET {path}: body digest {actual}, expected {digest}")
    return elapsed


# --- asyncio client for many small blobs


@dataclass
class _Conn:
    host: str
    port: int
    auth: dict[str, str]
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    requests: int = field(default=0)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Answer:
        for attempt in (1, 2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            h = {**self.auth, **(headers or {})}
            if method not in ("GET", "HEAD"):
                h["Content-Length"] = str(len(body))
            try:
                self.writer.write(_head(method, path, f"{self.host}:{self.port}", h) + body)
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError):
                # A keep-alive connection the server closed between requests: reconnect once.
                await self.close()
                if attempt == 2 or self.requests == 0:
                    raise
                continue
            self.requests += 1
            status, headers_in = _parse_head(head[:-4])
            body_in = b""
            if method != "HEAD" and status not in (204, 304):
                if "content-length" in headers_in:
                    body_in = await self.reader.readexactly(int(headers_in["content-length"]))
                elif headers_in.get("transfer-encoding", "").lower() == "chunked":
                    body_in = await self._chunked()
            if headers_in.get("connection", "").lower() == "close":
                await self.close()
            return Answer(status, headers_in, body_in, len(body_in))
        raise AssertionError("unreachable")

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        out = bytearray()
        while True:
            line = await self.reader.readuntil(b"\r\n")
            n = int(line.split(b";")[0], 16)
            if n == 0:
                await self.reader.readuntil(b"\r\n")
                return bytes(out)
            out += await self.reader.readexactly(n)
            await self.reader.readexactly(2)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


def small_blobs(count: int, size: int) -> list[tuple[bytes, str]]:
    out = []
    for _ in range(count):
        data = os.urandom(size)
        out.append((data, "sha256:" + hashlib.sha256(data).hexdigest()))
    return out


async def _run_workers(base: str, token: str | None, concurrency: int, jobs: list, work) -> None:  # type: ignore[type-arg]
    host, port = _host_port(base)
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    queue: asyncio.Queue = asyncio.Queue()  # type: ignore[type-arg]
    for job in jobs:
        queue.put_nowait(job)

    async def worker() -> None:
        conn = _Conn(host, port, auth)
        try:
            while not queue.empty():
                await work(conn, queue.get_nowait())
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _push_small(
    base: str,
    token: str | None,
    repo: str,
    blobs: list[tuple[bytes, str]],
    concurrency: int,
    start_path: str | None,
) -> list[str]:
    """POST then PUT (monolithic) each blob; returns the path each can be pulled from."""
    paths: list[str] = [""] * len(blobs)

    async def push(conn: _Conn, i: int) -> None:
        data, digest = blobs[i]
        start = await conn.request("POST", start_path or f"/v2/{repo}/blobs/uploads/")
        expect(start, 202, "POST upload")
        location = _target(base, start.headers["location"])
        done = await conn.request(
            "PUT",
            with_query(location, "digest", digest),
            data,
            {"Content-Type": "application/octet-stream"},
        )
        expect(done, 201, "PUT upload")
        if start_path is None:
            expect_digest(done, digest, "PUT upload")
            paths[i] = f"/v2/{repo}/blobs/{digest}"
        else:  # nginx: the file is where it was PUT
            paths[i] = location.split("?")[0]

    await _run_workers(base, token, concurrency, list(range(len(blobs))), push)
    return paths


async def _pull_small(
    base: str,
    token: str | None,
    paths: list[str],
    blobs: list[tuple[bytes, str]],
    concurrency: int,
) -> None:
    async def pull(conn: _Conn, i: int) -> None:
        got = await conn.request("GET", paths[i])
        expect(got, 200, f"GET {paths[i]}")
        actual = "sha256:" + hashlib.sha256(got.body).hexdigest()
        if actual != blobs[i][1]:
            raise CheckFailed(f"GET {paths[i]}: body digest {actual}, expected {blobs[i][1]}")

    await _run_workers(base, token, concurrency, list(range(len(blobs))), pull)


def _loop_run(coro):  # type: ignore[no-untyped-def]
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def push_small(
    base: str,
    token: str | None,
    repo: str,
    blobs: list[tuple[bytes, str]],
    concurrency: int,
    start_path: str | None = None,
) -> tuple[float, list[str]]:
    t0 = time.perf_counter()
    paths = _loop_run(_push_small(base, token, repo, blobs, concurrency, start_path))
    return time.perf_counter() - t0, paths


def pull_small(
    base: str,
    token: str | None,
    paths: list[str],
    blobs: list[tuple[bytes, str]],
    concurrency: int,
) -> float:
    t0 = time.perf_counter()
    _loop_run(_pull_small(base, token, paths, blobs, concurrency))
    return time.perf_counter() - t0

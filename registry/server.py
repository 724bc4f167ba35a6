"""How Berth serves HTTP: uvicorn's httptools protocol writing each response's head and body in
one send, and worker processes that each listen on a socket of their own.

uvicorn writes the status line and headers as soon as the app starts a response, and the body
in a second write. On loopback and on real networks alike, each write is a system call and, with
TCP_NODELAY, a segment of its own that wakes the client twice; a manifest HEAD or GET spent half
its time there. Writes made in the same event-loop turn are gathered and handed over together
(one ``writev``); a streamed body still flows chunk by chunk, one turn behind at most.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess


class _GatheringTransport:
    """A transport that defers writes to the end of the current loop turn and sends them as one.

    Everything but writing and closing goes straight to the real transport, so flow control
    (pause_writing from the real transport to the protocol) is unchanged: it fires when the
    gathered data is handed over, one loop turn later than it would have.
    """

    __slots__ = ("_transport", "_loop", "_pending")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending or self._transport.is_closing():
            return
        if len(pending) == 1:
            self._transport.write(pending[0])
        else:
            self._transport.writelines(pending)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class BerthHttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # uvloop's transports do not subclass asyncio.Transport: no isinstance check here.
        super().connection_made(_GatheringTransport(transport, self.loop))  # type: ignore[arg-type]


class _PortReservation(socket.socket):
    """The supervisor's socket: bound with SO_REUSEPORT but never listening, so it holds the
    port (a port already taken fails at once) and accepts nothing itself.

    uvicorn hands one listening socket to all its workers, and whichever wakes first accepts
    every connection waiting: a burst of keep-alive connections (a load balancer's, a load
    generator's) can all land on one worker, one core busy and the other idle; the token
    benchmark saw all 20 connections on one of two workers. Each worker instead unpickles
    this socket as a listening socket of its own on the same address, and the kernel spreads
    new connections across them.
    """

    backlog = 2048

    def __reduce__(self) -> tuple[Any, ...]:
        return (_listening, (self.family, self.getsockname(), self.backlog))


def _reuse_port(sock: socket.socket) -> socket.socket:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def _listening(family: int, address: Any, backlog: int) -> socket.socket:
    """In a worker process: its own listening socket on the supervisor's address."""
    sock = _reuse_port(socket.socket(family, socket.SOCK_STREAM))
    sock.bind(address)
    sock.listen(backlog)
    return sock


def serve_workers(config: uvicorn.Config) -> int:
    """Run ``config.workers`` worker processes under uvicorn's supervisor (restarts, signals),
    each listening on the address itself (see _PortReservation); the exit status."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    address = (config.host, config.port)
    try:
        # First without SO_REUSEPORT, which only fails if something holds the port: another
        # Berth on it would otherwise join this one's group and share its connections.
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
        reservation = _reuse_port(_PortReservation(family, socket.SOCK_STREAM))
        reservation.bind(address)
    except OSError as exc:
        logging.getLogger("uvicorn.error").error("cannot listen on %s:%d: %s", *address, exc)
        return STARTUP_FAILURE
    reservation.backlog = config.backlog
    try:
        Multiprocess(config, sockets=[reservation]).run()
    finally:
        reservation.close()
    return 0

"""The HTTP protocol Berth serves with: uvicorn's httptools protocol, writing each response's
head and body in one send.

uvicorn writes the status line and headers as soon as the app starts a response, and the body
in a second write. On loopback and on real networks alike, each write is a system call and, with
TCP_NODELAY, a segment of its own that wakes the client twice; a manifest HEAD or GET spent half
its time there. Writes made in the same event-loop turn are gathered and handed over together
(one ``writev``); a streamed body still flows chunk by chunk, one turn behind at most.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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

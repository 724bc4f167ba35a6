"""The audit log: one JSON line per login, token issue, denial and admin change.

Written through the ``berth.audit`` logger to ``auth.audit_log`` (a file, appended to by every
worker with one write per line, or "-" for standard error), so it costs no database write on
the hot path of a pull storm.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_log = logging.getLogger("berth.audit")
# json.dumps(event, default=str), its encoder made once rather than per line.
_encode = json.JSONEncoder(default=str).encode


class _AppendHandler(logging.Handler):
    """Each line in one write(2) to a file opened O_APPEND: lines of several workers never
    interleave, and nothing sits in a buffer. Cheaper than FileHandler's stream and flush,
    which token issue paid twice per token."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(self.format(record))
        except Exception:
            self.handleError(record)

    def write(self, line: str) -> None:
        os.write(self._fd, (line + "\n").encode())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
        super().close()


# The audit file, when it is the logger's only destination: record() then writes to it
# directly, at half the cost of a pass through the logging machinery.
_direct: _AppendHandler | None = None


def configure(target: str) -> None:
    global _direct
    if any(getattr(h, "_berth_audit", False) for h in _log.handlers):
        return
    handler: logging.Handler
    if target == "-":
        handler = logging.StreamHandler()
    else:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        handler = _direct = _AppendHandler(target)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._berth_audit = True  # type: ignore[attr-defined]
    _log.addHandler(handler)
    _log.setLevel(logging.INFO)
    _log.propagate = False


def record(
    action: str,
    outcome: str,
    *,
    actor: str | None = None,
    target: str | None = None,
    client: str | None = None,
    **detail: Any,
) -> None:
    if not _log.isEnabledFor(logging.INFO):
        return
    event: dict[str, Any] = {
        "at": _timestamp(),
        "action": action,
        "outcome": outcome,
        "actor": actor,
        "target": target,
        "client": client,
    }
    if detail:
        event["detail"] = detail
    line = _encode(event)
    if _direct is not None and _log.handlers == [_direct] and not _log.propagate:
        with contextlib.suppress(OSError):  # else through logging, which reports the failure
            _direct.write(line)
            return
    # Logger.info would also walk the stack for the caller's file and line: unused here.
    _log.handle(_log.makeRecord(_log.name, logging.INFO, "", 0, line, None, None))


@functools.lru_cache(maxsize=4)
def _second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _timestamp() -> str:
    """Now as ISO 8601 in UTC with milliseconds (datetime.isoformat(timespec="milliseconds")),
    its seconds formatted once per second."""
    now = time.time()
    seconds = int(now)
    return f"{_second(seconds)}.{int((now - seconds) * 1000):03d}+00:00"

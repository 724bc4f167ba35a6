"""The audit log: one JSON line per login, token issue, denial and admin change.

Written through the ``berth.audit`` logger to ``auth.audit_log`` (a file, appended to by every
worker with one write per line, or "-" for standard error), so it costs no database write on
the hot path of a pull storm.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_log = logging.getLogger("berth.audit")


class _AppendHandler(logging.Handler):
    """Each line in one write(2) to a file opened O_APPEND: lines of several workers never
    interleave, and nothing sits in a buffer. Cheaper than FileHandler's stream and flush,
    which token issue paid twice per token."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            os.write(self._fd, (self.format(record) + "\n").encode())
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
        super().close()


def configure(target: str) -> None:
    if any(getattr(h, "_berth_audit", False) for h in _log.handlers):
        return
    handler: logging.Handler
    if target == "-":
        handler = logging.StreamHandler()
    else:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        handler = _AppendHandler(target)
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
    event: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "action": action,
        "outcome": outcome,
        "actor": actor,
        "target": target,
        "client": client,
    }
    if detail:
        event["detail"] = detail
    if _log.isEnabledFor(logging.INFO):
        # Logger.info would also walk the stack for the caller's file and line: unused here.
        line = json.dumps(event, default=str)
        _log.handle(_log.makeRecord(_log.name, logging.INFO, "", 0, line, None, None))

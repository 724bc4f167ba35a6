"""The audit log: one JSON line per login, token issue, denial and admin change.

Written through the ``berth.audit`` logger to ``auth.audit_log`` (a file, appended to by every
worker with one write per line, or "-" for standard error), so it costs no database write on
the hot path of a pull storm.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_log = logging.getLogger("berth.audit")


def configure(target: str) -> None:
    if any(getattr(h, "_berth_audit", False) for h in _log.handlers):
        return
    handler: logging.Handler
    if target == "-":
        handler = logging.StreamHandler()
    else:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(target, encoding="utf-8")
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
    _log.info(json.dumps(event, default=str))

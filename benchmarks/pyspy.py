"""Profile Berth's workers with py-spy while a load runs, and summarise where the time goes.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``); the summary
counts each function once per sample, by its own time (leaf) and by inclusive time.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

PY_SPY = shutil.which("py-spy")


def start(pids: list[int], seconds: float, out_dir: Path, label: str) -> list[subprocess.Popen]:  # type: ignore[type-arg]
    """One ``py-spy record`` per worker; each stops by itself after ``seconds``."""
    if PY_SPY is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for pid in pids:
        out = out_dir / f"{label}-{pid}.txt"
        procs.append(
            subprocess.Popen(
                [
                    PY_SPY,
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    str(max(1, round(seconds))),
                    "--rate",
                    "200",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    return procs


def wait(procs: list[subprocess.Popen]) -> None:  # type: ignore[type-arg]
    for p in procs:
        try:
            p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module.py)"; lines vary, functions do not.
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    marker = "site-packages/"
    if marker in path:
        path = path.split(marker, 1)[1]
    elif "/registry/" in path:
        path = "registry/" + path.split("/registry/", 1)[1]
    return f"{name} ({path})"


def summarise(files: list[Path], top: int = 15) -> dict[str, list[tuple[str, float]]]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for file in files:
        if not file.exists():
            continue
        for line in file.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [_short(f) for f in stack.split(";") if f and not f.startswith("process ")]
            frames = [f for f in frames if not f.startswith("thread ")]
            if not frames:
                continue
            total += n
            own[frames[-1]] += n
            for f in set(frames):
                inclusive[f] += n
    if total == 0:
        return {"self": [], "inclusive": []}
    return {
        "samples": [("total", float(total))],
        "self": [(f, 100.0 * n / total) for f, n in own.most_common(top)],
        # Berth's own functions, without the two wrappers every request passes through.
        "inclusive": [
            (f, 100.0 * n / total)
            for f, n in inclusive.most_common()
            if f.endswith(".py)")
            and "(registry/" in f
            and "(registry/app.py)" not in f
            and "(registry/routes.py)" not in f
        ][:top],
    }

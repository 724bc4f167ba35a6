"""Request loads from C and Go load generators: wrk (GET, with a Lua check of every answer) and
hey (HEAD), with their output parsed into numbers.

Every run is bounded by a duration; a run whose answers were not all the expected status (and,
where given, the expected Docker-Content-Digest) raises CheckFailed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from clients import CheckFailed

WRK = shutil.which("wrk") or "/usr/bin/wrk"
HEY = shutil.which("hey") or "/usr/bin/hey"

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}

# Counted in every wrk thread, summed in done(); each answer is checked, none sampled.
_LUA_COUNT_ONLY = r"""
function done(summary, latency, requests) io.write("CHECK unchecked\n") end
"""
_LUA = r"""
local expected = __STATUS__
local want_digest = "__DIGEST__"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; bad_status = 0; bad_digest = 0; last_status = 0 end
function response(status, headers, body)
  if status ~= expected then bad_status = bad_status + 1; last_status = status; return end
  if want_digest ~= "" then
    local d = headers["Docker-Content-Digest"] or headers["docker-content-digest"]
    if d ~= want_digest then bad_digest = bad_digest + 1; return end
  end
  ok = ok + 1
end
function done(summary, latency, requests)
  local o, bs, bd, ls = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); bs = bs + t:get("bad_status"); bd = bd + t:get("bad_digest")
    if t:get("last_status") ~= 0 then ls = t:get("last_status") end
  end
  io.write(string.format("CHECK ok=%d bad_status=%d bad_digest=%d last_bad=%d\n", o, bs, bd, ls))
end
"""


@dataclass
class LoadResult:
    tool: str
    requests: int
    seconds: float
    rps: float
    p99_ms: float
    bytes_read: float | None = None
    ok: int = 0

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def _size(value: str, unit: str) -> float:
    scale = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
    return float(value) * scale[unit]


def wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    status: int = 200,
    digest: str = "",
    threads: int = 2,
    check_each: bool = True,
) -> LoadResult:
    """``check_each=False`` leaves out the Lua response hook, which copies every body into Lua
    (it cuts wrk's 1 MiB GET rate several times over); then wrk's own count of non-2xx/3xx
    answers is the status check, and the caller checks a body's digest itself."""
    assert url.startswith("http://127.0.0.1:"), "loopback only"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        if check_each:
            f.write(_LUA.replace("__STATUS__", str(status)).replace("__DIGEST__", digest))
        else:
            assert status == 200 and not digest, "only a 200 can be checked without Lua"
            f.write(_LUA_COUNT_ONLY)
        script = f.name
    argv = [
        WRK,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        script,
    ]
    for k, v in (headers or {}).items():
        argv += ["-H", f"{k}: {v}"]
    argv.append(url)
    try:
        out = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds + 60, check=False
        ).stdout
    finally:
        Path(script).unlink(missing_ok=True)
    return parse_wrk(out)


def parse_wrk(out: str) -> LoadResult:
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m), ([\d.]+)(B|KB|MB|GB|TB) read", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    check = re.search(r"CHECK ok=(\d+) bad_status=(\d+) bad_digest=(\d+) last_bad=(\d+)", out)
    unchecked = "CHECK unchecked" in out
    if not (m and p99 and (check or unchecked)):
        raise CheckFailed(f"could not parse wrk output:\n{out}")
    requests = int(m.group(1))
    seconds = _ms(m.group(2), m.group(3)) / 1000
    if check:
        ok, bad_status, bad_digest = (int(check.group(i)) for i in (1, 2, 3))
        last_bad = check.group(4)
    else:
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        bad_status = int(non2xx.group(1)) if non2xx else 0
        ok, bad_digest, last_bad = requests - bad_status, 0, "?"
    errors = re.search(r"Socket errors: (.*)", out)
    if bad_status or bad_digest:
        raise CheckFailed(
            f"wrk: {bad_status} answers with a wrong status (last {last_bad}), "
            f"{bad_digest} with a wrong digest, of {requests}"
        )
    if errors and re.search(r"(read|write|timeout) [1-9]", errors.group(1)):
        raise CheckFailed(f"wrk socket errors: {errors.group(1)}")
    if ok == 0:
        raise CheckFailed("wrk: no answers")
    return LoadResult(
        tool="wrk",
        requests=requests,
        seconds=seconds,
        rps=ok / seconds,
        p99_ms=_ms(p99.group(1), p99.group(2)),
        bytes_read=_size(m.group(4), m.group(5)),
        ok=ok,
    )


def hey(
    url: str,
    *,
    method: str,
    concurrency: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    status: int = 200,
) -> LoadResult:
    assert url.startswith("http://127.0.0.1:"), "loopback only"
    argv = [HEY, "-z", f"{max(1, round(seconds))}s", "-c", str(concurrency), "-m", method]
    for k, v in (headers or {}).items():
        argv += ["-H", f"{k}: {v}"]
    argv.append(url)
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + 60, check=False
    ).stdout
    return parse_hey(out, status)


def parse_hey(out: str, status: int) -> LoadResult:
    total = re.search(r"Total:\s+([\d.]+) secs", out)
    p99 = re.search(r"99% in ([\d.]+) secs", out)
    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    if not (total and p99 and codes):
        raise CheckFailed(f"could not parse hey output:\n{out}")
    ok = codes.pop(status, 0)
    if codes:
        raise CheckFailed(f"hey: unexpected statuses {codes} (besides {ok} x {status})")
    # hey -z stops issuing at the deadline; requests cut off then are listed as errors.
    errors = re.search(r"Error distribution:\n((?:\s+\[\d+\].*\n?)+)", out)
    if errors:
        cut = sum(int(n) for n in re.findall(r"\[(\d+)\]", errors.group(1)))
        if cut > 2 * 50:  # more than the in-flight requests at the deadline: real errors
            raise CheckFailed(f"hey errors:\n{errors.group(1)}")
    seconds = float(total.group(1))
    return LoadResult(
        tool="hey",
        requests=ok,
        seconds=seconds,
        rps=ok / seconds,
        p99_ms=float(p99.group(1)) * 1000,
        ok=ok,
    )

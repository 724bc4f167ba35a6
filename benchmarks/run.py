#!/usr/bin/env python3
"""Berth against CNCF Distribution, on this machine, in one run.

    python benchmarks/run.py [--reps 3] [--quick] [--json out.json] [--profile DIR] [--keep]

Starts Berth (2 workers, token auth) and Distribution 2.8 (token auth trusting Berth's signing
key) on loopback, runs every step against both in alternating order (A/B, then B/A, ...),
checks every answer, and prints the median of each figure, Berth / Distribution.
See benchmarks/README.md for what each step measures.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

import clients  # noqa: E402
import load  # noqa: E402
import pyspy  # noqa: E402
import servers  # noqa: E402
from clients import BigClient, CheckFailed  # noqa: E402

MB = 1_000_000
MiB = 1 << 20
ACCEPT = ", ".join(  # what containerd 1.7 sends when it resolves a tag
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "*/*",
    ]
)
REPO_BIG, REPO_SMALL, REPO_APP = "bench/big", "bench/small", "bench/app"


@dataclass(frozen=True)
class Sizes:
    big: int
    small_count: int
    small_size: int
    seconds: float  # each wrk/hey load
    warmup: float
    layer: int = MiB


FULL = Sizes(big=1 << 30, small_count=500, small_size=64 * 1024, seconds=10, warmup=2)
QUICK = Sizes(big=64 * MiB, small_count=100, small_size=64 * 1024, seconds=3, warmup=1)


@dataclass(frozen=True)
class Figure:
    key: str
    step: str
    label: str
    higher_is_better: bool = True
    target: float | None = None  # an absolute target for Berth's own figure
    berth_only: bool = False
    ratio_target: float | None = 1.0  # Berth / Distribution (>=, or <= when lower is better)


def figures(sizes: Sizes) -> list[Figure]:
    big = f"{sizes.big // MiB} MiB" if sizes.big < 1 << 30 else f"{sizes.big >> 30} GiB"
    n, kib = sizes.small_count, sizes.small_size // 1024
    return [
        Figure("push_put", "a", f"push {big} blob, monolithic PUT (MB/s)"),
        Figure("push_patch", "a", f"push {big} blob, streamed PATCH (MB/s)"),
        Figure(
            "push_put_disk",
            "a",
            "monolithic PUT, % of disk write+fsync",
            target=80,
            berth_only=True,
        ),
        # The memory target is per worker process (Berth runs a supervisor and two
        # workers, Distribution one process), so the whole trees are shown for information.
        Figure(
            "rss_worker_put",
            "a",
            "peak RSS of one worker, PUT push (MiB)",
            False,
            target=100,
        ),
        Figure(
            "rss_worker_patch",
            "a",
            "peak RSS of one worker, PATCH push (MiB)",
            False,
            target=100,
        ),
        Figure("rss_idle", "a", "RSS of all processes at rest (MiB)", False, ratio_target=None),
        Figure("rss_put", "a", "peak RSS of all processes, PUT (MiB)", False, ratio_target=None),
        Figure(
            "rss_patch", "a", "peak RSS of all processes, PATCH (MiB)", False, ratio_target=None
        ),
        Figure("pull_big", "b", f"pull the {big} blob (MB/s)"),
        Figure("push_small", "c", f"push {n} x {kib} KiB blobs, c=16 (blobs/s)", ratio_target=1.5),
        Figure("pull_small", "c", f"pull {n} x {kib} KiB blobs, c=16 (blobs/s)", ratio_target=1.5),
        Figure("manifest_get", "d", "manifest GET by tag, c=50 (req/s)", ratio_target=2.0),
        Figure("manifest_get_p99", "d", "manifest GET by tag, p99 (ms)", False),
        Figure("manifest_head", "d", "manifest HEAD by tag, c=50 (req/s)", ratio_target=2.0),
        Figure("manifest_head_p99", "d", "manifest HEAD by tag, p99 (ms)", False),
        Figure("blob_1m", "e", "1 MiB blob GET, c=50 (MB/s)"),
        Figure("blob_1m_p99", "e", "1 MiB blob GET, p99 (ms)", False),
        Figure(
            "token", "f", "token issue, robot Basic, c=20 (tokens/s)", target=5000, berth_only=True
        ),
        Figure("token_p99", "f", "token issue, p99 (ms)", False, berth_only=True),
        Figure("base_401", "g", "unauthenticated GET /v2/ -> 401, c=50 (req/s)", ratio_target=3.0),
        Figure("base_401_p99", "g", "unauthenticated GET /v2/, p99 (ms)", False),
    ]


class PeakRSS:
    """The RSS of a process tree, sampled every 50 ms from /proc; keeps the peak of the sum
    (``peak``) and of the largest single process (``peak_process``)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.peak_process = pid, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        sizes = [servers.rss_bytes(p) for p in servers.tree(self.pid)]
        self.peak = max(self.peak, sum(sizes))
        self.peak_process = max([self.peak_process, *sizes])

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.05)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True)
    return done.stdout.strip()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def disk_write_fsync(path: Path, size: int) -> float:
    """MB/s of writing ``size`` bytes and fsync, what a registry's commit must wait for."""
    block = os.urandom(8 * MiB)
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - t0
    path.unlink()
    return size / elapsed / MB


def new_variant(path: Path) -> str:
    """Make the big file new content (its first bytes), so each push is of an unseen blob."""
    with open(path, "r+b") as f:
        f.write(os.urandom(64))
    return sha256_file(path)


# --- setup


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes = QUICK if args.quick else FULL
        self.work = Path(tempfile.mkdtemp(prefix="berth-bench-"))
        self.shm = Path(tempfile.mkdtemp(prefix="berth-bench-", dir="/dev/shm"))
        self.results: dict[str, dict[str, list[float]]] = {}
        self.reference: dict[str, Any] = {}
        self.profiles: dict[str, Any] = {}
        self.started: list[servers.Server] = []
        self.big_file = self.work / "big.bin"
        self.buffer = memoryview(bytearray(self.sizes.big))

    def record(self, key: str, registry: str, value: float) -> None:
        self.results.setdefault(key, {}).setdefault(registry, []).append(value)

    def start(self, server: servers.Server) -> None:
        self.started.append(server)
        server.start()

    def stop_all(self) -> None:
        for server in reversed(self.started):
            try:
                server.stop()
            except Exception as exc:  # keep stopping the others
                log(f"stopping {server.name}: {exc}")

    def cleanup(self) -> None:
        self.stop_all()
        if self.args.keep:
            log(f"kept {self.work} and {self.shm}")
            return
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.rmtree(self.shm, ignore_errors=True)

    def make_big_file(self) -> None:
        with open(self.big_file, "wb") as f:
            for _ in range(self.sizes.big // (8 * MiB) or 1):
                f.write(os.urandom(min(8 * MiB, self.sizes.big)))

    # --- the client ceilings, against nginx

    def reference_runs(self) -> None:
        s = self.sizes
        files = self.work / "files"
        files.mkdir()
        os.link(self.big_file, files / "big.bin")
        (files / "layer.bin").write_bytes(os.urandom(s.layer))
        nginx = servers.Nginx(self.work, servers.free_port(), files, self.shm)
        self.start(nginx)
        try:
            log("client ceilings against nginx")
            big = BigClient(nginx.base)
            size, digest = s.big, sha256_file(self.big_file)
            for key, chunked in (("put", False), ("patch", True)):
                t0 = time.perf_counter()
                big.send_file(
                    "PUT",
                    f"/sink/big-{key}",
                    str(self.big_file),
                    size,
                    chunked=chunked,
                    into_status=201,
                )
                self.reference[f"client_{key}_MBps"] = size / (time.perf_counter() - t0) / MB
                (self.shm / "sink" / f"big-{key}").unlink()
            elapsed = clients.pull_big(big, "/files/big.bin", self.buffer, size, digest)
            self.reference["client_pull_MBps"] = size / elapsed / MB
            blobs = clients.small_blobs(s.small_count, s.small_size)
            elapsed, paths = clients.push_small(nginx.base, None, "", blobs, 16, "/start")
            self.reference["client_push_small_per_s"] = len(blobs) / elapsed
            elapsed = clients.pull_small(nginx.base, None, paths, blobs, 16)
            self.reference["client_pull_small_per_s"] = len(blobs) / elapsed
            shutil.rmtree(self.shm / "sink")
            got = load.wrk(
                nginx.base + "/files/layer.bin", connections=50, seconds=s.seconds, check_each=False
            )
            self.reference["wrk_1MiB_get_MBps"] = got.ok * s.layer / got.seconds / MB
        finally:
            nginx.stop()
            self.started.remove(nginx)

    # --- the registries

    def start_registries(self) -> None:
        self.berth = servers.Berth(self.work, servers.free_port())
        log("berth: tenant, user, member, robot through the CLI")
        self.berth.setup()
        cert = self.berth.certificate_pem()
        self.start(self.berth)
        self.dist = servers.Distribution(
            self.work, servers.free_port(), f"{self.berth.base}/auth/token", cert
        )
        self.start(self.dist)
        self.token = self.berth.token(
            [f"repository:{r}:pull,push" for r in (REPO_BIG, REPO_SMALL, REPO_APP)]
        )
        self.registries: dict[str, servers.Server] = {
            "berth": self.berth,
            "distribution": self.dist,
        }
        for name, server in self.registries.items():
            got = BigClient(server.base, self.token).request("GET", "/v2/")
            clients.expect(got, 200, f"{name}: GET /v2/ with a Berth token")
        log("both registries accept the Berth token (GET /v2/ -> 200)")

    def seed_app(self) -> None:
        """bench/app:latest, an OCI image of one 1 MiB layer, in both registries."""
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
            }
        ).encode()
        self.layer = os.urandom(self.sizes.layer)
        self.layer_digest = "sha256:" + hashlib.sha256(self.layer).hexdigest()
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest,
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": self.layer_digest,
                        "size": len(self.layer),
                    }
                ],
            },
            indent=3,
        ).encode()
        self.manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        for name, server in self.registries.items():
            clients.push_small(
                server.base,
                self.token,
                REPO_APP,
                [(config, config_digest), (self.layer, self.layer_digest)],
                2,
            )
            c = BigClient(server.base, self.token)
            put = c.request(
                "PUT",
                f"/v2/{REPO_APP}/manifests/latest",
                {"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                manifest,
            )
            clients.expect(put, 201, f"{name}: PUT manifest")
            clients.expect_digest(put, self.manifest_digest, f"{name}: PUT manifest")
            got = c.request("GET", f"/v2/{REPO_APP}/manifests/latest", {"Accept": ACCEPT})
            clients.expect(got, 200, f"{name}: GET manifest")
            if got.body != manifest:
                raise CheckFailed(f"{name}: GET manifest answered other bytes")
            buf = memoryview(bytearray(self.sizes.layer))
            clients.pull_big(
                c,
                f"/v2/{REPO_APP}/blobs/{self.layer_digest}",
                buf,
                self.sizes.layer,
                self.layer_digest,
            )
        log("bench/app:latest pushed to both and read back")

    # --- the steps; each runs against one registry

    def order(self, rep: int) -> list[str]:
        names = ["berth", "distribution"]
        return names if rep % 2 == 0 else names[::-1]

    def step_push_big(self, rep: int) -> None:
        s = self.sizes
        # The disk's own write+fsync, measured in every repetition just before the pushes: it
        # varies by a factor of two between runs here, so the PUT is judged against its own.
        os.sync()
        disk = disk_write_fsync(self.work / "dd.bin", s.big)
        self.record("disk", "reference", disk)
        self.reference["disk_write_fsync_MBps"] = statistics.median(
            self.results["disk"]["reference"]
        )
        log(f"  a disk  write + fsync  {disk:8.1f} MB/s")
        for key, streamed in (("put", False), ("patch", True)):
            digest = new_variant(self.big_file)
            if key == "put":
                self.big_digest = digest
            for name in self.order(rep):
                server = self.registries[name]
                os.sync()  # the previous push's dirty pages are not this one's cost
                if key == "put":
                    self.record("rss_idle", name, servers.tree_rss(server.pid) / MiB)
                with PeakRSS(server.pid) as rss:
                    elapsed = clients.push_big(
                        BigClient(server.base, self.token),
                        REPO_BIG,
                        str(self.big_file),
                        s.big,
                        digest,
                        streamed=streamed,
                    )
                self.record(f"push_{key}", name, s.big / elapsed / MB)
                self.record(f"rss_{key}", name, rss.peak / MiB)
                self.record(f"rss_worker_{key}", name, rss.peak_process / MiB)
                log(
                    f"  a {key:5} {name:12} {s.big / elapsed / MB:8.1f} MB/s  "
                    f"peak RSS {rss.peak / MiB:.0f} MiB"
                )

    def step_pull_big(self, rep: int) -> None:
        s = self.sizes
        for name in self.order(rep):
            c = BigClient(self.registries[name].base, self.token)
            elapsed = clients.pull_big(
                c, f"/v2/{REPO_BIG}/blobs/{self.big_digest}", self.buffer, s.big, self.big_digest
            )
            self.record("pull_big", name, s.big / elapsed / MB)
            log(f"  b pull  {name:12} {s.big / elapsed / MB:8.1f} MB/s")

    def step_small(self, rep: int) -> None:
        s = self.sizes
        blobs = clients.small_blobs(s.small_count, s.small_size)
        paths: dict[str, list[str]] = {}
        for name in self.order(rep):
            elapsed, paths[name] = clients.push_small(
                self.registries[name].base, self.token, REPO_SMALL, blobs, 16
            )
            self.record("push_small", name, len(blobs) / elapsed)
            log(f"  c push  {name:12} {len(blobs) / elapsed:8.1f} blobs/s")
        for name in self.order(rep):
            elapsed = clients.pull_small(
                self.registries[name].base, self.token, paths[name], blobs, 16
            )
            self.record("pull_small", name, len(blobs) / elapsed)
            log(f"  c pull  {name:12} {len(blobs) / elapsed:8.1f} blobs/s")

    def _loads(self) -> list[tuple[str, str, bool, Any]]:
        """(key, unit, berth_only, run(server, seconds) -> LoadResult) of the load steps."""
        bearer = {"Authorization": f"Bearer {self.token}"}
        basic = base64.b64encode(
            f"{self.berth.robot_user}:{self.berth.robot_secret}".encode()
        ).decode()
        manifest = f"/v2/{REPO_APP}/manifests/latest"
        blob = f"/v2/{REPO_APP}/blobs/{self.layer_digest}"
        token_url = f"/auth/token?service=berth&scope=repository:{REPO_APP}:pull"
        return [
            (
                "manifest_get",
                "req/s",
                False,
                lambda srv, sec: load.wrk(
                    srv.base + manifest,
                    connections=50,
                    seconds=sec,
                    headers={**bearer, "Accept": ACCEPT},
                    digest=self.manifest_digest,
                ),
            ),
            (
                "manifest_head",
                "req/s",
                False,
                lambda srv, sec: load.hey(
                    srv.base + manifest,
                    method="HEAD",
                    concurrency=50,
                    seconds=sec,
                    headers={**bearer, "Accept": ACCEPT},
                ),
            ),
            (
                "blob_1m",
                "MB/s",
                False,
                lambda srv, sec: load.wrk(
                    srv.base + blob, connections=50, seconds=sec, headers=bearer, check_each=False
                ),
            ),
            (
                "token",
                "tokens/s",
                True,
                lambda srv, sec: load.wrk(
                    srv.base + token_url,
                    connections=20,
                    seconds=sec,
                    headers={"Authorization": f"Basic {basic}"},
                ),
            ),
            (
                "base_401",
                "req/s",
                False,
                lambda srv, sec: load.wrk(
                    srv.base + "/v2/", connections=50, seconds=sec, status=401
                ),
            ),
        ]

    def step_loads(self, rep: int) -> None:
        s = self.sizes
        for key, unit, berth_only, run in self._loads():
            for name in self.order(rep):
                if berth_only and name != "berth":
                    continue
                server = self.registries[name]
                if s.warmup:
                    run(server, s.warmup)
                got = run(server, s.seconds)
                value = got.ok * s.layer / got.seconds / MB if unit == "MB/s" else got.rps
                self.record(key, name, value)
                self.record(f"{key}_p99", name, got.p99_ms)
                log(
                    f"  {key:14} {name:12} {value:9.1f} {unit:8} p99 {got.p99_ms:7.1f} ms "
                    f"({got.tool}, {got.ok} answers checked)"
                )

    def check_token_works_on_distribution(self) -> None:
        """A robot's token from the load step's URL is accepted by Distribution too."""
        token = self.berth.token(
            [f"repository:{REPO_APP}:pull"], self.berth.robot_user, self.berth.robot_secret
        )
        got = BigClient(self.dist.base, token).request(
            "HEAD", f"/v2/{REPO_APP}/manifests/latest", {"Accept": ACCEPT}
        )
        clients.expect(got, 200, "distribution: HEAD manifest with the robot's token")

    def profile_berth(self) -> None:
        """Each load once more against Berth under py-spy (not counted in the figures)."""
        out = Path(self.args.profile)
        workers = [
            p
            for p in servers.tree(self.berth.pid)
            if "spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")
        ]
        log(f"profiling Berth workers {workers} with py-spy into {out}")
        for key, _unit, _only, run in self._loads():
            procs = pyspy.start(workers, self.sizes.seconds, out, key)
            time.sleep(0.5)
            run(self.berth, self.sizes.seconds)
            pyspy.wait(procs)
            self.profiles[key] = pyspy.summarise([out / f"{key}-{p}.txt" for p in workers])
        # Many small pushes: POST + PUT, each a few database transactions.
        blobs = clients.small_blobs(self.sizes.small_count, self.sizes.small_size)
        procs = pyspy.start(workers, self.sizes.seconds, out, "push_small")
        time.sleep(0.5)
        clients.push_small(self.berth.base, self.token, REPO_SMALL, blobs, 16)
        pyspy.wait(procs)
        self.profiles["push_small"] = pyspy.summarise(
            [out / f"push_small-{p}.txt" for p in workers]
        )
        # The big push too: what the single connection's worker spends its time on.
        procs = pyspy.start(workers, 8 if self.args.quick else 20, out, "push_put")
        time.sleep(0.5)
        digest = new_variant(self.big_file)
        clients.push_big(
            BigClient(self.berth.base, self.token),
            REPO_BIG,
            str(self.big_file),
            self.sizes.big,
            digest,
            streamed=False,
        )
        pyspy.wait(procs)
        self.profiles["push_put"] = pyspy.summarise([out / f"push_put-{p}.txt" for p in workers])

    # --- the whole run

    def run(self) -> dict[str, Any]:
        s = self.sizes
        meta = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "quick": self.args.quick,
            "reps": self.args.reps,
            "sizes": s.__dict__,
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "loadavg_start": os.getloadavg(),
            },
            "distribution": subprocess.run(
                [servers.DISTRIBUTION_BIN, "--version"], capture_output=True, text=True
            ).stdout.strip(),
            # What Berth was: the benchmark measures the working tree, committed or not.
            "berth_commit": _git("rev-parse", "HEAD"),
            "berth_uncommitted_files": len(_git("status", "--porcelain", "registry").splitlines()),
            "wrk": "wrk (Debian)",
            "hey": "hey (Debian)",
            "push_small_client": "Python asyncio streams (uvloop); wrk/hey cannot run the "
            "POST-then-PUT upload protocol",
        }
        log(f"work dir {self.work}; big blob {s.big // MiB} MiB")
        self.make_big_file()
        self.reference_runs()
        self.start_registries()
        self.seed_app()
        self.check_token_works_on_distribution()
        for rep in range(self.args.reps):
            log(f"repetition {rep + 1}/{self.args.reps}: order {' then '.join(self.order(rep))}")
            self.step_push_big(rep)
            self.step_pull_big(rep)
            self.step_small(rep)
            self.step_loads(rep)
        if self.args.profile:
            try:
                self.profile_berth()
            except Exception as exc:  # the measured figures stand without the profile
                log(f"profiling failed: {exc!r}")
        meta["machine"]["loadavg_end"] = os.getloadavg()
        return {
            "meta": meta,
            "reference": self.reference,
            "figures": self.table(),
            "profiles": self.profiles,
        }

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for fig in figures(self.sizes):
            values = self.results.get(fig.key, {})
            b = statistics.median(values["berth"]) if values.get("berth") else None
            d = statistics.median(values["distribution"]) if values.get("distribution") else None
            ratio = b / d if b is not None and d else None
            if fig.key == "push_put_disk":
                # Each repetition's PUT against that repetition's disk figure, then the median.
                put = self.results.get("push_put", {}).get("berth", [])
                disk = self.results.get("disk", {}).get("reference", [])
                if put and len(put) == len(disk):
                    b = statistics.median(100 * p / d for p, d in zip(put, disk, strict=True))
            sign = ">=" if fig.higher_is_better else "<="
            met: bool | None
            if fig.target is not None:
                target = f"{sign} {fig.target:,.0f}"
                met = b is not None and (
                    b >= fig.target if fig.higher_is_better else b <= fig.target
                )
            elif fig.berth_only or fig.ratio_target is None:
                target, met = "-", None
            else:
                goal = fig.ratio_target
                target = f"{sign} {goal:.2f}x"
                met = ratio is not None and (
                    ratio >= goal if fig.higher_is_better else ratio <= goal
                )
            rows.append(
                {
                    "step": fig.step,
                    "key": fig.key,
                    "figure": fig.label,
                    "berth": values.get("berth", []),
                    "distribution": values.get("distribution", []),
                    "berth_median": b,
                    "distribution_median": d,
                    "ratio": ratio,
                    "higher_is_better": fig.higher_is_better,
                    "target": target,
                    "met": met,
                }
            )
        return rows


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}" if abs(v) >= 10 else f"{v:,.2f}"


def print_report(report: dict[str, Any]) -> None:
    rows = [["step", "figure", "Berth", "Distribution", "ratio", "target"]]
    for r in report["figures"]:
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        mark = {True: " ok", False: " MISSED", None: ""}[r["met"]]
        rows.append(
            [
                r["step"],
                r["figure"],
                _fmt(r["berth_median"]),
                _fmt(r["distribution_median"]),
                ratio,
                f"{r['target']}{mark}",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    print(
        f"Medians of {report['meta']['reps']} repetitions "
        f"({'quick' if report['meta']['quick'] else 'full'} sizes); "
        "ratio = Berth / Distribution."
    )
    for i, row in enumerate(rows):
        cells = [
            c.ljust(w) if j < 2 else c.rjust(w)
            for j, (c, w) in enumerate(zip(row, widths, strict=False))
        ]
        print(" | ".join(cells))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    ref = report["reference"]
    print("\nReference (the disk in every repetition of step a; the clients once, against nginx):")
    names = {
        "disk_write_fsync_MBps": "disk: write + fsync of the big blob's size (MB/s, median)",
        "client_put_MBps": "streaming client -> nginx, PUT with Content-Length (MB/s)",
        "client_patch_MBps": "streaming client -> nginx, chunked PUT (MB/s)",
        "client_pull_MBps": "streaming client <- nginx, GET (MB/s)",
        "client_push_small_per_s": "asyncio client -> nginx, small POST+PUT (blobs/s)",
        "client_pull_small_per_s": "asyncio client <- nginx, small GET + sha256 (blobs/s)",
        "wrk_1MiB_get_MBps": "wrk <- nginx, 1 MiB GET, c=50 (MB/s)",
    }
    for key, label in names.items():
        if key in ref:
            print(f"  {label:62} {_fmt(ref[key])}")
    la = report["meta"]["machine"]
    print(
        f"  load average at start / end: {la['loadavg_start'][0]:.2f} / "
        f"{la['loadavg_end'][0]:.2f} (on {la['cpus']} CPUs)"
    )
    for key, prof in report.get("profiles", {}).items():
        if not prof.get("self"):
            continue
        print(f"\npy-spy, Berth workers during {key} (% of samples):")
        print("  self time:")
        for name, pct in prof["self"][:10]:
            print(f"    {pct:5.1f}%  {name}")
        print("  inclusive, Berth's own functions:")
        for name, pct in prof["inclusive"][:10]:
            print(f"    {pct:5.1f}%  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions (at least 3)")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, short loads: a smoke run"
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        default="berth-bench.json",
        help="where to write the results (default: ./berth-bench.json)",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="after the measured runs, run each load once more against Berth "
        "under py-spy and summarise where its workers spend time",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = parser.parse_args(argv)
    if args.reps < 3:
        parser.error("--reps must be at least 3: the medians need A/B and B/A orders")
    for tool in (load.WRK, load.HEY, servers.DISTRIBUTION_BIN, servers.NGINX_BIN):
        if not Path(tool).exists():
            parser.error(f"{tool} is missing: apt-get install wrk hey docker-registry nginx-light")
    bench = Bench(args)
    try:
        report = bench.run()
    except CheckFailed as exc:
        log(f"CHECK FAILED: {exc}")
        return 1
    finally:
        bench.cleanup()
    Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    print_report(report)
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

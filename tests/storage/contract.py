"""The behaviour every storage driver must show, written once against the contract alone.

Modelled on CNCF Distribution's ``storage/driver/testsuites``. A driver's test module plugs in
with a few lines: a ``driver`` fixture and a subclass of :class:`DriverContract`::

    @pytest.fixture
    async def driver() -> AsyncIterator[StorageDriver]:
        d = MyDriver(...)
        yield d
        await d.close()

    class TestMyDriver(DriverContract):
        pass

It may also provide a ``leftover_check`` fixture: a callable (sync or async) given the test's
prefix after the prefix was deleted, which looks below the contract (the directory on disk, the
bucket's raw keys, pending multipart uploads) for anything the driver left behind.

Every test works under its own random prefix, so several runs can share one bucket. After each
test the prefix is deleted and must then be gone for ``stat`` and ``list``: a driver that leaves
stray files behind fails the test that caused them.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest

from registry.storage.driver import (
    FileInfo,
    InvalidOffset,
    InvalidPath,
    PathNotFound,
    StorageDriver,
)

MiB = 1024 * 1024

# Paths the contract's grammar rejects. "{p}" is the test's prefix, so that a driver which wrongly
# accepts one leaves its mess where the leftover check finds it.
INVALID_PATHS = [
    "",
    "relative",
    "relative/child",
    "/",
    "//",
    "{p}/",
    "{p}//child",
    "/{p}",
    "{p}/.",
    "{p}/..",
    "{p}/./child",
    "{p}/../child",
    "{p}/child/..",
    "/.",
    "/..",
    "{p}/with space",
    "{p}/with\ttab",
    "{p}/with\nnewline",
    "{p}/trailing-newline\n",
    "{p}/with\x00nul",
    "{p}/caf\u00e9",
    "{p}/colon:name",
    "{p}/back\\slash",
    "{p}/question?mark",
    "{p}/star*",
    "{p}/percent%2Fencoded",
    "{p}/tilde~",
    "{p}/plus+sign",
]

# Longer than any filesystem component (255) or S3 key (1024 bytes) or Linux PATH_MAX (4096).
LONG_INVALID_PATHS = {
    "component-300": "{p}/" + "a" * 300,
    "total-5400": "{p}" + "/abcdefgh" * 600,
}

# Unusual but valid names: every one must round-trip like any other.
ODD_VALID_NAMES = ["...", "a..b", "..a", "a..", ".hidden", "-", "_", "a.b-c_D9", "UPPER", "0"]


def _ops() -> dict[str, Callable[[StorageDriver, str, str], Awaitable[Any]]]:
    """Every contract method, called with a bad path; ``scratch`` is a valid, existing file."""

    async def writer_resume(d: StorageDriver, path: str, scratch: str) -> Any:
        w = await d.writer(scratch + "-writer")
        state = w.state()
        await w.cancel()
        return await d.writer(path, resume=state)

    return {
        "get_content": lambda d, path, scratch: d.get_content(path),
        "put_content": lambda d, path, scratch: d.put_content(path, b"data"),
        "reader": lambda d, path, scratch: d.reader(path),
        "reader_offset": lambda d, path, scratch: d.reader(path, 1, 1),
        "writer": lambda d, path, scratch: d.writer(path),
        "writer_resume": writer_resume,
        "stat": lambda d, path, scratch: d.stat(path),
        "list": lambda d, path, scratch: d.list(path),
        "move_source": lambda d, path, scratch: d.move(path, scratch),
        "move_dest": lambda d, path, scratch: d.move(scratch, path),
        "delete": lambda d, path, scratch: d.delete(path),
    }


OPS = _ops()


def random_chunks(seed: int, total: int, low: int = 1, high: int = 3 * MiB) -> Iterator[bytes]:
    """A reproducible stream of ``total`` random bytes cut into chunks of uneven sizes."""
    rng = random.Random(seed)
    left = total
    while left:
        n = min(left, rng.randint(low, high))
        yield rng.randbytes(n)
        left -= n


def sha256_of_window(seed: int, total: int, start: int, end: int, high: int = 3 * MiB) -> str:
    """The sha256 of bytes [start, end) of ``random_chunks(seed, total, high=high)``, streamed."""
    h = hashlib.sha256()
    pos = 0
    for chunk in random_chunks(seed, total, high=high):
        lo, hi = max(start, pos), min(end, pos + len(chunk))
        if lo < hi:
            h.update(chunk[lo - pos : hi - pos])
        pos += len(chunk)
    return h.hexdigest()


async def _aclose(stream: AsyncIterator[bytes]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def read_all(
    driver: StorageDriver, path: str, offset: int = 0, length: int | None = None
) -> bytes:
    stream = await driver.reader(path, offset, length)
    try:
        parts = []
        async for chunk in stream:
            assert isinstance(chunk, bytes | bytearray | memoryview), type(chunk)
            parts.append(bytes(chunk))
        return b"".join(parts)
    finally:
        await _aclose(stream)


async def sha256_of_stream(
    driver: StorageDriver, path: str, offset: int = 0, length: int | None = None
) -> tuple[str, int]:
    stream = await driver.reader(path, offset, length)
    h, n = hashlib.sha256(), 0
    try:
        async for chunk in stream:
            h.update(chunk)
            n += len(chunk)
    finally:
        await _aclose(stream)
    return h.hexdigest(), n


async def assert_missing(driver: StorageDriver, path: str) -> None:
    """Nothing at ``path``, neither a file nor a directory."""
    for what, call in (
        ("stat", driver.stat),
        ("get_content", driver.get_content),
        ("list", driver.list),
    ):
        try:
            found = await call(path)
        except PathNotFound:
            continue
        shown = found if not isinstance(found, bytes) else f"{len(found)} bytes"
        pytest.fail(f"{what}({path!r}) should raise PathNotFound, gave {shown!r}")


class DriverContract:
    """Behaviour shared by every StorageDriver. Subclass it as ``Test<Driver>``."""

    pytestmark = pytest.mark.anyio

    @pytest.fixture(autouse=True)
    async def prefix(
        self, driver: StorageDriver, request: pytest.FixtureRequest
    ) -> AsyncIterator[str]:
        try:
            leftover_check = request.getfixturevalue("leftover_check")
        except pytest.FixtureLookupError:
            leftover_check = None
        prefix = f"/contract-{uuid.uuid4().hex}"
        yield prefix
        with contextlib.suppress(PathNotFound):
            await driver.delete(prefix)
        for what, call in (("stat", driver.stat), ("list", driver.list)):
            try:
                found = await call(prefix)
            except PathNotFound:
                continue
            pytest.fail(f"left behind: {what}({prefix!r}) gave {found!r} after deleting it")
        if leftover_check is not None:
            result = leftover_check(prefix)
            if inspect.isawaitable(result):
                await result

    # -- put_content / get_content -------------------------------------------------------------

    async def test_put_get_small(self, driver: StorageDriver, prefix: str) -> None:
        path = f"{prefix}/small"
        await driver.put_content(path, b"hello, registry")
        assert await driver.get_content(path) == b"hello, registry"

    async def test_put_get_empty(self, driver: StorageDriver, prefix: str) -> None:
        path = f"{prefix}/empty"
        await driver.put_content(path, b"")
        assert await driver.get_content(path) == b""
        info = await driver.stat(path)
        assert (info.size, info.is_dir) == (0, False)

    async def test_put_get_binary(self, driver: StorageDriver, prefix: str) -> None:
        path = f"{prefix}/binary"
        data = bytes(range(256)) * 4 + random.Random(1).randbytes(64 * 1024) + b"\x00\r\n\x00"
        await driver.put_content(path, data)
        assert await driver.get_content(path) == data

    async def test_put_overwrites_with_shorter_and_longer(
        self, driver: StorageDriver, prefix: str
    ) -> None:
        path = f"{prefix}/overwritten"
        for data in (b"a" * 1000, b"short", b"", b"b" * 5000):
            await driver.put_content(path, data)
            assert await driver.get_content(path) == data
            assert (await driver.stat(path)).size == len(data)

    async def test_put_creates_parents(self, driver: StorageDriver, prefix: str) -> None:
        path = f"{prefix}/a/b/c/d/e/file"
        await driver.put_content(path, b"deep")
        assert await driver.get_content(path) == b"deep"
        assert (await driver.stat(f"{prefix}/a/b")).is_dir

    async def test_put_content_is_atomic_for_readers(
        self, driver: StorageDriver, prefix: str
    ) -> None:
        path = f"{prefix}/swapped"
        versions = [bytes([65 + i]) * (256 * 1024 + i) for i in range(4)]
        await driver.put_content(path, versions[0])
        seen: list[bytes] = []

        async def writer() -> None:
            for i in range(20):
                await driver.put_content(path, versions[i % len(versions)])

        async def reader() -> None:
            for _ in range(40):
                seen.append(await driver.get_content(path))
                await anyio.sleep(0)

        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            tg.start_soon(reader)
        assert seen
        for got in seen:
            assert got in versions, f"partial content of {len(got)} bytes seen"

    async def test_odd_but_valid_names_round_trip(self, driver: StorageDriver, prefix: str) -> None:
        for name in ODD_VALID_NAMES:
            await driver.put_content(f"{prefix}/odd/{name}", name.encode())
        for name in ODD_VALID_NAMES:
            assert await driver.get_content(f"{prefix}/odd/{name}") == name.encode()
        assert await driver.list(f"{prefix}/odd") == sorted(
            f"{prefix}/odd/{n}" for n in ODD_VALID_NAMES
        )

    async def test_long_valid_path_round_trips(self, driver: StorageDriver, prefix: str) -> None:
        # Layout paths carry 64-hex digests and nested repository names: well under S3's 1024.
        path = prefix + ("/" + "x" * 200) * 4
        assert len(path) < 900
        await driver.put_content(path, b"long")
        assert await driver.get_content(path) == b"long"

    async def test_get_missing(self, driver: StorageDriver, prefix: str) -> None:
        with pytest.raises(PathNotFound):
            await driver.get_content(f"{prefix}/missing")

    async def test_get_directory_is_not_found(self, driver: StorageDriver, prefix: str) -> None:
        await driver.put_content(f"{prefix}/dir/file", b"x")
        with pytest.raises(PathNotFound):
            await driver.get_content(f"{prefix}/dir")

    async def test_get_below_a_file_is_not_found(self, driver: StorageDriver, prefix: str) -> None:
        await driver.put_content(f"{prefix}/file", b"x")
        with pytest.raises(PathNotFound):
            await driver.get_content(f"{prefix}/file/child")
        with pytest.raises(PathNotFound):
            await driver.stat(f"{prefix}/file/child")

    # -- invalid paths ---------------------------------------------------------------------------

    @pytest.mark.parametrize("op", list(OPS))
    @pytest.mark.parametrize("template", INVALID_PATHS, ids=repr)
    async def test_invalid_path(
        self, driver: StorageDriver, prefix: str, template: str, op: str
    ) -> None:
        scratch = f"{prefix}/scratch"
        await driver.put_content(scratch, b"scratch")
        with pytest.raises(InvalidPath):
            result = await OPS[op](driver, template.format(p=prefix), scratch)
            await _aclose_if_stream(result)
        assert await driver.get_content(scratch) == b"scratch"

    @pytest.mark.parametrize(
        "template", list(LONG_INVALID_PATHS.values()), ids=list(LONG_INVALID_PATHS)
    )
    async def test_very_long_path_is_invalid(
        self, driver: StorageDriver, prefix: str, template: str
    ) -> None:
        # One test per path, every method inside: a missing length limit is one gap, not eleven.
        scratch = f"{prefix}/scratch"
        await driver.put_content(scratch, b"scratch")
        path = template.format(p=prefix)
        outcomes = {op: await _outcome(call(driver, path, scratch)) for op, call in OPS.items()}
        assert {op: r for op, r in outcomes.items() if r != "InvalidPath"} == {}

    async def test_redirect_url_rejects_invalid_path(
        self, driver: StorageDriver, prefix: str
    ) -> None:
        paths = [t.format(p=prefix) for t in INVALID_PATHS]
        outcomes = {path: await _outcome(driver.redirect_url(path)) for path in paths}
        assert {p: r for p, r in outcomes.items() if r != "InvalidPath"} == {}

    # -- reader ----------------------------------------------------------------------------------

    async def test_reader_offsets_and_lengths(self, driver: StorageDriver, prefix: str) -> None:
        path = f"{prefix}/ranged"
        # Past a few MiB so ranges cross whatever block or part size the driver reads in.
        data = random.Random(2).randbytes(3 * MiB + 17)
        await driver.put_content(path, data)
        size = len(data)
        cases = [
            (0, None),
            (0, 0),
            (0, 1),
            (0, size),
            (1, None),
            (MiB - 1, 2),
            (MiB, MiB),
            (size // 2, None),
            (size // 2, 1000),
            (size - 1, None),
            (size - 1, 1),
            (size, None),
            (size, 0),
            (size, 10),
            (size - 5, 100),
            (10, size * 2),
        ]
        for offset, length in cases:
            end = size if length is None else min(size, offset + length)
            got = await read_all(driver, path, offset, length)
            assert got == data[offset:end], f"offset={offset} length={length}"

    async def test_reader_of_empty_file(self, driver: StorageDriver, prefix: str) -> None:
        path = f"{prefix}/empty"
        await driver.put_content(path, b"")
        assert await read_all(driver, path) == b""
        assert await read_all(driver, path, 0, 10) == b""
        with pytest.raises(InvalidOffset):
            await driver.reader(path, 1)

    @pytest.mark.parametrize("past", [1, 2, 4096, 10 * MiB])
    async def test_reader_past_end_is_invalid_offset(
        self, driver: StorageDriver, prefix: str, past: int
    ) -> None:
        path = f"{prefix}/short"
        await driver.put_content(path, b"0123456789")
        # Raised when the stream is opened, before any chunk: a handler can still answer 416.
        with pytest.raises(InvalidOffset):
            await driver.reader(path, 10 + past)

    async def test_reader_negative_offset_is_invalid(
        self, driver: StorageDriver, prefix: str
    ) -> None:
        path = f"{prefix}/short"
        await driver.put_content(path, b"0123456789")
        with pytest.raises(InvalidOffset):
            await driver.reader(path, -1)

    async def test_reader_missing(self, driver: StorageDriver, prefix: str) -> None:
        with pytest.raises(PathNotFound):
            await driver.reader(f"{prefix}/missing")
        with pytest.raises(PathNotFound):
            await driver.reader(f"{prefix}/missing", 5, 5)

    async def test_reader_of_directory_is_not_found(
        self, driver: StorageDriver, prefix: str
    ) -> None:
        await driver.put_content(f"{prefix}/dir/file", b"x")
        with pytest.raises(PathNotFound):
            await driver.reader(f"{prefix}/dir")

    async def test_reader_abandoned_early(self, driver: StorageDriver, prefix: str) -> None:
        path = f"{prefix}/abandoned"
        await driver.put_content(path, b"z" * (3 * MiB))
        stream = await driver.reader(path)
        first = await stream.__anext__()
        assert first
        await _aclose(stream)
        await driver.delete(path)
        await assert_missing(driver, path)

    # -- large streamed files --------------------------------------------------------------------

    async def test_large_streamed_file(self, driver: StorageDriver, prefix: str) -> None:
        path = f"{prefix}/large"
        seed, total = 20, 20 * MiB
        w = await driver.writer(path)
        h = hashlib.sha256()
        for chunk in random_chunks(seed, total):
            await w.write(chunk)
            h.update(chunk)
        assert w.size == total
        await w.commit()

        assert (await driver.stat(path)).size == total
        assert await sha256_of_stream(driver, path) == (h.hexdigest(), total)
        start, length = 5 * MiB + 3, 7 * MiB + 11
        expected = sha256_of_window(seed, total, start, start + length)
        assert await sha256_of_stream(driver, path, start, length) == (expected, length)
        tail = total - 12345
        expected = sha256_of_window(seed, total, tail, total)
        assert await sha256_of_stream(driver, path, tail) == (expected, 12345)

    async def test_large_file_written_across_resumes(
        self, driver: StorageDriver, prefix: str
    ) -> None:
        # Sessions end at uneven offsets, as uploads do; part-based backends must cope.
        path = f"{prefix}/large-resumed"
        seed, total = 21, 18 * MiB + 7
        boundaries = [7 * MiB + 3, 9 * MiB + 1, 15 * MiB + 999]
        w = await driver.writer(path)
        for chunk in random_chunks(seed, total, high=MiB):
            pos = w.size
            cut = next((b for b in boundaries if pos < b < pos + len(chunk)), None)
            if cut is not None:
                await w.write(chunk[: cut - pos])
                await w.close()
                state = json.loads(json.dumps(w.state()))
                w = await driver.writer(path, resume=state)
                assert w.size == cut
                chunk = chunk[cut - pos :]
            await w.write(chunk)
        await w.commit()
        assert (await driver.stat(path)).size == total
        assert await sha256_of_stream(driver, path) == (
            sha256_of_window(seed, total, 0, total, high=MiB),
            total,
        )

    # -- writer ----------------------------------------------------------------------------------

    async def test_writer_commit_then_read(self, driver: StorageDriver, prefix: str) -> None:
        path = f"{prefix}/written"
        w = await driver.writer(path)
        assert w.size == 0
        for part in (b"first ", b"", b"second ", b"third"):
            await w.write(part)
        assert w.size == len(b"first second third")
        await w.commit()
        assert await driver.get_content(path) == b"first second third"
        info = await driver.stat(path)
        assert (info.size, info.is_dir) == (18, False)

    async def test_writer_commit_empty(self, driver: StorageDriver, prefix: str) -> None:
        path = f"{prefix}/empty-written"
        w = await driver.writer(path)
        await w.commit()
        assert await driver.get_content(path) == b""
        assert (await driver.stat(path)).size == 0

    async def test_writer_commit_replaces_existing(
        self, driver: StorageDriver, prefix: str
    ) -> None:
        path = f"{prefix}/replaced"
        await driver.put_content(path, b"old content that is longer")
        w = await driver.writer(path)
        await w.write(b"new")
        await w.commit()
        assert await driver.get_content(path) == b"new"

    async def test_writer_content_invisible_until_commit(
        self, driver: StorageDriver, prefix: str
    ) -> None:
        path = f"{prefix}/pending"
        w = await driver.writer(path)
        await w.write(b"x" * (2 * MiB))
        await w.close()
        await assert_missing(driver, path)
        w = await driver.writer(path, resume=w.state())
        await w.commit()
        assert (await driver.stat(path)).size == 2 * MiB

    async def test_writer_keeps_old_content_until_commit(
        self, driver: StorageDriver, prefix: str
    ) -> None:
        path = f"{prefix}/kept"
        await driver.put_content(path, b"old")
        w = await driver.writer(path)
        await w.write(b"y" * (2 * MiB))
        await w.close()
        got = await driver.get_content(path)
        assert (len(got), got[:8]) == (3, b"old"), "an uncommitted writer replaced the content"
        w = await driver.writer(path, resume=w.state())
        await w.commit()
        assert (await driver.stat(path)).size == 2 * MiB

    async def test_writer_resumes_several_times(self, driver: StorageDriver, prefix: str) -> None:
        path = f"{prefix}/resumed"
        rng = random.Random(3)
        expected = b""
        w = await driver.writer(path)
        for session in range(6):
            for _ in range(rng.randint(0, 4)):
                data = rng.randbytes(rng.randint(0, 300 * 1024))
                await w.write(data)
                expected += data
            assert w.size == len(expected)
            await w.close()
            # Upload sessions keep the state in the database, so it must survive JSON.
            state = json.loads(json.dumps(w.state()))
            w = await driver.writer(path, resume=state)
            assert w.size == len(expected), f"session {session}"
        await w.write(b"end")
        expected += b"end"
        assert w.size == len(expected)
        await w.commit()
        assert await driver.get_content(path) == expected

    async def test_writer_resume_then_commit_without_writing(
        self, driver: StorageDriver, prefix: str
    ) -> None:
        path = f"{prefix}/resumed-idle"
        w = await driver.writer(path)
        await w.write(b"all of it")
        await w.close()
        w = await driver.writer(path, resume=w.state())
        assert w.size == 9
        await w.commit()
        assert await driver.get_content(path) == b"all of it"

    async def test_writer_resume_of_empty_session(self, driver: StorageDriver, prefix: str) -> None:
        path = f"{prefix}/resumed-empty"
        w = await driver.writer(path)
        await w.close()
        w = await driver.writer(path, resume=w.state())
        assert w.size == 0
        await w.write(b"late")
        await w.commit()
        assert await driver.get_content(path) == b"late"

    async def test_writer_resume_drops_bytes_beyond_state(
        self, driver: StorageDriver, prefix: str
    ) -> None:
        # A session that crashed after writing but before its state was saved leaves bytes
        # beyond the recorded state; the next resume must drop them.
        path = f"{prefix}/junk"
        w = await driver.writer(path)
        await w.write(b"hello")
        await w.close()
        saved = w.state()
        lost = await driver.writer(path, resume=saved)
        await lost.write(b" JUNK THAT NEVER GOT RECORDED" * 1000)
        await lost.close()
        w = await driver.writer(path, resume=saved)
        assert w.size == 5
        await w.write(b" world")
        assert w.size == 11
        await w.commit()
        assert await driver.get_content(path) == b"hello world"

    async def test_writer_resume_from_state_beyond_stored_is_invalid(
        self, driver: StorageDriver, prefix: str
    ) -> None:
        path = f"{prefix}/rolled-back"
        w = await driver.writer(path)
        await w.write(b"0123456789")
        await w.close()
        early = w.state()
        w = await driver.writer(path, resume=early)
        await w.write(b"abcdefghij")
        await w.close()
        late = w.state()
        # Resuming the earlier state drops what the later session wrote...
        w = await driver.writer(path, resume=early)
        await w.close()
        # ...so the later state now claims bytes the store no longer has.
        with pytest.raises(InvalidOffset):
            await driver.writer(path, resume=late)
        w = await driver.writer(path, resume=early)
        await w.cancel()

    async def test_writer_resume_after_cancel_is_invalid(
        self, driver: StorageDriver, prefix: str
    ) -> None:
        path = f"{prefix}/cancelled"
        w = await driver.writer(path)
        await w.write(b"data")
        await w.close()
        state = w.state()
        w = await driver.writer(path, resume=state)
        await w.cancel()
        with pytest.raises(InvalidOffset):
            await driver.writer(path, resume=state)

    async def test_failed_resume_creates_nothing(self, driver: StorageDriver, prefix: str) -> None:
        path = f"{prefix}/dir/sub/cancelled"
        w = await driver.writer(path)
        await w.write(b"data")
        await w.close()
        state = w.state()
        w = await driver.writer(path, resume=state)
        await w.cancel()
        with pytest.raises(InvalidOffset):
            await driver.writer(path, resume=state)
        await assert_missing(driver, path)
        await assert_missing(driver, f"{prefix}/dir")

    async def test_writer_cancel_removes_content(self, driver: StorageDriver, prefix: str) -> None:
        path = f"{prefix}/dir/cancelled"
        w = await driver.writer(path)
        await w.write(b"z" * (2 * MiB))
        await w.cancel()
        await assert_missing(driver, path)
        await assert_missing(driver, f"{prefix}/dir")

    async def test_writer_cancel_after_resume_removes_earlier_sessions(
        self, driver: StorageDriver, prefix: str
    ) -> None:
        path = f"{prefix}/dir/cancelled-later"
        w = await driver.writer(path)
        await w.write(b"first session")
        await w.close()
        w = await driver.writer(path, resume=w.state())
        await w.write(b" second session")
        await w.close()
        w = await driver.writer(path, resume=w.state())
        await w.write(b" third, cancelled")
        await w.cancel()
        await assert_missing(driver, path)
        await assert_missing(driver, f"{prefix}/dir")

    async def test_writer_cancel_leaves_siblings(self, driver: StorageDriver, prefix: str) -> None:
        await driver.put_content(f"{prefix}/dir/sibling", b"stay")
        w = await driver.writer(f"{prefix}/dir/cancelled")
        await w.write(b"go")
        await w.cancel()
        assert await driver.list(f"{prefix}/dir") == [f"{prefix}/dir/sibling"]
        assert await driver.get_content(f"{prefix}/dir/sibling") == b"stay"

    async def test_concurrent_writers_to_different_paths(
        self, driver: StorageDriver, prefix: str
    ) -> None:
        count, total = 8, 2 * MiB + 333
        digests: dict[str, str] = {}

        async def upload(i: int) -> None:
            path = f"{prefix}/concurrent/{i}"
            h = hashlib.sha256()
            w = await driver.writer(path)
            for n, chunk in enumerate(random_chunks(100 + i, total, high=256 * 1024)):
                await w.write(chunk)
                h.update(chunk)
                await anyio.sleep(0)
                if n == 3:
                    await w.close()
                    w = await driver.writer(path, resume=w.state())
            await w.commit()
            digests[path] = h.hexdigest()

        async with anyio.create_task_group() as tg:
            for i in range(count):
                tg.start_soon(upload, i)

        assert await driver.list(f"{prefix}/concurrent") == sorted(digests)
        for path, digest in digests.items():
            assert await sha256_of_stream(driver, path) == (digest, total), path

    async def test_concurrent_writes_and_deletes_under_one_parent(
        self, driver: StorageDriver, prefix: str
    ) -> None:
        """Uploads come and go under one parent while others start: deleting the last one
        (which may remove the emptied parent) must never break a writer creating its own."""
        rounds, tasks = 6, 16

        async def upload_then_publish(i: int) -> None:
            for n in range(rounds):
                upload, blob = f"{prefix}/uploads/{i}-{n}", f"{prefix}/blobs/{i % 4}/{i}-{n}"
                w = await driver.writer(f"{upload}/data")
                await w.write(b"x" * (i + n))
                await w.commit()
                await driver.move(f"{upload}/data", f"{blob}/data")
                with contextlib.suppress(PathNotFound):  # as BlobData.publish does
                    await driver.delete(upload)
                if n % 3 == 0:
                    await driver.delete(blob)
                else:
                    await driver.put_content(f"{blob}/link", b"l")

        async with anyio.create_task_group() as tg:
            for i in range(tasks):
                tg.start_soon(upload_then_publish, i)

        for i in range(tasks):
            for n in range(rounds):
                blob = f"{prefix}/blobs/{i % 4}/{i}-{n}"
                if n % 3 == 0:
                    await assert_missing(driver, f"{blob}/data")
                else:
                    assert await driver.get_content(f"{blob}/data") == b"x" * (i + n)
        await assert_missing(driver, f"{prefix}/uploads/0-0/data")

    # -- stat ------------------------------------------------------------------------------------

    async def test_stat_file(self, driver: StorageDriver, prefix: str) -> None:
        path = f"{prefix}/dir/file"
        await driver.put_content(path, b"12345")
        info = await driver.stat(path)
        assert isinstance(info, FileInfo)
        assert (info.path, info.size, info.is_dir) == (path, 5, False)
        assert info.modified > 0

    async def test_stat_directory(self, driver: StorageDriver, prefix: str) -> None:
        await driver.put_content(f"{prefix}/a/b/c/file", b"x")
        for directory in (prefix, f"{prefix}/a", f"{prefix}/a/b", f"{prefix}/a/b/c"):
            info = await driver.stat(directory)
            assert info.is_dir, directory
            assert info.path == directory

    async def test_stat_missing(self, driver: StorageDriver, prefix: str) -> None:
        with pytest.raises(PathNotFound):
            await driver.stat(f"{prefix}/missing")
        await driver.put_content(f"{prefix}/directory/file", b"x")
        # A name that merely begins like an existing one is not there.
        for path in (f"{prefix}/dir", f"{prefix}/directory/fil", f"{prefix}/directory/file2"):
            with pytest.raises(PathNotFound):
                await driver.stat(path)

    # -- list ------------------------------------------------------------------------------------

    async def test_list_direct_children_sorted(self, driver: StorageDriver, prefix: str) -> None:
        for name in ("b", "a", "c/x", "c/y/z", "d/e/f/g", "B"):
            await driver.put_content(f"{prefix}/{name}", name.encode())
        assert await driver.list(prefix) == sorted(
            f"{prefix}/{n}" for n in ("B", "a", "b", "c", "d")
        )
        assert await driver.list(f"{prefix}/c") == [f"{prefix}/c/x", f"{prefix}/c/y"]
        assert await driver.list(f"{prefix}/c/y") == [f"{prefix}/c/y/z"]
        assert await driver.list(f"{prefix}/d") == [f"{prefix}/d/e"]

    async def test_list_includes_names_starting_with_dot(
        self, driver: StorageDriver, prefix: str
    ) -> None:
        names = [".hidden", "..x", "visible"]
        for name in names:
            await driver.put_content(f"{prefix}/dots/{name}", b"x")
        assert await driver.list(f"{prefix}/dots") == sorted(f"{prefix}/dots/{n}" for n in names)
        # The reserved staging prefix is refused, so staging files can never be listed as data.
        with pytest.raises(InvalidPath):
            await driver.put_content(f"{prefix}/dots/.tmp-upload", b"x")

    async def test_list_does_not_match_name_prefixes(
        self, driver: StorageDriver, prefix: str
    ) -> None:
        await driver.put_content(f"{prefix}/d/x", b"x")
        await driver.put_content(f"{prefix}/dx/y", b"y")
        await driver.put_content(f"{prefix}/d-other", b"z")
        assert await driver.list(f"{prefix}/d") == [f"{prefix}/d/x"]

    async def test_list_missing(self, driver: StorageDriver, prefix: str) -> None:
        with pytest.raises(PathNotFound):
            await driver.list(f"{prefix}/missing")
        with pytest.raises(PathNotFound):
            await driver.list(prefix)

    async def test_list_file_is_not_found(self, driver: StorageDriver, prefix: str) -> None:
        await driver.put_content(f"{prefix}/file", b"x")
        with pytest.raises(PathNotFound):
            await driver.list(f"{prefix}/file")

    # -- move ------------------------------------------------------------------------------------

    async def test_move(self, driver: StorageDriver, prefix: str) -> None:
        source, dest = f"{prefix}/src/file", f"{prefix}/new/nested/dest"
        data = random.Random(4).randbytes(100_000)
        await driver.put_content(source, data)
        await driver.put_content(f"{prefix}/src/sibling", b"stay")
        await driver.move(source, dest)
        assert await driver.get_content(dest) == data
        with pytest.raises(PathNotFound):
            await driver.stat(source)
        with pytest.raises(PathNotFound):
            await driver.get_content(source)
        assert await driver.list(f"{prefix}/src") == [f"{prefix}/src/sibling"]

    async def test_move_replaces_dest(self, driver: StorageDriver, prefix: str) -> None:
        source, dest = f"{prefix}/src", f"{prefix}/dest"
        await driver.put_content(dest, b"old and much longer content")
        await driver.put_content(source, b"new")
        await driver.move(source, dest)
        assert await driver.get_content(dest) == b"new"
        assert (await driver.stat(dest)).size == 3
        with pytest.raises(PathNotFound):
            await driver.stat(source)
        assert await driver.list(prefix) == [dest]

    async def test_move_committed_writer_content(self, driver: StorageDriver, prefix: str) -> None:
        # The upload path: write, commit under an upload path, move into place.
        upload, blob = f"{prefix}/uploads/u1/data", f"{prefix}/blobs/ab/data"
        w = await driver.writer(upload)
        await w.write(b"layer bytes")
        await w.close()
        w = await driver.writer(upload, resume=w.state())
        await w.commit()
        await driver.move(upload, blob)
        assert await driver.get_content(blob) == b"layer bytes"
        await assert_missing(driver, upload)

    async def test_move_missing_source(self, driver: StorageDriver, prefix: str) -> None:
        dest = f"{prefix}/dest"
        with pytest.raises(PathNotFound):
            await driver.move(f"{prefix}/missing", f"{prefix}/elsewhere")
        await driver.put_content(dest, b"untouched")
        with pytest.raises(PathNotFound):
            await driver.move(f"{prefix}/missing", dest)
        assert await driver.get_content(dest) == b"untouched"
        assert await driver.list(prefix) == [dest]

    async def test_move_leaves_no_empty_directory(self, driver: StorageDriver, prefix: str) -> None:
        await driver.put_content(f"{prefix}/from/deep/file", b"x")
        await driver.move(f"{prefix}/from/deep/file", f"{prefix}/to/file")
        assert await driver.list(prefix) == [f"{prefix}/to"]
        await assert_missing(driver, f"{prefix}/from")

    # -- delete ----------------------------------------------------------------------------------

    async def test_delete_file(self, driver: StorageDriver, prefix: str) -> None:
        await driver.put_content(f"{prefix}/dir/gone", b"x")
        await driver.put_content(f"{prefix}/dir/kept", b"y")
        await driver.delete(f"{prefix}/dir/gone")
        await assert_missing(driver, f"{prefix}/dir/gone")
        assert await driver.list(f"{prefix}/dir") == [f"{prefix}/dir/kept"]
        assert await driver.get_content(f"{prefix}/dir/kept") == b"y"

    async def test_delete_last_file_removes_empty_directories(
        self, driver: StorageDriver, prefix: str
    ) -> None:
        await driver.put_content(f"{prefix}/keep", b"x")
        await driver.put_content(f"{prefix}/a/b/c/file", b"x")
        await driver.delete(f"{prefix}/a/b/c/file")
        await assert_missing(driver, f"{prefix}/a")
        assert await driver.list(prefix) == [f"{prefix}/keep"]

    async def test_delete_directory_recursively(self, driver: StorageDriver, prefix: str) -> None:
        files = ["d/a", "d/sub/b", "d/sub/deeper/c", "d/sub/deeper/d", "d/e/f/g/h"]
        for name in files:
            await driver.put_content(f"{prefix}/{name}", b"x")
        await driver.put_content(f"{prefix}/other", b"stay")
        await driver.delete(f"{prefix}/d")
        for name in [*files, "d", "d/sub", "d/sub/deeper", "d/e"]:
            await assert_missing(driver, f"{prefix}/{name}")
        assert await driver.list(prefix) == [f"{prefix}/other"]

    async def test_delete_only_deletes_subpaths(self, driver: StorageDriver, prefix: str) -> None:
        await driver.put_content(f"{prefix}/dir/file", b"1")
        await driver.put_content(f"{prefix}/dirx/file", b"2")
        await driver.put_content(f"{prefix}/dir-file", b"3")
        await driver.delete(f"{prefix}/dir")
        assert await driver.get_content(f"{prefix}/dirx/file") == b"2"
        assert await driver.get_content(f"{prefix}/dir-file") == b"3"
        with pytest.raises(PathNotFound):
            await driver.delete(f"{prefix}/dirx/fil")
        assert await driver.get_content(f"{prefix}/dirx/file") == b"2"

    async def test_delete_missing(self, driver: StorageDriver, prefix: str) -> None:
        with pytest.raises(PathNotFound):
            await driver.delete(f"{prefix}/missing")
        with pytest.raises(PathNotFound):
            await driver.delete(prefix)
        await driver.put_content(f"{prefix}/file", b"x")
        await driver.delete(f"{prefix}/file")
        with pytest.raises(PathNotFound):
            await driver.delete(f"{prefix}/file")

    # -- redirect_url ----------------------------------------------------------------------------

    async def test_redirect_url(self, driver: StorageDriver, prefix: str) -> None:
        path = f"{prefix}/redirected"
        await driver.put_content(path, b"fetch me")
        for method in ("GET", "HEAD"):
            url = await driver.redirect_url(path, method)
            assert url is None or (isinstance(url, str) and url), repr(url)
        url = await driver.redirect_url(path)
        if url is not None:
            import httpx

            async with httpx.AsyncClient() as client:
                response = await client.get(url)
            assert response.status_code == 200
            assert response.content == b"fetch me"


async def _aclose_if_stream(result: Any) -> None:
    if hasattr(result, "__aiter__"):
        await _aclose(result)
    elif result is not None and hasattr(result, "cancel"):
        await result.cancel()


async def _outcome(call: Awaitable[Any]) -> str:
    """What a call did, as a comparable word: the error's class name, or "returned"."""
    try:
        result = await call
    except Exception as exc:
        return type(exc).__name__
    await _aclose_if_stream(result)
    return "returned"

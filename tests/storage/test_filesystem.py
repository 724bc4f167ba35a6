"""The filesystem driver: the shared contract, plus what only a directory tree can show."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from registry.storage import filesystem
from registry.storage.driver import InvalidOffset, InvalidPath
from registry.storage.filesystem import FilesystemDriver
from tests.storage.contract import INVALID_PATHS, ODD_VALID_NAMES, DriverContract


@pytest.fixture
def driver(tmp_path: Path) -> FilesystemDriver:
    return FilesystemDriver(tmp_path / "root")


@pytest.fixture
def leftover_check(driver: FilesystemDriver) -> Callable[[str], None]:
    def check(prefix: str) -> None:
        # list() hides '.tmp-' files, so look at the disk itself: every contract test works
        # under its prefix, so once that is deleted the root must be empty.
        assert not driver.full_path(prefix).exists()
        assert sorted(driver.root.rglob("*")) == []

    return check


class TestFilesystemDriver(DriverContract):
    pass


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


def test_root_is_created_and_resolved(tmp_path: Path) -> None:
    d = FilesystemDriver(tmp_path / "a" / ".." / "root" / "nested")
    assert d.root == (tmp_path / "root" / "nested").resolve()
    assert d.root.is_dir()


@pytest.mark.parametrize(
    "path",
    [
        "/x",
        "/a/b/c",
        *(f"/{name}" for name in ODD_VALID_NAMES),
        *(f"/a/{name}/b" for name in ODD_VALID_NAMES),
        "/" + "/".join(["..."] * 20),
        "/-/_/dot/x",
    ],
)
def test_full_path_stays_under_root(driver: FilesystemDriver, path: str) -> None:
    full = driver.full_path(path)
    normalized = Path(os.path.normpath(full))
    # Nothing for the OS to collapse, and the result is strictly inside the root.
    assert normalized == full
    assert driver.root in full.parents
    assert full.relative_to(driver.root).as_posix() == path.lstrip("/")


@pytest.mark.parametrize("template", INVALID_PATHS, ids=repr)
def test_full_path_rejects_invalid(driver: FilesystemDriver, template: str) -> None:
    with pytest.raises(InvalidPath):
        driver.full_path(template.format(p="/prefix"))


@pytest.mark.anyio
async def test_put_content_leaves_no_temp_files(driver: FilesystemDriver) -> None:
    for i in range(5):
        await driver.put_content("/dir/file", b"v%d" % i)
    assert await driver.get_content("/dir/file") == b"v4"
    assert temp_files(driver.root) == []
    assert sorted(p.name for p in (driver.root / "dir").iterdir()) == ["file"]


@pytest.mark.anyio
async def test_failed_put_content_keeps_old_content(
    driver: FilesystemDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    await driver.put_content("/dir/file", b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(filesystem.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk on fire"):
        await driver.put_content("/dir/file", b"new content")
    monkeypatch.undo()
    assert await driver.get_content("/dir/file") == b"old"
    assert temp_files(driver.root) == []


@pytest.mark.anyio
async def test_resume_truncates_junk_on_disk(driver: FilesystemDriver) -> None:
    w = await driver.writer("/uploads/u1")
    await w.write(b"hello")
    await w.close()
    state = w.state()
    full = driver.full_path("/uploads/u1")
    staging = _staging(full)
    with open(staging, "ab") as f:
        f.write(b"half-written chunk from a crashed request")

    w = await driver.writer("/uploads/u1", resume=state)
    assert w.size == 5
    assert staging.stat().st_size == 5
    await w.write(b" world")
    await w.commit()
    assert full.read_bytes() == b"hello world"


@pytest.mark.anyio
async def test_resume_of_truncated_file_is_invalid(driver: FilesystemDriver) -> None:
    w = await driver.writer("/uploads/u2")
    await w.write(b"0123456789")
    await w.close()
    state = w.state()
    staging = _staging(driver.full_path("/uploads/u2"))
    os.truncate(staging, 4)
    with pytest.raises(InvalidOffset):
        await driver.writer("/uploads/u2", resume=state)
    assert staging.read_bytes() == b"0123"


def _staging(full: Path) -> Path:
    """Where the filesystem driver stages a writer's data until commit."""
    return full.with_name(f".tmp-{full.name}.writing")


@pytest.mark.anyio
async def test_writer_survives_a_concurrent_prune_of_its_parents(
    driver: FilesystemDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another request's delete prunes emptied parents; if that lands between mkdir making a
    parent and making the child in it (twice, past pathlib's own single retry), the writer
    must still find its directory made, not fail with FileNotFoundError."""
    await driver.put_content("/uploads/other/data", b"x")
    target = driver.full_path("/uploads/mine")
    real_mkdir = os.mkdir
    prunes = 0

    def racing_mkdir(path: object, *args: object, **kwargs: object) -> None:
        nonlocal prunes
        if Path(str(path)) == target and prunes < 3:
            prunes += 1
            # What _prune_empty_parents of another upload does at that very moment.
            for leftover in sorted(target.parent.rglob("*"), reverse=True):
                leftover.rmdir() if leftover.is_dir() else leftover.unlink()
            target.parent.rmdir()
        real_mkdir(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "mkdir", racing_mkdir)
    w = await driver.writer("/uploads/mine/data")
    await w.write(b"payload")
    await w.commit()
    assert prunes == 3
    assert await driver.get_content("/uploads/mine/data") == b"payload"


# --- upload data: chunks hashed and written while the next ones arrive


@pytest.mark.anyio
async def test_an_upload_broken_off_mid_stream_resumes_at_its_recorded_size(
    driver: FilesystemDriver,
) -> None:
    import hashlib

    from registry.oci.digest import Digest
    from registry.storage.uploads import UploadData

    mib = 1024 * 1024
    first, lost, rest = os.urandom(mib + 5), os.urandom(3 * mib + 7), os.urandom(2 * mib + 3)

    async def stream(data: bytes, *, fail: bool = False) -> Any:
        for start in range(0, len(data), 100_000):
            yield data[start : start + 100_000]
        if fail:
            raise ConnectionResetError("client gone")

    uploads, upload_id = UploadData(driver), str(uuid.uuid4())
    size, state = await uploads.append(upload_id, 0, None, stream(first))
    assert size == len(first)
    # Several batches are in flight when the client hangs up: the error reaches the caller
    # only once they are written, and nothing of them counts.
    with pytest.raises(ConnectionResetError):
        await uploads.append(upload_id, size, state, stream(lost, fail=True))
    uploads.forget(upload_id)
    size, state = await uploads.append(upload_id, size, state, stream(rest), final=True)
    assert size == len(first) + len(rest)
    expected = Digest("sha256", hashlib.sha256(first + rest).hexdigest())
    assert await UploadData(driver).digest(upload_id, size, "sha256") == expected


def test_writeback_hint_exists_on_linux() -> None:
    """Python's os module has no sync_file_range: a check for it there once left the writeback
    hint uncalled, silently. It comes from libc."""
    if os.uname().sysname != "Linux":
        pytest.skip("sync_file_range is Linux only")
    assert filesystem._start_writeback is not None


@pytest.mark.anyio
async def test_written_data_is_handed_to_the_disk_in_steps(
    driver: FilesystemDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each WRITE_BACK_STEP written starts its writeback at once, so the commit's fsync waits
    for the tail only; a resumed writer starts from where it resumed."""
    real = filesystem._start_writeback
    assert real is not None
    calls: list[tuple[int, int]] = []

    def record(fd: int, offset: int, length: int) -> None:
        calls.append((offset, length))
        real(fd, offset, length)

    monkeypatch.setattr(filesystem, "_start_writeback", record)
    step, block = filesystem.WRITE_BACK_STEP, os.urandom(filesystem.WRITE_BLOCK)
    blocks = 2 * step // len(block) + 3
    writer = await driver.writer("/wb/data")
    for _ in range(blocks):
        await writer.write(block)
    await writer.close()
    assert calls == [(0, step), (step, step)]

    calls.clear()
    resumed = await driver.writer("/wb/data", resume=writer.state())
    for _ in range(step // len(block)):
        await resumed.write(block)
    await resumed.commit()
    assert calls == [(writer.size, step)]
    assert await driver.get_content("/wb/data") == block * (blocks + step // len(block))

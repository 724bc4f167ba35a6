"""The filesystem storage driver: the contract over a directory tree.

Blocking file work runs in worker threads so the event loop keeps serving; writes are buffered
into large blocks so that a stream of small request chunks costs few thread hops and syscalls.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO

from anyio import to_thread

from registry.storage.driver import (
    RESERVED_PREFIX,
    FileInfo,
    FileWriter,
    InvalidOffset,
    PathNotFound,
    StorageDriver,
    StorageError,
    check_path,
)

# Blob reads: 2 MiB pulled a 1 GiB blob 15 % faster than 1 MiB here (fewer thread hops and
# writes); a stream holds one block at a time.
READ_BLOCK = 2 * 1024 * 1024
WRITE_BLOCK = 1024 * 1024
# Written data is handed to the disk (sync_file_range) in steps this large.
WRITE_BACK_STEP = 8 * 1024 * 1024


def _writeback_starter() -> Callable[[int, int, int], None] | None:
    """sync_file_range(2) with SYNC_FILE_RANGE_WRITE, through libc: Python's os module does
    not offer it. Linux only; elsewhere the commit's fsync does all the work."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    sync_file_range_write = 2

    def start(fd: int, offset: int, length: int) -> None:
        # A hint: if the filesystem refuses it, fsync at commit still writes everything.
        call(fd, offset, length, sync_file_range_write)

    return start


_start_writeback = _writeback_starter()


class FilesystemDriver(StorageDriver):
    name = "filesystem"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def full_path(self, path: str) -> Path:
        # check_path forbids '..' and odd characters, so the result always stays under root.
        return self.root / check_path(path).lstrip("/")

    async def get_content(self, path: str) -> bytes:
        full = self.full_path(path)

        def read() -> bytes:
            try:
                return full.read_bytes()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
                raise PathNotFound("no such file", path) from exc

        return await to_thread.run_sync(read)

    async def put_content(self, path: str, data: bytes) -> None:
        full = self.full_path(path)
        await to_thread.run_sync(_atomic_write, full, data)

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        full = self.full_path(path)

        def open_at() -> BinaryIO:
            try:
                f = open(full, "rb")  # noqa: SIM115 - closed by the generator below
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
                raise PathNotFound("no such file", path) from exc
            size = os.fstat(f.fileno()).st_size
            if offset < 0 or offset > size:
                f.close()
                raise InvalidOffset(f"offset {offset} beyond size {size}", path)
            f.seek(offset)
            return f

        f = await to_thread.run_sync(open_at)
        return _read_stream(f, length)

    async def writer(self, path: str, resume: dict[str, Any] | None = None) -> FileWriter:
        full = self.full_path(path)
        # Writes go to a staging file beside the target, renamed into place on commit, so the
        # path shows either its old content or the complete new content, never a part.
        staging = full.with_name(f"{RESERVED_PREFIX}{full.name}.writing")

        def open_for_write() -> BinaryIO:
            if resume is None:
                _make_dirs(staging.parent)
                return open(staging, "wb")  # noqa: SIM115 - owned by the writer
            expected = int(resume.get("size", 0))
            try:
                f = open(staging, "r+b")  # noqa: SIM115 - owned by the writer
            except (FileNotFoundError, NotADirectoryError) as exc:
                raise InvalidOffset("no writer to resume", path) from exc
            actual = os.fstat(f.fileno()).st_size
            if actual < expected:
                f.close()
                raise InvalidOffset(f"resumed file has {actual} bytes, not {expected}", path)
            # Bytes past the recorded size are the remains of a chunk that never completed.
            f.truncate(expected)
            f.seek(expected)
            return f

        f = await to_thread.run_sync(open_for_write)
        return _FileWriter(self, path, full, staging, f, f.tell())

    async def stat(self, path: str) -> FileInfo:
        full = self.full_path(path)

        def do_stat() -> FileInfo:
            try:
                st = full.stat()
            except (FileNotFoundError, NotADirectoryError) as exc:
                raise PathNotFound("no such file", path) from exc
            is_dir = full.is_dir()
            return FileInfo(path, 0 if is_dir else st.st_size, st.st_mtime, is_dir)

        return await to_thread.run_sync(do_stat)

    async def list(self, path: str) -> list[str]:
        full = self.full_path(path)

        def do_list() -> list[str]:
            try:
                names = os.listdir(full)
            except (FileNotFoundError, NotADirectoryError) as exc:
                raise PathNotFound("no such directory", path) from exc
            return sorted(
                f"{path.rstrip('/')}/{n}" for n in names if not n.startswith(RESERVED_PREFIX)
            )

        return await to_thread.run_sync(do_list)

    async def move(self, source: str, dest: str) -> None:
        src, dst = self.full_path(source), self.full_path(dest)

        def do_move() -> None:
            if not src.is_file():
                raise PathNotFound("no such file", source)
            _make_dirs(dst.parent)
            os.replace(src, dst)
            _fsync_dir(dst.parent)
            _prune_empty_parents(src.parent, self.root)

        await to_thread.run_sync(do_move)

    async def delete(self, path: str) -> None:
        full = self.full_path(path)

        def do_delete() -> None:
            try:
                if full.is_dir() and not full.is_symlink():
                    shutil.rmtree(full)
                else:
                    full.unlink()
            except (FileNotFoundError, NotADirectoryError) as exc:
                raise PathNotFound("no such file", path) from exc
            _prune_empty_parents(full.parent, self.root)

        await to_thread.run_sync(do_delete)


class _FileWriter(FileWriter):
    def __init__(
        self,
        driver: FilesystemDriver,
        path: str,
        full: Path,
        staging: Path,
        f: BinaryIO,
        size: int,
    ) -> None:
        self._driver, self._path, self._full, self._staging, self._f = (
            driver,
            path,
            full,
            staging,
            f,
        )
        self._size = size
        # Chunks as received, written together once a block's worth is pending: one thread
        # hop per block and no copy into an intermediate buffer.
        self._pending: list[bytes] = []
        self._pending_size = 0
        # Where the data not yet handed to the disk begins (_write_out).
        self._written_back = size
        self._done = False

    @property
    def size(self) -> int:
        return self._size

    def state(self) -> dict[str, Any]:
        return {"size": self._size}

    async def write(self, data: bytes) -> None:
        if self._done:
            raise StorageError("writer already closed", self._path)
        self._pending.append(data)
        self._pending_size += len(data)
        self._size += len(data)
        if self._pending_size >= WRITE_BLOCK:
            await self._flush(write_back=True)

    async def _flush(self, *, write_back: bool = False) -> None:
        if self._pending:
            chunks, self._pending, self._pending_size = self._pending, [], 0
            start = None
            if write_back and self._size - self._written_back >= WRITE_BACK_STEP:
                start, self._written_back = self._written_back, self._size
            await to_thread.run_sync(_write_out, self._f, chunks, start)

    async def close(self) -> None:
        if self._done:
            return
        await self._flush()
        self._done = True
        await to_thread.run_sync(self._f.close)

    async def commit(self) -> None:
        if self._done:
            raise StorageError("writer already closed", self._path)
        await self._flush()
        self._done = True

        def finish() -> None:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            os.replace(self._staging, self._full)
            _fsync_dir(self._full.parent)

        await to_thread.run_sync(finish)

    async def cancel(self) -> None:
        """Discard the staged data; content committed earlier at the path stays."""
        self._pending.clear()

        def discard() -> None:
            if not self._f.closed:
                self._f.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._staging)
            _prune_empty_parents(self._staging.parent, self._driver.root)

        self._done = True
        await to_thread.run_sync(discard)


async def _read_stream(f: BinaryIO, length: int | None) -> AsyncIterator[bytes]:
    remaining = length
    try:
        while remaining is None or remaining > 0:
            size = READ_BLOCK if remaining is None else min(READ_BLOCK, remaining)
            chunk = await to_thread.run_sync(f.read, size)
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
    finally:
        f.close()


def _write_out(f: BinaryIO, chunks: list[bytes], write_back_from: int | None) -> None:
    f.writelines(chunks)
    if write_back_from is not None and _start_writeback is not None:
        # Start writing what was written since ``write_back_from`` to the disk now, without
        # waiting for it: the commit's fsync then waits for the last steps only. With plenty
        # of memory the kernel otherwise starts only at the fsync, after the last byte
        # arrived, so receiving and the disk's writing took turns.
        f.flush()
        _start_writeback(f.fileno(), write_back_from, f.tell() - write_back_from)


def _atomic_write(full: Path, data: bytes) -> None:
    _make_dirs(full.parent)
    fd, tmp = tempfile.mkstemp(prefix=RESERVED_PREFIX, dir=full.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, full)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(full.parent)


def _make_dirs(directory: Path) -> None:
    """mkdir -p that survives concurrent pruning.

    Another request's _prune_empty_parents may remove a parent (``uploads/``, a blob's fan-out
    directory) between mkdir creating it and creating the child in it: 16 concurrent small
    pushes hit that window. Once the whole path stands, its parents are no longer empty and
    no other prune removes them, so retrying until it stands is enough.
    """
    for _ in range(100):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            return
        except FileNotFoundError:
            continue
    directory.mkdir(parents=True, exist_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prune_empty_parents(directory: Path, root: Path) -> None:
    while directory != root and root in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent

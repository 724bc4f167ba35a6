"""Upload data in storage: appending chunks, resuming in any process, verifying the digest.

Where an upload stands (its size and the writer's resumable state) is kept by the caller in
the database; this module only moves bytes. The running sha256 of each upload is cached in
process memory as a shortcut: when the next chunk arrives at another process (or after a
restart) the digest is recomputed from storage instead, so the cache is never the only copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from anyio import to_thread

from registry.oci.digest import Digest
from registry.storage import layout
from registry.storage.driver import FileWriter, PathNotFound, StorageDriver

_CACHED_HASHERS = 256
# Request chunks are gathered into batches this large before hashing and writing.
_BATCH = 1024 * 1024


class UploadData:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
        self._hashers: OrderedDict[str, tuple[int, Any]] = OrderedDict()

    async def append(
        self,
        upload_id: str,
        size: int,
        state: dict[str, Any] | None,
        chunks: AsyncIterator[bytes],
        *,
        final: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """Append ``chunks`` after the ``size`` bytes already stored; return the new size and
        writer state. With ``final`` the data is committed and no more may be appended.

        If this raises (a client gone mid-chunk), whatever part of the chunk reached storage
        lies past the recorded size, and the next resume discards it.
        """
        path = layout.upload_data(upload_id)
        writer = await self.driver.writer(path, resume=state if (size or state) else None)
        hasher = self._take_hasher(upload_id, size)
        batch: list[bytes] = []
        batch_size = 0
        # The batch being hashed and written while the next one is received: without this
        # overlap, reading the socket stopped (uvicorn pauses it past 64 KiB) for every batch.
        in_flight: asyncio.Task[None] | None = None

        async def settle() -> None:
            nonlocal in_flight
            if in_flight is not None:
                # Shielded: if this request is cancelled, the batch still completes, and the
                # except clause below waits for it before closing the writer.
                await asyncio.shield(in_flight)
                in_flight = None

        async def hand_over() -> None:
            nonlocal batch, batch_size, in_flight
            await settle()  # batches are hashed and written in order
            if batch:
                in_flight = asyncio.ensure_future(_store(hasher, writer, batch))
            batch, batch_size = [], 0

        try:
            async for chunk in chunks:
                if chunk:
                    batch.append(chunk)
                    batch_size += len(chunk)
                    if batch_size >= _BATCH:
                        await hand_over()
            await hand_over()
            await settle()
            if final:
                await writer.commit()
            else:
                await writer.close()
        except BaseException:
            if in_flight is not None:
                # Never close the writer under a write still in progress.
                with contextlib.suppress(BaseException):
                    await asyncio.shield(in_flight)
            with contextlib.suppress(Exception):
                await writer.close()
            raise
        if hasher is not None:
            self._remember(upload_id, writer.size, hasher)
        return writer.size, writer.state()

    async def digest(self, upload_id: str, size: int, algorithm: str) -> Digest:
        """The digest of the upload's ``size`` stored bytes."""
        cached = self._hashers.pop(upload_id, None)
        if cached is not None and cached[0] == size and algorithm == "sha256":
            return Digest("sha256", cached[1].hexdigest())
        hasher = hashlib.new(algorithm)
        stream = await self.driver.reader(layout.upload_data(upload_id), 0, size)
        async for chunk in stream:
            await to_thread.run_sync(hasher.update, chunk)
        return Digest(algorithm, hasher.hexdigest())

    def forget(self, upload_id: str) -> None:
        """Drop the cached hash: it may include bytes that were never recorded."""
        self._hashers.pop(upload_id, None)

    async def discard(self, upload_id: str) -> None:
        self._hashers.pop(upload_id, None)
        with contextlib.suppress(PathNotFound):
            await self.driver.delete(layout.upload_dir(upload_id))

    def _take_hasher(self, upload_id: str, size: int) -> Any:
        cached = self._hashers.pop(upload_id, None)
        if cached is not None and cached[0] == size:
            return cached[1]
        return hashlib.sha256() if size == 0 else None

    def _remember(self, upload_id: str, size: int, hasher: Any) -> None:
        self._hashers[upload_id] = (size, hasher)
        while len(self._hashers) > _CACHED_HASHERS:
            self._hashers.popitem(last=False)


async def _store(hasher: Any, writer: FileWriter, chunks: list[bytes]) -> None:
    """Hash and write one batch at the same time: hashlib and file writes both release the GIL."""

    async def write_all() -> None:
        for chunk in chunks:
            await writer.write(chunk)

    jobs = [write_all()]
    if hasher is not None:
        jobs.append(to_thread.run_sync(_update_all, hasher, chunks))
    # Both run to their end before any error is raised: the caller may then close the writer.
    for outcome in await asyncio.gather(*jobs, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome


def _update_all(hasher: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        hasher.update(chunk)

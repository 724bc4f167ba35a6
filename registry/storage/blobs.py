"""Blob content in storage: read by digest, published from finished uploads, deleted by GC."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from registry.oci.digest import Digest
from registry.storage import layout
from registry.storage.driver import PathNotFound, StorageDriver


class BlobContent:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    async def open(
        self, digest: Digest, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        return await self.driver.reader(layout.blob_data(digest), offset, length)

    async def exists(self, digest: Digest) -> bool:
        try:
            await self.driver.stat(layout.blob_data(digest))
        except PathNotFound:
            return False
        return True

    async def redirect_url(self, digest: Digest, method: str = "GET") -> str | None:
        return await self.driver.redirect_url(layout.blob_data(digest), method)

    async def publish(self, upload_id: str, digest: Digest) -> None:
        """Move a verified upload to its content address, atomically.

        When the content is already stored (another upload of the same blob won), the move
        simply replaces it with identical bytes: readers see either copy, never a partial one.
        """
        await self.driver.move(layout.upload_data(upload_id), layout.blob_data(digest))
        with contextlib.suppress(PathNotFound):
            await self.driver.delete(layout.upload_dir(upload_id))

    async def delete(self, digest: Digest) -> None:
        with contextlib.suppress(PathNotFound):
            await self.driver.delete(layout.blob_dir(digest))

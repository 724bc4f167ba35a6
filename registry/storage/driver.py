"""The storage-driver contract every backend implements, and its typed errors.

Modelled on CNCF Distribution's driver: a small key/value filesystem of "/"-separated paths.
Everything above this module (layout, blob store, uploads) speaks only this contract, and
tests/storage/contract.py proves every driver honours it the same way.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any


class StorageError(Exception):
    """A storage failure that is not one of the specific cases below."""

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = path
        super().__init__(message if path is None else f"{message}: {path}")


class PathNotFound(StorageError):
    """Nothing stored at this path: a definite absence, never a failed lookup."""


class InvalidPath(StorageError):
    """A path that does not follow the contract's grammar (and so could escape the root)."""


class InvalidOffset(StorageError):
    """A read or resume at an offset the stored content does not have."""


class StorageUnavailable(StorageError):
    """The backend could not be reached or kept failing after retries; nothing was changed."""


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    size: int
    modified: float
    is_dir: bool


_PATH_RE = re.compile(r"(/[A-Za-z0-9._-]+)+")
# S3 keys stop at 1024 bytes and most filesystems' names at 255: every driver takes the same paths.
MAX_PATH = 1024
MAX_COMPONENT = 255
# Names a driver may use for its own staging files; never part of a stored path.
RESERVED_PREFIX = ".tmp-"


def check_path(path: str) -> str:
    """Paths are absolute, '/'-separated, of safe characters, with no '.' or '..' components."""
    if len(path) > MAX_PATH or not _PATH_RE.fullmatch(path):
        raise InvalidPath("invalid storage path", path[:MAX_PATH])
    for part in path.split("/")[1:]:
        if part in (".", "..") or len(part) > MAX_COMPONENT or part.startswith(RESERVED_PREFIX):
            raise InvalidPath("invalid storage path", path)
    return path


class FileWriter(ABC):
    """Appends to one stored file. Data is visible at its path only after :meth:`commit`;
    until then the path keeps its previous content (or stays absent).

    ``state()`` is what another process needs to resume this writer (see ``StorageDriver.writer``):
    upload sessions keep it in the database, so any replica can continue an upload.
    """

    @property
    @abstractmethod
    def size(self) -> int:
        """Bytes written so far, counting those written before a resume."""

    @abstractmethod
    async def write(self, data: bytes) -> None: ...

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Serializable state from which ``writer(path, resume=...)`` continues."""

    @abstractmethod
    async def close(self) -> None:
        """Make what was written durable and resumable; the writer may not be used again."""

    @abstractmethod
    async def commit(self) -> None:
        """Finish: the content becomes readable at the writer's path."""

    @abstractmethod
    async def cancel(self) -> None:
        """Discard everything written, including what earlier sessions wrote."""


class StorageDriver(ABC):
    name: str = "driver"

    @abstractmethod
    async def get_content(self, path: str) -> bytes:
        """The whole content of a small file. Raises PathNotFound."""

    @abstractmethod
    async def put_content(self, path: str, data: bytes) -> None:
        """Store a small file, replacing any previous content atomically."""

    @abstractmethod
    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Open a stream of ``length`` bytes (to the end if None) from ``offset``.

        Raises PathNotFound, or InvalidOffset when offset is past the end, before the first chunk.
        """

    @abstractmethod
    async def writer(self, path: str, resume: dict[str, Any] | None = None) -> FileWriter:
        """A writer for ``path``: new and empty when ``resume`` is None, else continuing the
        writer whose ``state()`` was ``resume`` (raising InvalidOffset if that state no longer
        matches what is stored)."""

    @abstractmethod
    async def stat(self, path: str) -> FileInfo:
        """Size and modification time of a file, or a directory (prefix). Raises PathNotFound."""

    @abstractmethod
    async def list(self, path: str) -> list[str]:
        """Full paths of the direct children of a directory, sorted. Raises PathNotFound."""

    @abstractmethod
    async def move(self, source: str, dest: str) -> None:
        """Move a file, replacing ``dest`` atomically. Raises PathNotFound for a missing source."""

    @abstractmethod
    async def delete(self, path: str) -> None:
        """Delete a file or everything under a directory. Raises PathNotFound."""

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        """A URL a client may fetch the content from directly, or None to stream it ourselves."""
        check_path(path)
        return None

    async def close(self) -> None:
        """Release connections and threads; called when the app stops."""
        return None

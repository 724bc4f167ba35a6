"""GET, HEAD and DELETE of blobs, with Range support."""

from __future__ import annotations

import logging
import re

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from registry import errors
from registry.api.base import authorized_repository, empty, path_digest, services
from registry.db.blobs import BlobRecord, BlobStore
from registry.db.repositories import RepositoryStore
from registry.oci.digest import Digest
from registry.storage.driver import PathNotFound

log = logging.getLogger(__name__)

_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")


async def _linked_blob(request: Request, name: str, digest: Digest) -> BlobRecord:
    async with services(request).db.read() as session:
        blob = await BlobStore(session).linked_by_name(name, str(digest))
    if blob is None:
        raise errors.BLOB_UNKNOWN({"digest": str(digest)})
    return blob


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One byte range (start, end inclusive) from a Range header; None means the whole blob.

    Raises RANGE_INVALID (416) for a range the blob cannot satisfy.
    """
    m = _RANGE_RE.fullmatch(header.strip())
    if m is None:
        # Multiple or malformed ranges: RFC 9110 lets a server ignore Range it does not support.
        return None
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":
        length = int(last)
        if length == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(size - length, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        raise _unsatisfiable(size)
    return start, min(end, size - 1)


def _unsatisfiable(size: int) -> errors.RegistryError:
    return errors.RANGE_NOT_SATISFIABLE(
        {"size": size},
        message="requested range not satisfiable",
        headers={"Content-Range": f"bytes */{size}"},
    )


def _headers(blob: BlobRecord) -> dict[str, str]:
    return {
        "Docker-Content-Digest": blob.digest,
        "ETag": f'"{blob.digest}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": "max-age=31536000",
    }


async def head_blob(request: Request) -> Response:
    name = await authorized_repository(request)
    digest = path_digest(request)
    blob = await _linked_blob(request, name, digest)
    headers = _headers(blob)
    headers["Content-Length"] = str(blob.size)
    return Response(b"", 200, headers, media_type="application/octet-stream")


async def get_blob(request: Request) -> Response:
    name = await authorized_repository(request)
    digest = path_digest(request)
    blob = await _linked_blob(request, name, digest)
    svc = services(request)
    url = await svc.blobs.redirect_url(digest, "GET")
    if url is not None:
        return RedirectResponse(url, 307, headers={"Docker-Content-Digest": blob.digest})

    headers = _headers(blob)
    status = 200
    start, length = 0, blob.size
    range_header = request.headers.get("range")
    if range_header:
        byte_range = parse_range(range_header, blob.size)
        if byte_range is not None:
            start, end = byte_range
            length = end - start + 1
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
    try:
        stream = await svc.blobs.open(digest, start, length)
    except PathNotFound:
        log.error("blob %s is in the database but missing from storage", digest)
        raise errors.BLOB_UNKNOWN({"digest": str(digest)}) from None
    headers["Content-Length"] = str(length)
    return StreamingResponse(stream, status, headers, media_type="application/octet-stream")


async def delete_blob(request: Request) -> Response:
    """Unlink the blob from this repository; its content stays while others use it (GC frees it)."""
    name = await authorized_repository(request)
    digest = path_digest(request)
    async with services(request).db.write() as session:
        repo_id = await RepositoryStore(session).get_id(name)
        removed = bool(repo_id) and await BlobStore(session).unlink(repo_id, str(digest))
    if not removed:
        raise errors.BLOB_UNKNOWN({"digest": str(digest)})
    return empty(202, {"Docker-Content-Digest": str(digest)})

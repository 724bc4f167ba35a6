"""Blob uploads: monolithic, chunked (PATCH), resumable from any process, cross-repository mounts.

The upload's progress lives in the database (db.uploads) and its bytes in storage
(storage.uploads), so a PATCH after a restart, or on another replica, continues the same upload.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from registry import errors
from registry.api.base import authorized_repository, empty, services
from registry.auth.access import Action
from registry.context import Services
from registry.db.blobs import BlobStore
from registry.db.models import utcnow
from registry.db.repositories import RepositoryStore
from registry.db.uploads import UploadRecord, UploadStore
from registry.oci.digest import Digest
from registry.oci.names import NAME_RE, tenant_of
from registry.storage import layout
from registry.storage.driver import InvalidOffset

# Long enough for a slow client's biggest chunk; a claim left by a crashed process lapses.
_CLAIM_LEASE = timedelta(hours=1)
_CONTENT_RANGE_RE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/\d+|/\*)?")


def _upload_location(name: str, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{upload_id}"


def _progress_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
    # As Distribution: the inclusive end of what was received, "0-0" when nothing was.
    return {
        "Location": _upload_location(name, upload_id),
        "Docker-Upload-UUID": upload_id,
        "Range": f"0-{max(size - 1, 0)}",
    }


async def _load(svc: Services, name: str, upload_id: str) -> UploadRecord:
    if not layout.is_upload_id(upload_id):
        raise errors.BLOB_UPLOAD_UNKNOWN({"uuid": upload_id[:64]})
    async with svc.db.read() as session:
        repo_id = await RepositoryStore(session).get_id(name)
        record = await UploadStore(session).get(upload_id, repo_id) if repo_id else None
    if record is None:
        raise errors.BLOB_UPLOAD_UNKNOWN({"uuid": upload_id})
    return record


def _content_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise errors.SIZE_INVALID({"Content-Length": raw[:50]}, message="invalid Content-Length")
    return value


def _chunk_range(request: Request, current: int) -> tuple[int, int] | None:
    """The chunk's declared (start, end); it must start where the upload stands, or 416."""
    header = request.headers.get("content-range")
    if header is None:
        return None
    m = _CONTENT_RANGE_RE.fullmatch(header.strip())
    if m is None:
        raise _out_of_order(current, f"malformed Content-Range {header[:80]!r}")
    start, end = int(m.group(1)), int(m.group(2))
    if start != current or end < start:
        raise _out_of_order(current, f"chunk {start}-{end} does not start at offset {current}")
    length = _content_length(request)
    if length is not None and length != end - start + 1:
        raise _out_of_order(current, "Content-Range and Content-Length disagree")
    return start, end


def _out_of_order(current: int, message: str) -> errors.RegistryError:
    return errors.RANGE_INVALID(
        {"offset": current},
        message=message,
        headers={"Range": f"0-{max(current - 1, 0)}"},
    )


async def _append(
    request: Request,
    svc: Services,
    record: UploadRecord,
    *,
    final: bool,
    holder: str | None = None,
) -> int:
    """Stream the request body onto the upload and record the new size.

    The request first claims the session in the database (unless it created the session
    already claimed: ``holder``), so two requests never write into one upload at once,
    whichever processes they run on; a second one gets 416 and writes nothing. A body that
    turns out shorter or longer than it declared is not recorded. A final chunk keeps the
    claim and records nothing: the session row is deleted when the blob is published.
    """
    declared = _chunk_range(request, record.size)
    if holder is None:
        holder = str(uuid.uuid4())
        async with svc.db.write() as session:
            claimed = await UploadStore(session).claim(
                record.id, record.size, holder, utcnow() + _CLAIM_LEASE
            )
        if not claimed:
            raise _out_of_order(record.size, "another request is writing to this upload")
    recorded = False
    try:
        try:
            size, state = await svc.uploads.append(
                record.id, record.size, record.writer_state, request.stream(), final=final
            )
        except InvalidOffset as exc:
            # The stored data no longer matches the session: it cannot be continued.
            raise errors.BLOB_UPLOAD_INVALID({"uuid": record.id}, message=str(exc)) from exc
        received = size - record.size
        expected = _content_length(request)
        if declared is not None and received != declared[1] - declared[0] + 1:
            raise _out_of_order(
                record.size, f"received {received} bytes, Content-Range declared otherwise"
            )
        if expected is not None and received != expected:
            raise errors.SIZE_INVALID({"received": received, "Content-Length": expected})
        if final:
            # Nobody may write after the last chunk: the claim stays until the PUT is done.
            recorded = True
            return size
        async with svc.db.write() as session:
            recorded = await UploadStore(session).advance(record.id, holder, size, state)
        if not recorded:
            raise errors.BLOB_UPLOAD_INVALID(
                {"uuid": record.id}, message="the upload was changed by a concurrent request"
            )
        return size
    finally:
        if not recorded:
            # Bytes past the recorded size are dropped at the next resume.
            svc.uploads.forget(record.id)
            async with svc.db.write() as session:
                await UploadStore(session).release(record.id, holder)


async def _finish(
    svc: Services, name: str, record: UploadRecord, size: int, digest: Digest
) -> Response:
    """Verify the digest, publish the content at its address, and link it to the repository."""
    actual = await svc.uploads.digest(record.id, size, digest.algorithm)
    if actual != digest:
        await _discard(svc, record.id)
        raise errors.DIGEST_INVALID(
            {"expected": str(digest), "actual": str(actual)},
            message="provided digest did not match uploaded content",
        )
    await svc.blobs.publish(record.id, digest)
    async with svc.db.write() as session:
        blobs = BlobStore(session)
        await blobs.add(str(digest), size)
        await blobs.link(record.repository_id, str(digest))
        await UploadStore(session).delete(record.id)
    return empty(
        201,
        {
            "Location": f"/v2/{name}/blobs/{digest}",
            "Docker-Content-Digest": str(digest),
        },
    )


async def _discard(svc: Services, upload_id: str) -> None:
    await svc.uploads.discard(upload_id)
    async with svc.db.write() as session:
        await UploadStore(session).delete(upload_id)


async def _mount(
    request: Request, svc: Services, name: str, digest: Digest, source: str | None
) -> bool:
    """Link a blob the caller can already read; False means 'start a normal upload instead'.

    With ``from``: only if the caller may pull the source. Without: only from the same tenant.
    A refusal is silent so that it reveals nothing about repositories the caller cannot see.
    """
    if source is not None and (
        not NAME_RE.fullmatch(source) or not await svc.access.allows(request, source, Action.PULL)
    ):
        return False
    async with svc.db.write() as session:
        repos, blobs = RepositoryStore(session), BlobStore(session)
        if source is not None:
            source_id = await repos.get_id(source)
            found = await blobs.linked(source_id, str(digest)) if source_id else None
        else:
            found = await blobs.linked_in_tenant(tenant_of(name), str(digest))
        if found is None:
            return False
        await blobs.link(await repos.get_or_create(name), str(digest))
    return True


async def start_upload(request: Request) -> Response:
    name = await authorized_repository(request)
    svc = services(request)
    params = request.query_params

    if "mount" in params:
        digest = Digest.parse(params["mount"])
        if await _mount(request, svc, name, digest, params.get("from") or None):
            return empty(
                201,
                {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": str(digest)},
            )

    monolithic = Digest.parse(params["digest"]) if "digest" in params else None
    upload_id = str(uuid.uuid4())
    # A monolithic upload is created already claimed by this request: one transaction fewer.
    holder = str(uuid.uuid4()) if monolithic is not None else None
    async with svc.db.write() as session:
        repo_id = await RepositoryStore(session).get_or_create(name)
        record = await UploadStore(session).create(
            upload_id, repo_id, holder=holder, held_until=utcnow() + _CLAIM_LEASE
        )

    if monolithic is None:
        return empty(202, _progress_headers(name, upload_id, 0))
    try:
        size = await _append(request, svc, record, final=True, holder=holder)
    except BaseException:
        await _discard(svc, upload_id)
        raise
    return await _finish(svc, name, record, size, monolithic)


async def upload_status(request: Request) -> Response:
    name = await authorized_repository(request, frozenset({Action.PULL, Action.PUSH}))
    record = await _load(services(request), name, request.path_params["uuid"])
    return empty(204, _progress_headers(name, record.id, record.size))


async def patch_upload(request: Request) -> Response:
    name = await authorized_repository(request)
    svc = services(request)
    record = await _load(svc, name, request.path_params["uuid"])
    size = await _append(request, svc, record, final=False)
    return empty(202, _progress_headers(name, record.id, size))


async def finish_upload(request: Request) -> Response:
    name = await authorized_repository(request)
    svc = services(request)
    if "digest" not in request.query_params:
        raise errors.DIGEST_INVALID(message="the digest query parameter is required")
    digest = Digest.parse(request.query_params["digest"])
    record = await _load(svc, name, request.path_params["uuid"])
    size = await _append(request, svc, record, final=True)
    return await _finish(svc, name, record, size, digest)


async def cancel_upload(request: Request) -> Response:
    name = await authorized_repository(request, frozenset({Action.PULL, Action.PUSH}))
    svc = services(request)
    record = await _load(svc, name, request.path_params["uuid"])
    await _discard(svc, record.id)
    return empty(204)

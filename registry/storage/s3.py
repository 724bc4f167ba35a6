"""The S3 storage driver: the contract over one bucket (any S3-compatible store), with boto3.

Layout: a path ``/a/b`` is the key ``<prefix>/a/b`` (just ``a/b`` without a prefix). A
directory is a key prefix: it exists while some key lies below it, and vanishes with its last
file, so there is never an empty directory to prune.

Writers and their resumable state
---------------------------------
A writer streams into an S3 multipart upload of the path's key, so nothing is visible at the
path until ``CompleteMultipartUpload`` (or, for content too small for one part, ``PutObject``)
at commit. Parts must be at least 5 MiB (except the last), but upload chunks may be tiny, so
a writer buffers up to ``part_size`` bytes in memory and uploads a part whenever it has that
much. What is left when a session ends (less than 5 MiB; a larger tail goes up as a part) is
stored as a small *pending object* beside the key::

    <dir>/.tmp-<name>.<parts so far>.pending

``.tmp-`` is the contract's reserved prefix: no stored path can take that name, and ``list``
never shows it. The next session, in any process, reads the tail back into its buffer.

``state()`` is ``{upload_id, parts: [{PartNumber, ETag, Size}], size, pending,
pending_sha256}``. A resume checks it against S3: every recorded part must be there with its
ETag and size, and the pending object of that part count must begin with the recorded tail
(sha256). Anything else (an aborted upload, a missing or shorter tail) is InvalidOffset.

Resuming an older state (the newer one was never recorded: a request that failed midway)
drops what the newer session wrote, as the contract asks: extra bytes in the tail are cut
off, pending objects for higher part counts are deleted, and parts past the recorded ones are
overwritten by the next parts or left out of ``CompleteMultipartUpload`` (which discards
them). Keeping one pending object per part count is what makes this possible: a newer session
that moved the old tail into a part leaves the old tail's object in place. A resume deletes
the pending objects of every other part count, so at most two exist per upload at any time
(the resumed one and the one the session closes with), and commit or cancel removes both.

Blocking boto3 calls run in worker threads; one client (thread-safe) serves the whole driver.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import hashlib
import re
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio
import boto3
import urllib3.exceptions
from anyio import to_thread
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from registry.storage.driver import (
    RESERVED_PREFIX,
    FileInfo,
    FileWriter,
    InvalidOffset,
    PathNotFound,
    StorageDriver,
    StorageError,
    StorageUnavailable,
    check_path,
)

if TYPE_CHECKING:
    from registry.settings import S3Settings

MiB = 1024 * 1024
GiB = 1024 * MiB
# S3's limits: parts of 5 MiB to 5 GiB (the last may be smaller), at most 10,000 of them;
# CopyObject copies at most 5 GiB, beyond that UploadPartCopy; DeleteObjects takes 1,000 keys.
MIN_PART = 5 * MiB
MAX_PART = 5 * GiB
MAX_PARTS = 10_000
MAX_COPY = 5 * GiB
DELETE_BATCH = 1000
READ_BLOCK = 1024 * 1024
POOL_CONNECTIONS = 50
COPY_CONCURRENCY = 8

_NOT_FOUND = {"NoSuchKey", "NotFound", "404", "NoSuchUpload"}
_UNAVAILABLE = {
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "Throttling",
    "ThrottlingException",
}
_PENDING_SUFFIX = ".pending"


class S3Driver(StorageDriver):
    name = "s3"
    # Class attributes, so that tests can run the multipart copy with small objects.
    copy_threshold = MAX_COPY
    copy_part_size = 512 * MiB

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        region: str = "",
        endpoint_url: str = "",
        path_style: bool = False,
        access_key_id: str = "",
        secret_access_key: str = "",
        redirect: bool = False,
        public_endpoint_url: str = "",
        presign_expiry_seconds: int = 1200,
        max_attempts: int = 5,
        part_size: int = 8 * MiB,
    ) -> None:
        if not bucket:
            raise ValueError("the S3 driver needs a bucket")
        if not MIN_PART <= part_size <= MAX_PART:
            raise ValueError(f"part_size must be between {MIN_PART} and {MAX_PART} bytes")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.redirect = redirect
        self.presign_expiry_seconds = presign_expiry_seconds
        self.part_size = part_size
        config = Config(
            s3={"addressing_style": "path" if path_style else "auto"},
            signature_version="s3v4",
            retries={"mode": "standard", "max_attempts": max_attempts},
            max_pool_connections=POOL_CONNECTIONS,
            # Only what S3 itself requires: many S3-compatible stores reject the newer
            # default CRC checksums.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # Our own session: creating clients from boto3's default session is not thread-safe.
        session = boto3.session.Session(
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            region_name=region or None,
        )
        self._client = session.client("s3", endpoint_url=endpoint_url or None, config=config)
        # Presigned URLs are signed for the host clients use, which may differ from ours; a
        # client never sends a request itself, so the second one costs nothing but memory.
        self._presigner = (
            session.client("s3", endpoint_url=public_endpoint_url, config=config)
            if public_endpoint_url
            else self._client
        )

    @classmethod
    def from_settings(cls, s3: S3Settings) -> S3Driver:
        """Build from ``settings.storage.s3``."""
        return cls(
            s3.bucket,
            prefix=s3.prefix,
            region=s3.region,
            endpoint_url=s3.endpoint_url,
            path_style=s3.path_style,
            access_key_id=s3.access_key_id,
            secret_access_key=s3.secret_access_key,
            redirect=s3.redirect,
            public_endpoint_url=s3.public_endpoint_url,
            presign_expiry_seconds=s3.presign_expiry_seconds,
            max_attempts=s3.max_attempts,
            part_size=s3.part_size,
        )

    # -- keys ------------------------------------------------------------------------------------

    def key(self, path: str) -> str:
        """The object key of a storage path (validated: check_path keeps it inside the prefix)."""
        check_path(path)
        return f"{self.prefix}{path}" if self.prefix else path[1:]

    # -- boto3 calls -----------------------------------------------------------------------------

    async def _call(self, operation: str, path: str | None = None, **kwargs: Any) -> Any:
        return await self._run(functools.partial(getattr(self._client, operation), **kwargs), path)

    async def _run(self, fn: Callable[[], Any], path: str | None = None) -> Any:
        try:
            return await to_thread.run_sync(fn)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, path) from exc

    def _paginate(self, operation: str, **kwargs: Any) -> Iterable[dict[str, Any]]:
        return self._client.get_paginator(operation).paginate(Bucket=self.bucket, **kwargs)

    async def _pages(self, operation: str, path: str | None, **kwargs: Any) -> list[dict]:
        return await self._run(lambda: list(self._paginate(operation, **kwargs)), path)

    async def _delete_keys(self, keys: builtins.list[str], path: str | None = None) -> None:
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            result = await self._call(
                "delete_objects",
                path,
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            failed = [e for e in result.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if failed:
                raise StorageError(f"could not delete {len(failed)} objects: {failed[0]}", path)

    async def _head(self, key: str, path: str) -> dict[str, Any]:
        return await self._call("head_object", path, Bucket=self.bucket, Key=key)

    # -- the contract ----------------------------------------------------------------------------

    async def get_content(self, path: str) -> bytes:
        key = self.key(path)

        def get() -> bytes:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            with contextlib.closing(response["Body"]) as body:
                return body.read()

        return await self._run(get, path)

    async def put_content(self, path: str, data: bytes) -> None:
        await self._call("put_object", path, Bucket=self.bucket, Key=self.key(path), Body=data)

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        key = self.key(path)
        if offset < 0:
            raise InvalidOffset(f"negative offset {offset}", path)
        if length is not None and length < 0:
            raise InvalidOffset(f"negative length {length}", path)
        if length != 0:
            end = "" if length is None else str(offset + length - 1)
            try:
                response = await self._call(
                    "get_object", path, Bucket=self.bucket, Key=key, Range=f"bytes={offset}-{end}"
                )
            except InvalidOffset:
                pass  # S3 refuses a range at or past the end, even of an empty object: see below
            else:
                return _BodyStream(response["Body"], path)
        size = (await self._head(key, path))["ContentLength"]
        if offset > size:
            raise InvalidOffset(f"offset {offset} beyond size {size}", path)
        return _BodyStream(None, path)

    async def writer(self, path: str, resume: dict[str, Any] | None = None) -> FileWriter:
        key = self.key(path)
        w = _S3Writer(self, path, key)
        if resume is not None:
            await w.resume(resume)
        return w

    async def stat(self, path: str) -> FileInfo:
        key = self.key(path)
        try:
            head = await self._head(key, path)
        except PathNotFound:
            pass
        else:
            return FileInfo(path, head["ContentLength"], head["LastModified"].timestamp(), False)
        # Flat, as in list(): only real objects prove that a directory exists.
        listing = await self._call(
            "list_objects_v2", path, Bucket=self.bucket, Prefix=f"{key}/", MaxKeys=10
        )
        contents = [o for o in listing.get("Contents", []) if not o["Key"].endswith("/")]
        if not contents:
            raise PathNotFound("no such file", path)
        return FileInfo(path, 0, contents[0]["LastModified"].timestamp(), True)

    async def list(self, path: str) -> builtins.list[str]:
        key = self.key(path)
        # A flat listing, grouped here, rather than Delimiter="/": some S3-compatible stores
        # (SeaweedFS, and any tool that writes "folder/" marker keys) report empty directories
        # as common prefixes, while a flat listing shows only real objects. The registry never
        # lists in a request path (the database knows what exists), so the cost is fine.
        pages = await self._pages("list_objects_v2", path, Prefix=f"{key}/")
        found = False
        children = set()
        for page in pages:
            for obj in page.get("Contents", []):
                if obj["Key"].endswith("/"):
                    continue
                found = True
                child = obj["Key"][len(key) + 1 :].split("/", 1)[0]
                if not child.startswith(RESERVED_PREFIX):
                    children.add(f"{path}/{child}")
        if not found:
            raise PathNotFound("no such directory", path)
        return sorted(children)

    async def move(self, source: str, dest: str) -> None:
        src, dst = self.key(source), self.key(dest)
        size = (await self._head(src, source))["ContentLength"]
        if size <= self.copy_threshold:
            await self._call(
                "copy_object",
                source,
                Bucket=self.bucket,
                Key=dst,
                CopySource={"Bucket": self.bucket, "Key": src},
            )
        else:
            await self._multipart_copy(src, dst, size, source)
        await self._call("delete_object", source, Bucket=self.bucket, Key=src)

    async def _multipart_copy(self, src: str, dst: str, size: int, path: str) -> None:
        # Copies happen inside S3, not through us: big parts, a few at a time.
        part = min(MAX_PART, max(self.copy_part_size, -(-size // MAX_PARTS)))
        upload = await self._call("create_multipart_upload", path, Bucket=self.bucket, Key=dst)
        upload_id = upload["UploadId"]
        etags: dict[int, str] = {}
        limit = anyio.Semaphore(COPY_CONCURRENCY)

        async def copy_part(number: int, start: int) -> None:
            async with limit:
                result = await self._call(
                    "upload_part_copy",
                    path,
                    Bucket=self.bucket,
                    Key=dst,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": src},
                    CopySourceRange=f"bytes={start}-{min(size, start + part) - 1}",
                )
            etags[number] = result["CopyPartResult"]["ETag"]

        try:
            async with anyio.create_task_group() as tg:
                for number, start in enumerate(range(0, size, part), start=1):
                    tg.start_soon(copy_part, number, start)
            await self._call(
                "complete_multipart_upload",
                path,
                Bucket=self.bucket,
                Key=dst,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
                },
            )
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self._call(
                    "abort_multipart_upload", path, Bucket=self.bucket, Key=dst, UploadId=upload_id
                )
            raise

    async def delete(self, path: str) -> None:
        key = self.key(path)
        try:
            await self._head(key, path)
        except PathNotFound:
            pass
        else:
            await self._call("delete_object", path, Bucket=self.bucket, Key=key)
            return
        # A directory: every key below it, and multipart uploads (writers never committed).
        pages = await self._pages("list_objects_v2", path, Prefix=f"{key}/")
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        aborted = await self._abort_uploads(f"{key}/", path)
        if not keys and not aborted:
            raise PathNotFound("no such file", path)
        await self._delete_keys(keys, path)

    async def _abort_uploads(
        self, prefix: str, path: str, only_key: str | None = None
    ) -> builtins.list[str]:
        """Abort the multipart uploads under ``prefix`` (or of exactly ``only_key``)."""
        pages = await self._pages("list_multipart_uploads", path, Prefix=prefix)
        uploads = [
            (u["Key"], u["UploadId"])
            for page in pages
            for u in page.get("Uploads", [])
            if only_key is None or u["Key"] == only_key
        ]
        for key, upload_id in uploads:
            with contextlib.suppress(PathNotFound):
                await self._call(
                    "abort_multipart_upload", path, Bucket=self.bucket, Key=key, UploadId=upload_id
                )
        return [upload_id for _, upload_id in uploads]

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        key = self.key(path)
        if not self.redirect:
            return None
        operation = "head_object" if method.upper() == "HEAD" else "get_object"
        return await self._run(
            lambda: self._presigner.generate_presigned_url(
                operation,
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=self.presign_expiry_seconds,
            ),
            path,
        )

    async def close(self) -> None:
        self._client.close()
        if self._presigner is not self._client:
            self._presigner.close()


class _BodyStream:
    """An async stream over a GetObject body, read in worker threads, closed early or late."""

    def __init__(self, body: Any, path: str) -> None:
        self._body = body
        self._path = path

    def __aiter__(self) -> _BodyStream:
        return self

    async def __anext__(self) -> bytes:
        if self._body is None:
            raise StopAsyncIteration
        try:
            chunk = await to_thread.run_sync(self._body.read, READ_BLOCK)
        except BaseException as exc:
            await self.aclose()
            if isinstance(exc, Exception) and _is_stream_failure(exc):
                raise StorageUnavailable(f"reading failed: {exc}", self._path) from exc
            raise
        if not chunk:
            await self.aclose()
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.close()


def _is_stream_failure(exc: Exception) -> bool:
    return isinstance(
        exc,
        ResponseStreamingError
        | IncompleteReadError
        | ReadTimeoutError
        | BotoConnectionError
        | urllib3.exceptions.HTTPError
        | OSError,
    )


class _S3Writer(FileWriter):
    def __init__(self, driver: S3Driver, path: str, key: str) -> None:
        self._driver = driver
        self._path = path
        self._key = key
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._stored = 0  # bytes in parts
        self._buffer = bytearray()
        self._done = False

    # -- names -----------------------------------------------------------------------------------

    def _pending_key(self, parts: int) -> str:
        head, _, name = self._key.rpartition("/")
        return f"{head}/{RESERVED_PREFIX}{name}.{parts}{_PENDING_SUFFIX}".lstrip("/")

    def _pending_pattern(self) -> tuple[str, re.Pattern[str]]:
        """The listing prefix of this writer's pending objects and the pattern of their keys."""
        stem = self._pending_key(0)[: -len(f"0{_PENDING_SUFFIX}")]
        return stem, re.compile(re.escape(stem) + r"(\d+)" + re.escape(_PENDING_SUFFIX))

    async def _pending_objects(self) -> dict[int, str]:
        stem, pattern = self._pending_pattern()
        pages = await self._driver._pages("list_objects_v2", self._path, Prefix=stem)
        found = {}
        for page in pages:
            for obj in page.get("Contents", []):
                match = pattern.fullmatch(obj["Key"])
                if match:
                    found[int(match.group(1))] = obj["Key"]
        return found

    # -- the writer ------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._stored + len(self._buffer)

    def state(self) -> dict[str, Any]:
        return {
            "upload_id": self._upload_id,
            "parts": [dict(p) for p in self._parts],
            "size": self.size,
            "pending": len(self._buffer),
            "pending_sha256": hashlib.sha256(self._buffer).hexdigest(),
        }

    async def write(self, data: bytes) -> None:
        if self._done:
            raise StorageError("writer already closed", self._path)
        self._buffer += data
        while len(self._buffer) >= self._driver.part_size:
            await self._upload_part(self._driver.part_size)

    async def close(self) -> None:
        if self._done:
            return
        self._done = True
        if len(self._buffer) >= MIN_PART:
            await self._upload_part(len(self._buffer))
        # Written even when empty: it is what a resume checks the state against.
        await self._driver._call(
            "put_object",
            self._path,
            Bucket=self._driver.bucket,
            Key=self._pending_key(len(self._parts)),
            Body=bytes(self._buffer),
        )

    async def commit(self) -> None:
        if self._done:
            raise StorageError("writer already closed", self._path)
        self._done = True
        d = self._driver
        if self._upload_id is None:
            await d._call(
                "put_object", self._path, Bucket=d.bucket, Key=self._key, Body=bytes(self._buffer)
            )
            # The content is stored now: ``size`` must keep counting it once the buffer empties.
            self._stored += len(self._buffer)
        else:
            if self._buffer or not self._parts:
                await self._upload_part(len(self._buffer))
            await d._call(
                "complete_multipart_upload",
                self._path,
                Bucket=d.bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={
                    "Parts": [
                        {"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in self._parts
                    ]
                },
            )
        self._buffer = bytearray()
        await d._delete_keys(list((await self._pending_objects()).values()), self._path)

    async def cancel(self) -> None:
        """Abort the multipart upload (and any other on this key) and remove pending tails."""
        self._done = True
        self._buffer = bytearray()
        d = self._driver
        if self._upload_id is not None:
            with contextlib.suppress(PathNotFound):
                await d._call(
                    "abort_multipart_upload",
                    self._path,
                    Bucket=d.bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                )
        # Sessions whose state was never recorded may have started uploads of their own.
        await d._abort_uploads(self._key, self._path, only_key=self._key)
        await d._delete_keys(list((await self._pending_objects()).values()), self._path)

    # -- parts -----------------------------------------------------------------------------------

    async def _upload_part(self, size: int) -> None:
        d = self._driver
        if len(self._parts) >= MAX_PARTS:
            raise StorageError(
                f"more than {MAX_PARTS} parts: raise storage.s3.part_size", self._path
            )
        if self._upload_id is None:
            created = await d._call(
                "create_multipart_upload", self._path, Bucket=d.bucket, Key=self._key
            )
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        body = bytes(self._buffer[:size])
        result = await d._call(
            "upload_part",
            self._path,
            Bucket=d.bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
        )
        self._parts.append({"PartNumber": number, "ETag": result["ETag"], "Size": size})
        self._stored += size
        del self._buffer[:size]

    # -- resuming --------------------------------------------------------------------------------

    async def resume(self, state: dict[str, Any]) -> None:
        try:
            upload_id, parts, size, pending, digest = _parse_state(state)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidOffset(f"unusable writer state: {exc}", self._path) from exc
        d = self._driver
        if upload_id is not None:
            await self._check_parts(upload_id, parts)
        # The tail: the pending object for this many parts must begin with the recorded bytes.
        pending_key = self._pending_key(len(parts))
        try:
            if pending:
                response = await d._call(
                    "get_object",
                    self._path,
                    Bucket=d.bucket,
                    Key=pending_key,
                    Range=f"bytes=0-{pending - 1}",
                )
                tail = await d._run(functools.partial(_read_all, response["Body"]), self._path)
            else:
                await d._head(pending_key, self._path)
                tail = b""
        except (PathNotFound, InvalidOffset) as exc:
            raise InvalidOffset("no writer state to resume", self._path) from exc
        if len(tail) != pending or hashlib.sha256(tail).hexdigest() != digest:
            raise InvalidOffset(
                f"stored tail does not match the state ({pending} bytes)", self._path
            )
        # Tails for other part counts go: newer ones so that their states (never recorded, or
        # we would not be resuming this one) cannot resume, older ones because this state
        # superseded them. Only the current tail is kept, not one per session.
        others = [k for n, k in (await self._pending_objects()).items() if n != len(parts)]
        await d._delete_keys(others, self._path)
        self._upload_id = upload_id
        self._parts = parts
        self._stored = size - pending
        self._buffer = bytearray(tail)

    async def _check_parts(self, upload_id: str, parts: list[dict[str, Any]]) -> None:
        d = self._driver
        try:
            pages = await d._pages("list_parts", self._path, Key=self._key, UploadId=upload_id)
        except PathNotFound as exc:
            raise InvalidOffset("the multipart upload is gone", self._path) from exc
        stored: dict[int, set[tuple[str, int]]] = {}
        for page in pages:
            for p in page.get("Parts", []):
                # Some stores list a rewritten part twice; either entry may be the one we want.
                stored.setdefault(p["PartNumber"], set()).add((_etag(p["ETag"]), p["Size"]))
        for p in parts:
            if (_etag(p["ETag"]), p["Size"]) not in stored.get(p["PartNumber"], set()):
                raise InvalidOffset(f"part {p['PartNumber']} does not match the state", self._path)


def _parse_state(
    state: dict[str, Any],
) -> tuple[str | None, list[dict[str, Any]], int, int, str]:
    upload_id = state.get("upload_id")
    if upload_id is not None and not isinstance(upload_id, str):
        raise TypeError("upload_id")
    parts = [
        {"PartNumber": int(p["PartNumber"]), "ETag": str(p["ETag"]), "Size": int(p["Size"])}
        for p in state.get("parts", [])
    ]
    size, pending = int(state["size"]), int(state["pending"])
    digest = str(state["pending_sha256"])
    if [p["PartNumber"] for p in parts] != list(range(1, len(parts) + 1)):
        raise ValueError("parts are not numbered 1..n")
    if parts and upload_id is None:
        raise ValueError("parts without an upload")
    if pending < 0 or size != sum(p["Size"] for p in parts) + pending:
        raise ValueError("size does not add up")
    return upload_id, parts, size, pending, digest


def _etag(value: str) -> str:
    return value.strip('"')


def _read_all(body: Any) -> bytes:
    with contextlib.closing(body):
        return body.read()


def _translate(exc: Exception, path: str | None) -> StorageError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = f"S3 {exc.operation_name}: {code} {error.get('Message', '')}".strip()
        if code in _NOT_FOUND:
            return PathNotFound(message, path)
        if code == "InvalidRange" or status == 416:
            return InvalidOffset(message, path)
        if status >= 500 or code in _UNAVAILABLE:
            return StorageUnavailable(message, path)
        return StorageError(message, path)
    if isinstance(exc, BotoConnectionError | HTTPClientError | ReadTimeoutError):
        return StorageUnavailable(f"S3 unreachable: {exc}", path)
    return StorageError(f"S3: {exc}", path)

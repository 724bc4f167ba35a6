"""Manifests and indexes: HEAD, GET (with content negotiation), PUT (validated), DELETE."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from registry import errors
from registry.api.base import authorized_repository, empty, services
from registry.db.blobs import BlobStore
from registry.db.manifests import ManifestRecord, ManifestStore
from registry.db.repositories import RepositoryStore
from registry.db.tags import TagStore
from registry.oci import manifest as oci_manifest
from registry.oci import mediatypes as mt
from registry.oci.digest import Digest
from registry.oci.names import validate_tag


def _reference(request: Request) -> tuple[str | None, Digest | None]:
    """(tag, None) or (None, digest) from the path; anything else is rejected before any I/O."""
    reference = request.path_params["reference"]
    if ":" in reference:
        return None, Digest.parse(reference)
    return validate_tag(reference), None


async def _find(request: Request, name: str) -> ManifestRecord:
    tag, digest = _reference(request)
    accepted = mt.parse_accept(request.headers.getlist("accept"))
    async with services(request).db.read() as session:
        manifests = ManifestStore(session)
        record = await manifests.find(name, tag=tag, digest=None if digest is None else str(digest))
        if record is None:
            raise errors.MANIFEST_UNKNOWN({"reference": tag or str(digest)})
        if mt.acceptable(record.media_type, accepted):
            return record
        # Distribution's fallback for clients that read schema 2 but not lists: by tag, serve
        # the linux/amd64 image of a Docker manifest list.
        if (
            tag is not None
            and record.media_type == mt.DOCKER_LIST
            and mt.DOCKER_MANIFEST in accepted
        ):
            child = _default_platform_child(await manifests.payload(record.id))
            found = await manifests.find(name, digest=child) if child else None
            if found is not None:
                return found
    raise errors.MANIFEST_UNKNOWN(
        {"mediaType": record.media_type, "accept": sorted(accepted)},
        message=f"manifest found as {record.media_type}, which the Accept header does not allow",
    )


async def _payload(request: Request, record: ManifestRecord) -> bytes:
    cache = services(request).manifests
    payload = cache.get(record.digest)
    if payload is None:
        try:
            async with services(request).db.read() as session:
                payload = await ManifestStore(session).payload(record.id)
        except LookupError as exc:
            # Deleted since _find saw it: the answer a GET a moment later would get.
            raise errors.MANIFEST_UNKNOWN({"digest": record.digest}) from exc
        cache.put(record.digest, payload)
    return payload


def _default_platform_child(payload: bytes) -> str | None:
    for entry in json.loads(payload).get("manifests", []):
        platform = entry.get("platform") or {}
        if platform.get("os") == "linux" and platform.get("architecture") == "amd64":
            return entry.get("digest")
    return None


def _headers(record: ManifestRecord) -> dict[str, str]:
    return {
        "Docker-Content-Digest": record.digest,
        "ETag": f'"{record.digest}"',
        "Content-Length": str(record.size),
    }


async def head_manifest(request: Request) -> Response:
    name = await authorized_repository(request)
    record = await _find(request, name)
    return Response(b"", 200, _headers(record), media_type=record.media_type)


async def get_manifest(request: Request) -> Response:
    name = await authorized_repository(request)
    record = await _find(request, name)
    payload = await _payload(request, record)
    return Response(payload, 200, _headers(record), media_type=record.media_type)


async def _read_body(request: Request) -> bytes:
    """The request body, refused as soon as it passes the manifest size limit."""
    limit = oci_manifest.MAX_MANIFEST_SIZE
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise errors.MANIFEST_TOO_LARGE(
            {"size": int(declared), "limit": limit},
            message=f"manifest is {declared} bytes, over the limit of {limit}",
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise errors.MANIFEST_TOO_LARGE(
                {"limit": limit}, message=f"manifest is over the limit of {limit} bytes"
            )
    return bytes(body)


async def put_manifest(request: Request) -> Response:
    name = await authorized_repository(request)
    tag, reference_digest = _reference(request)
    payload = await _read_body(request)
    parsed = oci_manifest.parse(payload, request.headers.get("content-type"))
    algorithm = reference_digest.algorithm if reference_digest else "sha256"
    digest = Digest.of(payload, algorithm)
    if reference_digest is not None and digest != reference_digest:
        raise errors.DIGEST_INVALID(
            {"expected": str(reference_digest), "actual": str(digest)},
            message="manifest digest does not match the digest in the URL",
        )

    async with services(request).db.write() as session:
        repo_id = await RepositoryStore(session).get_or_create(name)
        missing_blobs = await BlobStore(session).missing(
            repo_id, (d.digest for d in parsed.blob_references())
        )
        if missing_blobs:
            raise errors.MANIFEST_BLOB_UNKNOWN(
                {"digests": sorted(missing_blobs)},
                message=f"manifest references unknown blob {sorted(missing_blobs)[0]}",
            )
        manifests = ManifestStore(session)
        missing_children = await manifests.missing(repo_id, (d.digest for d in parsed.manifests))
        if missing_children:
            raise errors.MANIFEST_UNKNOWN(
                {"digests": sorted(missing_children)},
                message=f"index references unknown manifest {sorted(missing_children)[0]}",
                status=400,
            )
        manifest_id = await manifests.put(repo_id, str(digest), payload, parsed)
        if tag is not None:
            await TagStore(session).set(repo_id, tag, manifest_id)

    headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": str(digest)}
    if parsed.subject is not None:
        headers["OCI-Subject"] = parsed.subject.digest
    return empty(201, headers)


async def delete_manifest(request: Request) -> Response:
    """By tag: remove the tag only. By digest: remove the manifest and every tag on it."""
    name = await authorized_repository(request)
    tag, digest = _reference(request)
    async with services(request).db.write() as session:
        repo_id = await RepositoryStore(session).get_id(name)
        removed = False
        if repo_id is not None:
            if tag is not None:
                removed = await TagStore(session).delete(repo_id, tag)
            else:
                removed = await ManifestStore(session).delete(repo_id, str(digest))
    if not removed:
        raise errors.MANIFEST_UNKNOWN({"reference": tag or str(digest)})
    return empty(202)

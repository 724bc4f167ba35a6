"""Parsing and validating manifests and indexes as pushed, byte for byte.

The registry stores what the client sent; this module only reads it to learn what it references
(blobs, child manifests, a subject) and to refuse what no client could later pull.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from registry import errors
from registry.oci import mediatypes as mt
from registry.oci.digest import Digest

MAX_MANIFEST_SIZE = 4 * 1024 * 1024

# Layers that clients fetch from their `urls` rather than from the registry.
_FOREIGN_LAYERS = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    platform: dict[str, Any] | None = None
    urls: tuple[str, ...] = ()

    @property
    def foreign(self) -> bool:
        return self.media_type in _FOREIGN_LAYERS and bool(self.urls)


@dataclass(frozen=True, slots=True)
class Manifest:
    media_type: str
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES

    def blob_references(self) -> list[Descriptor]:
        """Blobs the registry must hold for this manifest to be pullable."""
        refs = [self.config] if self.config is not None else []
        refs.extend(layer for layer in self.layers if not layer.foreign)
        return refs

    @property
    def referrer_artifact_type(self) -> str | None:
        """The artifactType a referrers listing shows, as the distribution-spec defines it."""
        if self.artifact_type:
            return self.artifact_type
        if self.config is not None:
            return self.config.media_type
        return None


def _invalid(message: str) -> errors.RegistryError:
    return errors.MANIFEST_INVALID({"reason": message}, message=f"manifest invalid: {message}")


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where} is not a descriptor object")
    media_type = value.get("mediaType")
    digest = value.get("digest")
    size = value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where} has no mediaType")
    if not isinstance(digest, str):
        raise _invalid(f"{where} has no digest")
    try:
        Digest.parse(digest)
    except errors.RegistryError as exc:
        raise _invalid(f"{where} has an invalid digest {digest[:100]!r}") from exc
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where} has no valid size")
    annotations = value.get("annotations")
    if annotations is not None and not _is_str_map(annotations):
        raise _invalid(f"{where} annotations must map strings to strings")
    platform = value.get("platform")
    if platform is not None and not isinstance(platform, dict):
        raise _invalid(f"{where} platform must be an object")
    urls = value.get("urls") or []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise _invalid(f"{where} urls must be a list of strings")
    artifact_type = value.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid(f"{where} artifactType must be a string")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        artifact_type=artifact_type,
        annotations=annotations,
        platform=platform,
        urls=tuple(urls),
    )


def _is_str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _content_type(header: str | None) -> str | None:
    if not header:
        return None
    return header.split(";", 1)[0].strip().lower() or None


def parse(payload: bytes, content_type: str | None) -> Manifest:
    """Validate a pushed manifest and return what it references.

    The media type comes from the body's ``mediaType`` and the request's Content-Type; when
    both are given they must agree. Schema 1 manifests are refused: no current client needs them.
    """
    if len(payload) > MAX_MANIFEST_SIZE:
        raise errors.MANIFEST_TOO_LARGE(
            {"size": len(payload), "limit": MAX_MANIFEST_SIZE},
            message=f"manifest is {len(payload)} bytes, over the limit of {MAX_MANIFEST_SIZE}",
        )
    try:
        # Decoded explicitly: json.loads would guess UTF-16/32, which no client can read back.
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _invalid("body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise _invalid("body is not a JSON object")

    header_type = _content_type(content_type)
    body_type = body.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise _invalid("mediaType must be a string")
    if (
        header_type in (mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED)
        or body.get("schemaVersion") == 1
    ):
        raise errors.MANIFEST_INVALID(
            {"mediaType": header_type or body_type},
            message="Docker schema 1 manifests are not supported; push schema 2 or OCI",
            status=400,
        )
    if body.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")

    if header_type in mt.SUPPORTED:
        media_type = header_type
        if body_type is not None and body_type != header_type:
            raise _invalid(
                f"mediaType {body_type!r} in the body does not match Content-Type {header_type!r}"
            )
    elif body_type in mt.SUPPORTED:
        # Content-Type absent or generic (application/json, octet-stream): trust the body.
        if header_type not in (None, "application/json", "application/octet-stream"):
            raise _invalid(f"Content-Type {header_type!r} does not match mediaType {body_type!r}")
        media_type = body_type
    elif header_type in (None, "application/json") and body_type is None:
        # An OCI manifest may omit mediaType; tell the two kinds apart by their fields.
        if "manifests" in body:
            media_type = mt.OCI_INDEX
        elif "config" in body:
            media_type = mt.OCI_MANIFEST
        else:
            raise _invalid("cannot tell the manifest's media type")
    else:
        raise _invalid(f"unsupported manifest media type {(header_type or body_type)!r}")

    annotations = body.get("annotations") or {}
    if not _is_str_map(annotations):
        raise _invalid("annotations must map strings to strings")
    artifact_type = body.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    subject = _descriptor(body["subject"], "subject") if body.get("subject") is not None else None

    if media_type in mt.INDEXES:
        children = body.get("manifests")
        if not isinstance(children, list):
            raise _invalid("an index needs a manifests list")
        return Manifest(
            media_type=media_type,
            manifests=tuple(_descriptor(c, f"manifests[{i}]") for i, c in enumerate(children)),
            subject=subject,
            artifact_type=artifact_type,
            annotations=annotations,
        )

    if "manifests" in body:
        raise _invalid("an image manifest may not list manifests")
    config = _descriptor(body.get("config"), "config")
    layers = body.get("layers")
    if layers is None and media_type == mt.OCI_MANIFEST:
        layers = []
    if not isinstance(layers, list):
        raise _invalid("layers must be a list")
    if media_type == mt.DOCKER_MANIFEST and (artifact_type or subject):
        raise _invalid("Docker schema 2 manifests carry no artifactType or subject")
    return Manifest(
        media_type=media_type,
        config=config,
        layers=tuple(_descriptor(layer, f"layers[{i}]") for i, layer in enumerate(layers)),
        subject=subject,
        artifact_type=artifact_type,
        annotations=annotations,
    )

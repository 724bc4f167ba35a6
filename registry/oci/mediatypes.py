"""Manifest media types and content negotiation on manifest GET/HEAD."""

from __future__ import annotations

from collections.abc import Iterable

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_LIST})
SUPPORTED = IMAGE_MANIFESTS | INDEXES


def parse_accept(values: Iterable[str]) -> set[str]:
    """Media types from every Accept header line, each of which may be a comma-separated list.

    Docker sends one header line per type; containerd sends one comma-separated line.
    Parameters such as ``q=0.5`` are dropped: registries do not weigh them.
    """
    accepted: set[str] = set()
    for line in values:
        for part in line.split(","):
            media_type = part.split(";", 1)[0].strip().lower()
            if media_type:
                accepted.add(media_type)
    return accepted


def acceptable(stored: str, accepted: set[str]) -> bool:
    """Whether a client that sent ``accepted`` can take a manifest stored as ``stored``.

    No Accept header, or a wildcard, takes anything. Otherwise the stored type must be listed,
    as Distribution requires; the manifest-list fallback for old clients lives in the handler.
    """
    if not accepted or "*/*" in accepted or "application/*" in accepted:
        return True
    return stored in accepted

"""The HTTP API suite: a real ``python -m registry serve`` on a free loopback port, driven by httpx.

* ``registry`` / ``client``: one server and one client per session and backend. Every test
  runs on each backend (``backend``): "sqlite-fs" (SQLite and files in the data dir) and
  "pg-s3" (a fresh PostgreSQL database and a prefix in an S3 bucket, tests/conftest.py).
  Tests that need a server of their own (restarts) start it with :func:`start_registry`
  themselves; it runs on the test's backend too, through the ``BERTH_*`` environment.
* ``repo`` / ``new_repo``: fresh repository names, each under its own tenant (the first path
  component), so tests never see each other's blobs through automatic mounts.
* ``known_good``: an image pushed once per session. Every test that sends bad input calls
  :func:`assert_intact` on it afterwards: nothing stored before may be lost or corrupted.
* Builders (:func:`make_image`, :func:`make_index`) return the exact bytes to push and their
  digests; pushers (:func:`push_blob`, :func:`push_manifest`, :func:`push_image`) assert success.
  All data is small and deterministic.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

# pyproject sets no pytest `pythonpath`; make `tests.support` importable under a bare `pytest`.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.backends import BACKENDS, ServerBackends  # noqa: E402
from tests.support.processes import RegistryProcess, start_registry  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ALL_MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)

EMPTY_JSON = b"{}"


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def deterministic_bytes(seed: str, size: int) -> bytes:
    """``size`` bytes that look random but depend only on ``seed``."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


def odd_json(body: dict[str, Any]) -> bytes:
    """JSON with tabs, odd separators and a trailing blank: a registry must keep it byte for byte.

    Keys keep the caller's (deliberately unusual) order.
    """
    return (json.dumps(body, indent="\t", separators=(" ,", " :  ")) + "\n \n").encode()


@dataclass(frozen=True)
class Image:
    """A manifest (or index) as pushed, with the blobs and child manifests it needs."""

    repo: str
    tag: str | None
    manifest: bytes
    media_type: str
    blobs: dict[str, bytes] = field(default_factory=dict)
    children: tuple[Image, ...] = ()

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)

    @property
    def reference(self) -> str:
        return self.tag or self.digest


def make_image(
    repo: str,
    tag: str | None = "latest",
    *,
    seed: str = "image",
    media_type: str = OCI_MANIFEST,
    layers: int = 2,
    layer_type: str | None = None,
    artifact_type: str | None = None,
    empty_config: bool = False,
    subject: Image | None = None,
    annotations: dict[str, str] | None = None,
    with_media_type: bool = True,
) -> Image:
    """An image manifest with a config and ``layers`` small layers, keys in an unusual order."""
    docker = media_type == DOCKER_MANIFEST
    if empty_config:
        config, config_type = EMPTY_JSON, OCI_EMPTY
    else:
        config_doc = {"architecture": "amd64", "os": "linux", "seed": seed}
        config = json.dumps(config_doc, sort_keys=True).encode()
        config_type = DOCKER_CONFIG if docker else OCI_CONFIG
    layer_type = layer_type or (DOCKER_LAYER if docker else OCI_LAYER)
    layer_data = [deterministic_bytes(f"{seed}/layer{i}", 512 + 97 * i) for i in range(layers)]
    body: dict[str, Any] = {}
    if annotations:
        body["annotations"] = annotations
    body["layers"] = [descriptor(layer_type, data) for data in layer_data]
    body["config"] = descriptor(config_type, config)
    if subject is not None:
        body["subject"] = {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": len(subject.manifest),
        }
    if artifact_type is not None:
        body["artifactType"] = artifact_type
    if with_media_type:
        body["mediaType"] = media_type
    body["schemaVersion"] = 2
    blobs = {digest_of(config): config, **{digest_of(d): d for d in layer_data}}
    return Image(repo, tag, odd_json(body), media_type, blobs)


def make_index(
    repo: str,
    tag: str | None,
    children: list[Image],
    *,
    media_type: str = OCI_INDEX,
    platforms: list[tuple[str, str]] | None = None,
    subject: Image | None = None,
    artifact_type: str | None = None,
    annotations: dict[str, str] | None = None,
) -> Image:
    platforms = platforms or [("linux", "amd64"), ("linux", "arm64"), ("linux", "s390x")]
    entries = []
    for child, (os_name, arch) in zip(children, platforms, strict=False):
        entries.append(
            {
                "platform": {"os": os_name, "architecture": arch},
                "mediaType": child.media_type,
                "size": len(child.manifest),
                "digest": child.digest,
            }
        )
    body: dict[str, Any] = {"manifests": entries}
    if annotations:
        body["annotations"] = annotations
    if subject is not None:
        body["subject"] = {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": len(subject.manifest),
        }
    if artifact_type is not None:
        body["artifactType"] = artifact_type
    body["mediaType"] = media_type
    body["schemaVersion"] = 2
    return Image(repo, tag, odd_json(body), media_type, {}, tuple(children))


# --------------------------------------------------------------------------- HTTP helpers


def describe(resp: httpx.Response) -> str:
    """Request and response in one string, for assertion messages."""
    req = resp.request
    try:
        body = resp.text[:1500] if req.method != "HEAD" else ""
    except httpx.ResponseNotRead:
        body = "(streamed)"
    return (
        f"{req.method} {req.url} -> {resp.status_code}\n"
        f"request headers: {dict(req.headers)}\n"
        f"response headers: {dict(resp.headers)}\nbody: {body}"
    )


def expect(resp: httpx.Response, status: int) -> httpx.Response:
    assert resp.status_code == status, describe(resp)
    return resp


def assert_error(
    resp: httpx.Response, status: int, *codes: str, message_contains: str | None = None
) -> dict[str, Any]:
    """An OCI error answer: the status, and (except for HEAD) the JSON envelope with ``codes``.

    Returns the first error entry ({} for HEAD).
    """
    assert resp.status_code == status, describe(resp)
    if resp.request.method == "HEAD":
        assert resp.content == b"", describe(resp)
        return {}
    assert resp.headers.get("content-type", "").startswith("application/json"), describe(resp)
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("errors"), list), describe(resp)
    assert body["errors"], describe(resp)
    for entry in body["errors"]:
        assert isinstance(entry.get("code"), str), describe(resp)
        assert isinstance(entry.get("message"), str), describe(resp)
    first = body["errors"][0]
    if codes:
        assert first["code"] in codes, describe(resp)
    if message_contains is not None:
        assert message_contains in first["message"], describe(resp)
    return first


def start_upload(client: httpx.Client, repo: str) -> str:
    """POST an upload session; return its Location."""
    resp = expect(client.post(f"/v2/{repo}/blobs/uploads/"), 202)
    location = resp.headers["Location"]
    assert location, describe(resp)
    return location


def push_blob(
    client: httpx.Client,
    repo: str,
    data: bytes,
    algorithm: str = "sha256",
    *,
    monolithic: bool = True,
) -> str:
    """Push one blob and return its digest: POST ?digest= (one request), or POST then PUT."""
    digest = digest_of(data, algorithm)
    headers = {"Content-Type": "application/octet-stream"}
    if monolithic:
        resp = client.post(
            f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data, headers=headers
        )
    else:
        location = start_upload(client, repo)
        resp = client.put(location, params={"digest": digest}, content=data, headers=headers)
    expect(resp, 201)
    assert resp.headers["Docker-Content-Digest"] == digest, describe(resp)
    return digest


def push_manifest(
    client: httpx.Client, repo: str, reference: str, body: bytes, media_type: str
) -> httpx.Response:
    resp = client.put(
        f"/v2/{repo}/manifests/{reference}", content=body, headers={"Content-Type": media_type}
    )
    return expect(resp, 201)


def push_image(client: httpx.Client, image: Image) -> httpx.Response:
    """Push the blobs and children (by digest) first, then the manifest by tag or digest."""
    for child in image.children:
        push_image(client, child)
    for data in image.blobs.values():
        push_blob(client, image.repo, data)
    resp = push_manifest(client, image.repo, image.reference, image.manifest, image.media_type)
    assert resp.headers["Docker-Content-Digest"] == image.digest, describe(resp)
    return resp


def get_manifest(
    client: httpx.Client,
    repo: str,
    reference: str,
    accept: tuple[str, ...] = ALL_MANIFEST_TYPES,
    method: str = "GET",
) -> httpx.Response:
    return client.request(
        method, f"/v2/{repo}/manifests/{reference}", headers={"Accept": ", ".join(accept)}
    )


def assert_intact(client: httpx.Client, image: Image) -> None:
    """The image's manifest (by tag and by digest), children and blobs read back byte-identical."""
    references = [image.digest] + ([image.tag] if image.tag else [])
    for reference in references:
        resp = expect(get_manifest(client, image.repo, reference), 200)
        assert resp.content == image.manifest, describe(resp)
        assert resp.headers["Docker-Content-Digest"] == image.digest, describe(resp)
        assert resp.headers["Content-Type"] == image.media_type, describe(resp)
    for child in image.children:
        assert_intact(client, child)
    for digest, data in image.blobs.items():
        resp = expect(client.get(f"/v2/{image.repo}/blobs/{digest}"), 200)
        assert resp.content == data, f"blob {digest} of {image.repo} changed"
        assert resp.headers["Docker-Content-Digest"] == digest, describe(resp)


def raw_exchange(
    registry: RegistryProcess, payload: bytes, *, timeout: float = 10.0, read: bool = True
) -> bytes:
    """Send raw bytes on a fresh connection and return everything the server answers."""
    with socket.create_connection((registry.host, registry.port), timeout=timeout) as sock:
        sock.sendall(payload)
        if not read:
            return b""
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                break
        return b"".join(chunks)


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def raw_request(registry: RegistryProcess, method: str, raw_path: str) -> tuple[int, bytes]:
    """A request whose path goes on the wire exactly as given (no client normalisation)."""
    request = (
        f"{method} {raw_path} HTTP/1.1\r\nHost: {registry.address}\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = raw_exchange(registry, request)
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 "), answer[:500]
    return int(status_line.split()[1]), answer.partition(b"\r\n\r\n")[2]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def registry(
    tmp_path_factory: pytest.TempPathFactory,
    backend: str,
    server_backends: ServerBackends,
    request: pytest.FixtureRequest,
) -> Iterator[RegistryProcess]:
    env = server_backends.env(request, backend, "api")
    server = start_registry(tmp_path_factory.mktemp(f"registry-{backend}"), extra_env=env)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def own_servers_use_the_backend(
    request: pytest.FixtureRequest,
    backend: str,
    server_backends: ServerBackends,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A test that starts its own server (no ``registry``) gets the backend through the
    environment, which ``start_registry`` passes on: a fresh database and S3 prefix each."""
    if "registry" in request.fixturenames:
        return
    for key, value in server_backends.env(request, backend, request.node.name).items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="session")
def client(registry: RegistryProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=60) as c:
        yield c


_tenants = itertools.count(1)


@pytest.fixture(scope="session")
def new_repo() -> Callable[..., str]:
    """``new_repo()``: a repository under a fresh tenant; ``new_repo(tenant)`` reuses one."""

    def make(tenant: str | None = None, name: str = "app") -> str:
        return f"{tenant or new_tenant()}/{name}"

    return make


def new_tenant() -> str:
    return f"tenant{next(_tenants):04d}"


@pytest.fixture
def repo(new_repo: Callable[..., str]) -> str:
    return new_repo()


@pytest.fixture(scope="session")
def known_good(client: httpx.Client) -> Image:
    """An image that bad requests must never damage."""
    image = make_image("known/good", "v1", seed="known-good", layers=3)
    push_image(client, image)
    assert_intact(client, image)
    return image

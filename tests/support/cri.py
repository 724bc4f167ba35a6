"""A minimal CRI image-service client: what a kubelet sends containerd to pull an image.

crictl is not packaged for Debian, so the end-to-end tests speak the CRI gRPC API themselves.
``cri/api.proto`` holds the few upstream definitions they need (package ``runtime.v1``, service
``ImageService``, upstream field numbers); it is compiled with grpcio-tools when first used, into
a temporary directory, so no generated code is committed and the generated module always matches
the installed protobuf runtime. Calls name their method by its full gRPC path
(``/runtime.v1.ImageService/PullImage``), exactly as the kubelet's generated client does.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

PROTO = Path(__file__).resolve().parent / "cri" / "api.proto"
SERVICE = "/runtime.v1.ImageService"


class CRIUnavailable(RuntimeError):
    """grpcio or grpcio-tools is missing, or the proto file does not compile."""


@functools.cache
def messages() -> ModuleType:
    """The compiled ``runtime.v1`` messages (ImageSpec, AuthConfig, PullImageRequest, ...)."""
    try:
        from grpc_tools import protoc
    except ImportError as exc:
        raise CRIUnavailable("grpcio-tools is not installed (the `test` extra has it)") from exc
    out = Path(tempfile.mkdtemp(prefix="berth-cri-"))
    include = str(Path(protoc.__file__).resolve().parent / "_proto")  # google/protobuf/*.proto
    status = protoc.main(
        ["protoc", f"-I{PROTO.parent}", f"-I{include}", f"--python_out={out}", PROTO.name]
    )
    generated = out / f"{PROTO.stem}_pb2.py"
    if status != 0 or not generated.exists():
        raise CRIUnavailable(f"protoc failed (exit {status}) on {PROTO}")
    # A private module name: nothing else in the test process can collide with it.
    spec = importlib.util.spec_from_file_location("berth_tests_cri_api_pb2", generated)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def credentials_from_secret(secret_yaml: str, registry: str) -> tuple[str, str]:
    """Username and password for ``registry`` (host:port) from a kubernetes.io/dockerconfigjson
    Secret, as the kubelet reads an imagePullSecret: base64 ``.dockerconfigjson``, then
    ``auths[registry]``. Fails with a message if the Secret is not of that shape."""
    secret = yaml.safe_load(secret_yaml)
    assert secret.get("kind") == "Secret", secret
    assert secret.get("type") == "kubernetes.io/dockerconfigjson", secret
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"], validate=True))
    auths = config["auths"]
    assert registry in auths, f"no entry for {registry} in the Secret's auths: {list(auths)}"
    entry = auths[registry]
    username, password = entry["username"], entry["password"]
    # The kubelet prefers `auth` when present: it must say the same thing.
    assert base64.b64decode(entry["auth"]).decode() == f"{username}:{password}", entry
    return username, password


@dataclass(frozen=True)
class CRIImage:
    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    size: int


class CRIImageClient:
    """The CRI ImageService on a containerd socket (``unix:///path/containerd.sock``)."""

    def __init__(self, socket: Path | str, timeout: float = 120.0) -> None:
        try:
            import grpc
        except ImportError as exc:
            raise CRIUnavailable("grpcio is not installed (the `test` extra has it)") from exc
        self.grpc = grpc
        self.pb = messages()
        self.timeout = timeout
        self.channel = grpc.insecure_channel(f"unix://{socket}")

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> CRIImageClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, request: Any, response_type: Any) -> Any:
        call = self.channel.unary_unary(
            f"{SERVICE}/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        return call(request, timeout=self.timeout)

    def pull(self, image: str, username: str | None = None, password: str | None = None) -> str:
        """PullImage, with the credentials a kubelet takes from an imagePullSecret; the image
        reference containerd answers (its image ID). A refusal raises ``grpc.RpcError``."""
        pb = self.pb
        request = pb.PullImageRequest(image=pb.ImageSpec(image=image))
        if username is not None:
            request.auth.CopyFrom(pb.AuthConfig(username=username, password=password or ""))
        return str(self._call("PullImage", request, pb.PullImageResponse).image_ref)

    def list_images(self) -> list[CRIImage]:
        response = self._call("ListImages", self.pb.ListImagesRequest(), self.pb.ListImagesResponse)
        return [
            CRIImage(img.id, tuple(img.repo_tags), tuple(img.repo_digests), int(img.size))
            for img in response.images
        ]

    def remove(self, image: str) -> None:
        """RemoveImage by reference or ID (idempotent in the CRI contract)."""
        request = self.pb.RemoveImageRequest(image=self.pb.ImageSpec(image=image))
        self._call("RemoveImage", request, self.pb.RemoveImageResponse)

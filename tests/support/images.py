"""Build small, valid OCI images on disk without any network access.

Everything is deterministic for a given seed: the same seed yields byte-identical
layers, configs and manifests (tar mtimes are pinned and gzip headers carry no
timestamp or file name), so tests can compare digests across runs, and different
seeds (one per test or per platform) yield different layers.

The output is an OCI image layout directory (``oci-layout``, ``index.json``,
``blobs/sha256/...``) that skopeo reads as ``oci:DIR:TAG``; ``tar_layout`` packs
it for ``ctr images import``; ``write_rootfs_tar`` makes a plain tarball for
``docker import``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

OCI_LAYOUT_VERSION = "1.0.0"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"

# A fixed timestamp keeps tar headers (and hence digests) stable across runs.
FIXED_MTIME = 1_700_000_000
DEFAULT_PLATFORMS: tuple[tuple[str, str], ...] = (("linux", "amd64"), ("linux", "arm64"))


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict[str, str] | None = None
    annotations: dict[str, str] | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.platform:
            out["platform"] = self.platform
        if self.annotations:
            out["annotations"] = self.annotations
        return out


@dataclass(frozen=True)
class Layer:
    digest: str  # of the gzip blob, as it appears in the manifest
    diff_id: str  # of the uncompressed tar, as it appears in config.rootfs.diff_ids
    size: int
    files: dict[str, bytes] = field(repr=False)


@dataclass(frozen=True)
class BuiltImage:
    """One single-platform image whose blobs were written into a layout."""

    os: str
    architecture: str
    manifest_digest: str
    manifest_size: int
    manifest: bytes = field(repr=False)
    config_digest: str
    config: bytes = field(repr=False)
    layers: tuple[Layer, ...]

    @property
    def platform(self) -> str:
        return f"{self.os}/{self.architecture}"

    @property
    def layer_digests(self) -> list[str]:
        return [layer.digest for layer in self.layers]

    @property
    def diff_ids(self) -> list[str]:
        return [layer.diff_id for layer in self.layers]

    @property
    def blob_digests(self) -> list[str]:
        return [self.config_digest, *self.layer_digests]


@dataclass(frozen=True)
class BuiltIndex:
    index_digest: str
    index_size: int
    index: bytes = field(repr=False)
    images: dict[str, BuiltImage] = field(default_factory=dict)  # keyed by "os/arch"

    @property
    def manifest_digests(self) -> list[str]:
        return [img.manifest_digest for img in self.images.values()]


@dataclass(frozen=True)
class ImageLayout:
    """A layout directory whose index.json names a single-platform manifest."""

    path: Path
    tag: str
    image: BuiltImage

    @property
    def digest(self) -> str:
        return self.image.manifest_digest

    @property
    def skopeo_ref(self) -> str:
        return f"oci:{self.path}:{self.tag}"


@dataclass(frozen=True)
class IndexLayout:
    """A layout directory whose index.json names a multi-platform image index."""

    path: Path
    tag: str
    index: BuiltIndex

    @property
    def digest(self) -> str:
        return self.index.index_digest

    @property
    def skopeo_ref(self) -> str:
        return f"oci:{self.path}:{self.tag}"


def _canonical_json(obj: object) -> bytes:
    # Sorted keys and no whitespace: a stable serialisation, so stable digests.
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _write_blob(layout: Path, data: bytes) -> str:
    digest = sha256_digest(data)
    blob_path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    blob_path.parent.mkdir(parents=True, exist_ok=True)
    blob_path.write_bytes(data)
    return digest


def _tar_bytes(files: dict[str, bytes], mode_for: dict[str, int] | None = None) -> bytes:
    """An uncompressed POSIX tar with parent directories and pinned metadata."""
    buf = io.BytesIO()
    dirs: set[str] = set()
    for name in files:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = FIXED_MTIME
            info.uname = info.gname = "root"
            tar.addfile(info)
        for name in sorted(files):
            data = files[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = (mode_for or {}).get(name, 0o644)
            info.mtime = FIXED_MTIME
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _gzip(data: bytes) -> bytes:
    # GzipFile with mtime=0 and no filename: gzip.compress() would embed the time.
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="", compresslevel=6) as gz:
        gz.write(data)
    return buf.getvalue()


def layer_files(seed: str, index: int) -> dict[str, bytes]:
    """A few small files whose content depends on the seed and layer position."""
    tag = f"{seed}/layer{index}"
    if index == 0:
        return {
            "etc/berth-release": f"BERTH_TEST_SEED={seed}\n".encode(),
            f"usr/share/berth/{index}/readme.txt": f"layer {tag}\n".encode(),
        }
    return {
        "app/hello.sh": f"#!/bin/sh\necho hello from {tag}\n".encode(),
        f"app/data/{index}.bin": hashlib.sha256(tag.encode()).digest() * 64,
    }


def build_layer(layout: Path, files: dict[str, bytes]) -> Layer:
    raw = _tar_bytes(files, {name: 0o755 for name in files if name.endswith(".sh")})
    compressed = _gzip(raw)
    digest = _write_blob(layout, compressed)
    return Layer(digest=digest, diff_id=sha256_digest(raw), size=len(compressed), files=files)


def _init_layout(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}))


def _write_index_json(path: Path, manifests: Iterable[Descriptor]) -> None:
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [d.to_json() for d in manifests],
    }
    (path / "index.json").write_text(json.dumps(index, indent=2))


def build_image(
    layout: Path, seed: str, os: str = "linux", architecture: str = "amd64", n_layers: int = 2
) -> BuiltImage:
    """Write the blobs of one image into an existing layout; index.json is untouched."""
    _init_layout(layout)
    # The platform is part of the seed so every platform of an index gets its own layers.
    layer_seed = f"{seed}:{os}/{architecture}"
    layers = tuple(build_layer(layout, layer_files(layer_seed, i)) for i in range(n_layers))
    config_obj = {
        "architecture": architecture,
        "os": os,
        "created": "2023-11-14T22:13:20Z",
        "config": {
            "Cmd": ["/bin/sh", "/app/hello.sh"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Labels": {"org.berth.test.seed": seed},
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [
            {"created": "2023-11-14T22:13:20Z", "created_by": f"berth test {i}"}
            for i in range(n_layers)
        ],
    }
    config = _canonical_json(config_obj)
    config_digest = _write_blob(layout, config)
    manifest_obj = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [
            {"mediaType": MT_LAYER_GZIP, "digest": layer.digest, "size": layer.size}
            for layer in layers
        ],
    }
    manifest = _canonical_json(manifest_obj)
    manifest_digest = _write_blob(layout, manifest)
    return BuiltImage(
        os=os,
        architecture=architecture,
        manifest_digest=manifest_digest,
        manifest_size=len(manifest),
        manifest=manifest,
        config_digest=config_digest,
        config=config,
        layers=layers,
    )


def write_image_layout(
    path: Path, seed: str, tag: str = "latest", os: str = "linux", architecture: str = "amd64"
) -> ImageLayout:
    """An OCI layout holding one single-platform image, tagged ``tag``."""
    path = Path(path)
    image = build_image(path, seed, os=os, architecture=architecture)
    _write_index_json(
        path,
        [
            Descriptor(
                MT_MANIFEST,
                image.manifest_digest,
                image.manifest_size,
                platform={"os": os, "architecture": architecture},
                annotations={REF_NAME: tag},
            )
        ],
    )
    return ImageLayout(path=path, tag=tag, image=image)


def write_index_layout(
    path: Path,
    seed: str,
    tag: str = "latest",
    platforms: Sequence[tuple[str, str]] = DEFAULT_PLATFORMS,
) -> IndexLayout:
    """An OCI layout holding an image index with one image (own layers) per platform."""
    path = Path(path)
    images = {
        f"{os}/{arch}": build_image(path, seed, os=os, architecture=arch) for os, arch in platforms
    }
    index_obj = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [
            Descriptor(
                MT_MANIFEST,
                img.manifest_digest,
                img.manifest_size,
                platform={"architecture": img.architecture, "os": img.os},
            ).to_json()
            for img in images.values()
        ],
    }
    index = _canonical_json(index_obj)
    index_digest = _write_blob(path, index)
    _write_index_json(
        path, [Descriptor(MT_INDEX, index_digest, len(index), annotations={REF_NAME: tag})]
    )
    built = BuiltIndex(index_digest=index_digest, index_size=len(index), index=index, images=images)
    return IndexLayout(path=path, tag=tag, index=built)


def tar_layout(layout: Path, out: Path, image_name: str | None = None) -> Path:
    """Pack a layout directory into a tar archive, the format ``ctr images import`` reads.

    With ``image_name`` (a full reference such as ``127.0.0.1:5000/repo:tag``) every
    top-level entry of index.json gets an ``io.containerd.image.name`` annotation, so
    containerd names the imported image exactly that; otherwise use ``--base-name``.
    """
    layout, out = Path(layout), Path(out)
    index = json.loads((layout / "index.json").read_text())
    if image_name is not None:
        for desc in index["manifests"]:
            desc.setdefault("annotations", {})["io.containerd.image.name"] = image_name
    members: dict[str, bytes] = {"index.json": json.dumps(index).encode()}
    for p in sorted(layout.rglob("*")):
        rel = p.relative_to(layout).as_posix()
        if p.is_file() and rel != "index.json":
            members[rel] = p.read_bytes()
    out.write_bytes(_tar_bytes(members))
    return out


def write_rootfs_tar(path: Path, seed: str, random_bytes: int = 0) -> Path:
    """A plain (uncompressed) root filesystem tarball for ``docker import``.

    ``random_bytes`` adds an incompressible file of that size (seeded, so still
    deterministic) for tests that need a big layer.
    """
    path = Path(path)
    files = {**layer_files(seed, 0), **layer_files(seed, 1)}
    if random_bytes:
        files["app/data/random.bin"] = random.Random(seed).randbytes(random_bytes)
    path.write_bytes(_tar_bytes(files, {name: 0o755 for name in files if name.endswith(".sh")}))
    return path


def read_blob(layout: Path, digest: str) -> bytes:
    algo, hexpart = digest.split(":", 1)
    return (Path(layout) / "blobs" / algo / hexpart).read_bytes()


def write_docker_archive(
    layout: Path, image: BuiltImage, out: Path, repo_tags: Sequence[str] = ()
) -> Path:
    """A ``docker load`` archive (manifest.json plus blobs) of one image of a layout.

    Docker 20.10 cannot load an OCI layout, but it loads gzip layers from a
    docker-archive, and the image ID it reports is our config digest.
    """
    layout, out = Path(layout), Path(out)

    def blob_name(digest: str) -> str:
        return "blobs/sha256/" + digest.split(":", 1)[1]

    manifest = [
        {
            "Config": blob_name(image.config_digest),
            "RepoTags": list(repo_tags),
            "Layers": [blob_name(d) for d in image.layer_digests],
        }
    ]
    members = {"manifest.json": json.dumps(manifest).encode()}
    for digest in image.blob_digests:
        members[blob_name(digest)] = read_blob(layout, digest)
    out.write_bytes(_tar_bytes(members))
    return out

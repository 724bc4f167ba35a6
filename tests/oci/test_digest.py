"""registry.oci.digest: every malformed digest is DIGEST_INVALID before any I/O."""

from __future__ import annotations

import hashlib

import pytest

from registry.errors import RegistryError
from registry.oci.digest import Digest, sha256

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
EMPTY_SHA512 = hashlib.sha512(b"").hexdigest()


def assert_digest_invalid(value: str) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        Digest.parse(value)
    assert info.value.code.code == "DIGEST_INVALID"
    assert info.value.status == 400
    return info.value


def test_parse_sha256() -> None:
    d = Digest.parse(f"sha256:{EMPTY_SHA256}")
    assert (d.algorithm, d.hex) == ("sha256", EMPTY_SHA256)
    assert str(d) == f"sha256:{EMPTY_SHA256}"


def test_parse_sha512() -> None:
    d = Digest.parse(f"sha512:{EMPTY_SHA512}")
    assert (d.algorithm, d.hex) == ("sha512", EMPTY_SHA512)
    assert len(d.hex) == 128


def test_parse_round_trips_through_str() -> None:
    value = f"sha256:{EMPTY_SHA256}"
    assert str(Digest.parse(value)) == value
    assert Digest.parse(value) == Digest("sha256", EMPTY_SHA256)


@pytest.mark.parametrize(
    "value",
    [
        f"sha256:{EMPTY_SHA256.upper()}",
        f"sha256:{EMPTY_SHA256[:-1]}A",
        f"sha512:{EMPTY_SHA512.upper()}",
    ],
    ids=["all-upper", "one-upper", "sha512-upper"],
)
def test_uppercase_hex_is_rejected(value: str) -> None:
    assert_digest_invalid(value)


@pytest.mark.parametrize(
    "value",
    [
        f"sha256:{EMPTY_SHA256[:-1]}",
        f"sha256:{EMPTY_SHA256}0",
        f"sha256:{EMPTY_SHA512}",
        f"sha512:{EMPTY_SHA256}",
        "sha256:a",
    ],
    ids=["sha256-short", "sha256-long", "sha256-with-512-hex", "sha512-with-256-hex", "one-char"],
)
def test_wrong_length_is_rejected(value: str) -> None:
    assert_digest_invalid(value)


@pytest.mark.parametrize(
    "value",
    [
        f"md5:{'0' * 32}",
        f"sha384:{'0' * 96}",
        f"blake3:{'0' * 64}",
        f"sha256+b64u:{'0' * 64}",
    ],
)
def test_unknown_algorithm_is_digest_invalid(value: str) -> None:
    exc = assert_digest_invalid(value)
    assert "unsupported" in exc.message
    assert exc.detail["supported"] == ["sha256", "sha512"]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha256",
        "sha256:",
        f":{EMPTY_SHA256}",
        EMPTY_SHA256,
        f"SHA256:{EMPTY_SHA256}",
        f"sha256::{EMPTY_SHA256}",
        f"sha256:{EMPTY_SHA256} ",
        f" sha256:{EMPTY_SHA256}",
        f"sha256:{EMPTY_SHA256}\n",
        f"sha256:{EMPTY_SHA256[:-1]}g",
        f"sha256:{EMPTY_SHA256[:-2]}==",
        f"sha256:{EMPTY_SHA256[:-1]}/",
        "latest",
        "../../etc/passwd",
        f"sha256:{'0' * 63}\u0661",
    ],
)
def test_garbage_is_rejected(value: str) -> None:
    assert_digest_invalid(value)


def test_detail_is_truncated() -> None:
    exc = assert_digest_invalid("x" * 10_000)
    assert len(exc.detail["digest"]) <= 200


def test_of_and_sha256_helpers() -> None:
    assert str(Digest.of(b"")) == f"sha256:{EMPTY_SHA256}"
    assert str(Digest.of(b"", "sha512")) == f"sha512:{EMPTY_SHA512}"
    assert sha256(b"") == f"sha256:{EMPTY_SHA256}"
    hasher = Digest.parse(f"sha512:{EMPTY_SHA512}").hasher()
    hasher.update(b"")
    assert hasher.hexdigest() == EMPTY_SHA512

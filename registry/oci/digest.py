"""Content digests: parsing, validation and the streaming hashers behind them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from registry import errors

# Algorithms Berth computes; the spec's grammar admits others, which we answer as UNSUPPORTED.
_ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @classmethod
    def parse(cls, value: str) -> Digest:
        """Parse and validate; every malformed digest is DIGEST_INVALID before any I/O."""
        m = _DIGEST_RE.fullmatch(value)
        if not m:
            raise errors.DIGEST_INVALID({"digest": value[:200]}, message="invalid digest")
        algorithm, hexpart = m.group(1), m.group(2)
        length = _ALGORITHMS.get(algorithm)
        if length is None:
            raise errors.DIGEST_INVALID(
                {"digest": value[:200], "supported": sorted(_ALGORITHMS)},
                message=f"unsupported digest algorithm {algorithm!r}",
            )
        if len(hexpart) != length or not all(c in "0123456789abcdef" for c in hexpart):
            raise errors.DIGEST_INVALID(
                {"digest": value[:200]}, message=f"invalid {algorithm} digest"
            )
        return cls(algorithm, hexpart)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()

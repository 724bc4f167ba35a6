"""Token signing keys: generated at first start or loaded from PEM files, published as JWKS.

Every key has a ``kid`` in libtrust's format (what CNCF Distribution 2.8 matches a token's
``kid`` against when it trusts a root certificate bundle), so Distribution can verify Berth's
tokens too. Several verification keys may be active at once, for rotation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def libtrust_kid(public_key: PublicKey) -> str:
    """libtrust's key ID: base32 of the first 240 bits of SHA-256 of the DER public key,
    in twelve groups of four characters joined by ':'."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(encoded[i : i + 4] for i in range(0, 48, 4))


@dataclass(frozen=True)
class VerificationKey:
    kid: str
    algorithm: str
    public_key: PublicKey

    def jwk(self) -> dict[str, Any]:
        codec = (
            ECAlgorithm
            if isinstance(self.public_key, ec.EllipticCurvePublicKey)
            else (RSAAlgorithm)
        )
        jwk = json.loads(codec.to_jwk(self.public_key))
        jwk.update(kid=self.kid, alg=self.algorithm, use="sig")
        return jwk


@dataclass(frozen=True)
class KeySet:
    signing_key: PrivateKey
    signing_kid: str
    algorithm: str
    verification: dict[str, VerificationKey]
    # Keys the robot-secret hash is keyed with (see auth.passwords).
    pepper: bytes

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk() for key in self.verification.values()]}

    def certificate_pem(self) -> bytes:
        """A self-signed certificate of the signing key, for Distribution's rootcertbundle."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "berth token signer")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.signing_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .sign(self.signing_key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM)


def _algorithm_of(key: PrivateKey | PublicKey) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if key.curve.name != "secp256r1":
            raise ValueError("EC signing keys must be P-256 (ES256)")
        return "ES256"
    return "RS256"


def _generate(algorithm: str) -> PrivateKey:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    return ec.generate_private_key(ec.SECP256R1())


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 and renamed into place: a concurrent starter sees a whole key or none.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    try:
        os.link(tmp, path)  # fails if another process created it first; theirs wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def load_keys(
    keys_dir: Path,
    algorithm: str,
    signing_key_path: str = "",
    verification_key_paths: list[str] | None = None,
) -> KeySet:
    """Load (or, on first start, generate) the signing key, extra verification keys, pepper."""
    path = Path(signing_key_path) if signing_key_path else keys_dir / "signing.pem"
    if not path.exists():
        if signing_key_path:
            raise FileNotFoundError(f"auth.signing_key {signing_key_path} does not exist")
        pem = _generate(algorithm).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(path, pem)
    signing_key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(signing_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"{path}: signing keys must be EC P-256 or RSA")
    signing_alg = _algorithm_of(signing_key)
    signing_public = signing_key.public_key()
    signing_kid = libtrust_kid(signing_public)
    verification = {signing_kid: VerificationKey(signing_kid, signing_alg, signing_public)}
    for extra in verification_key_paths or []:
        public = serialization.load_pem_public_key(Path(extra).read_bytes())
        if not isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise ValueError(f"{extra}: verification keys must be EC P-256 or RSA")
        kid = libtrust_kid(public)
        verification[kid] = VerificationKey(kid, _algorithm_of(public), public)

    pepper_path = path.parent / "robot-pepper"
    if not pepper_path.exists():
        _write_private(pepper_path, secrets.token_bytes(32))
    return KeySet(
        signing_key=signing_key,
        signing_kid=signing_kid,
        algorithm=signing_alg,
        verification=verification,
        pepper=pepper_path.read_bytes(),
    )

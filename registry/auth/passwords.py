"""Secrets: people's passwords hashed slowly (argon2id), robots' secrets hashed fast.

A robot secret is 256 random bits, so a keyed SHA-256 (HMAC) is as safe as a slow KDF for it
and costs microseconds: a pull storm's token requests do not queue behind argon2. The key (a
"pepper") lives beside the signing keys, so a leaked database alone cannot test guesses.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()
# Letters and digits only: survives shells, YAML, URLs and docker's config.json untouched.
_ALPHABET = string.ascii_letters + string.digits
ROBOT_SECRET_LENGTH = 43  # ~256 bits of entropy


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# A hash of a fixed string, verified against on unknown accounts so that a wrong user name
# costs as long as a wrong password and timing does not reveal which accounts exist.
_DUMMY_HASH = _hasher.hash("berth-dummy-password")


def burn_password_check(password: str) -> None:
    verify_password(_DUMMY_HASH, password)


def generate_secret(length: int = ROBOT_SECRET_LENGTH) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def robot_secret_hash(pepper: bytes, secret: str) -> str:
    return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()


def verify_robot_secret(pepper: bytes, secret_hash: str, secret: str) -> bool:
    return hmac.compare_digest(robot_secret_hash(pepper, secret), secret_hash)


def token_hash(token: str) -> str:
    """How refresh tokens are stored: they are random and long, so plain SHA-256 suffices."""
    return hashlib.sha256(token.encode()).hexdigest()

"""Signing keys (libtrust kid, JWKS, rotation keys), scope parsing and the challenge header."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from registry.auth.access import Action, actions_for
from registry.auth.keys import libtrust_kid, load_keys
from registry.auth.scopes import ALL_ACTIONS, Scope, challenge, parse_scope, parse_scopes

KID_RE = re.compile(r"[A-Z2-7]{4}(?::[A-Z2-7]{4}){11}")


def _public_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


# --------------------------------------------------------------------------- keys


def test_kid_is_libtrust_format(tmp_path: Path) -> None:
    keys = load_keys(tmp_path / "keys", "ES256")
    assert KID_RE.fullmatch(keys.signing_kid), keys.signing_kid
    assert len(keys.signing_kid.split(":")) == 12


def test_kid_is_base32_of_the_der_public_key_hash() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    assert libtrust_kid(key.public_key()).replace(":", "") == expected


def test_kid_is_stable_across_loads_and_differs_between_keys(tmp_path: Path) -> None:
    first = load_keys(tmp_path / "keys", "ES256")
    again = load_keys(tmp_path / "keys", "ES256")
    other = load_keys(tmp_path / "other", "ES256")
    assert first.signing_kid == again.signing_kid
    assert libtrust_kid(first.signing_key.public_key()) == first.signing_kid
    assert other.signing_kid != first.signing_kid
    assert first.pepper == again.pepper and len(first.pepper) == 32


def test_rs256_kid_is_libtrust_format(tmp_path: Path) -> None:
    keys = load_keys(tmp_path / "keys", "RS256")
    assert keys.algorithm == "RS256"
    assert isinstance(keys.signing_key, rsa.RSAPrivateKey)
    assert KID_RE.fullmatch(keys.signing_kid)


def test_jwks_holds_signing_key_and_extra_verification_keys(tmp_path: Path) -> None:
    old_ec = ec.generate_private_key(ec.SECP256R1())
    old_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    extra = [
        str(_public_pem(old_ec, tmp_path / "old-ec.pem")),
        str(_public_pem(old_rsa, tmp_path / "old-rsa.pem")),
    ]
    keys = load_keys(tmp_path / "keys", "ES256", verification_key_paths=extra)
    jwks = keys.jwks()["keys"]
    by_kid = {k["kid"]: k for k in jwks}
    assert set(by_kid) == {
        keys.signing_kid,
        libtrust_kid(old_ec.public_key()),
        libtrust_kid(old_rsa.public_key()),
    }
    signing = by_kid[keys.signing_kid]
    assert signing["kty"] == "EC" and signing["crv"] == "P-256"
    assert signing["alg"] == "ES256" and signing["use"] == "sig"
    assert "d" not in signing  # never the private part
    rsa_jwk = by_kid[libtrust_kid(old_rsa.public_key())]
    assert rsa_jwk["kty"] == "RSA" and rsa_jwk["alg"] == "RS256" and "d" not in rsa_jwk
    assert by_kid[libtrust_kid(old_ec.public_key())]["alg"] == "ES256"


def test_signing_key_from_file_and_non_p256_refused(tmp_path: Path) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    path = tmp_path / "p384.pem"
    path.write_bytes(
        p384.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError):
        load_keys(tmp_path / "keys", "ES256", signing_key_path=str(path))
    with pytest.raises(FileNotFoundError):
        load_keys(tmp_path / "keys", "ES256", signing_key_path=str(tmp_path / "missing.pem"))


# --------------------------------------------------------------------------- scopes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("repository:acme/app:pull", Scope("repository", "acme/app", frozenset({"pull"}))),
        (
            "repository:acme/app:push,pull",
            Scope("repository", "acme/app", frozenset({"pull", "push"})),
        ),
        ("repository:acme/app:*", Scope("repository", "acme/app", frozenset(ALL_ACTIONS))),
        ("registry:catalog:*", Scope("registry", "catalog", frozenset({"*"}))),
        (
            "repository:localhost:5000/acme/app:pull",
            Scope("repository", "localhost:5000/acme/app", frozenset({"pull"})),
        ),
        ("repository:a:b:c:push", Scope("repository", "a:b:c", frozenset({"push"}))),
        (
            "repository:acme/app:pull, push ,",
            Scope("repository", "acme/app", frozenset({"pull", "push"})),
        ),
    ],
    ids=["pull", "two-actions", "star", "catalog", "port", "extra-colons", "spaces-in-actions"],
)
def test_parse_scope(text: str, expected: Scope) -> None:
    assert parse_scope(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "repository", "repository:acme", ":acme/app:pull", "repository::pull"],
    ids=["empty", "word", "type-only", "no-actions", "no-type", "no-name"],
)
def test_parse_scope_ignores_garbage(text: str) -> None:
    assert parse_scope(text) is None


def test_parse_scopes_several_params_space_separated_and_garbage() -> None:
    scopes = parse_scopes(
        [
            "repository:acme/app:pull repository:globex/app:pull,push",
            "registry:catalog:*",
            "garbage   repository:pub/base:pull",
            "",
        ]
    )
    assert scopes == [
        Scope("repository", "acme/app", frozenset({"pull"})),
        Scope("repository", "globex/app", frozenset({"pull", "push"})),
        Scope("registry", "catalog", frozenset({"*"})),
        Scope("repository", "pub/base", frozenset({"pull"})),
    ]


def test_scope_string_and_claim_are_sorted() -> None:
    scope = Scope("repository", "acme/app", frozenset({"push", "pull"}))
    assert str(scope) == "repository:acme/app:pull,push"
    assert scope.claim() == {"type": "repository", "name": "acme/app", "actions": ["pull", "push"]}


def test_challenge_formatting() -> None:
    realm = "http://127.0.0.1:5000/auth/token"
    assert challenge(realm, "berth", None) == f'Bearer realm="{realm}",service="berth"'
    assert challenge(realm, "berth", "repository:acme/app:pull") == (
        f'Bearer realm="{realm}",service="berth",scope="repository:acme/app:pull"'
    )
    assert challenge(realm, "berth", "repository:acme/app:pull,push", "insufficient_scope") == (
        f'Bearer realm="{realm}",service="berth",scope="repository:acme/app:pull,push",'
        'error="insufficient_scope"'
    )
    assert challenge(realm, "berth", None, "invalid_token") == (
        f'Bearer realm="{realm}",service="berth",error="invalid_token"'
    )


@pytest.mark.parametrize(
    ("method", "actions"),
    [
        ("GET", {Action.PULL}),
        ("HEAD", {Action.PULL}),
        ("POST", {Action.PULL, Action.PUSH}),
        ("PUT", {Action.PULL, Action.PUSH}),
        ("PATCH", {Action.PULL, Action.PUSH}),
        ("DELETE", {Action.DELETE}),
        ("BREW", {Action.PULL, Action.PUSH}),
    ],
)
def test_actions_for_method(method: str, actions: set[Action]) -> None:
    assert actions_for(method) == frozenset(actions)

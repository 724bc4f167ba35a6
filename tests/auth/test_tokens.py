"""TokenIssuer: issued tokens verify and grant exactly what was granted; forged ones never do."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from registry.auth.keys import KeySet, libtrust_kid, load_keys
from registry.auth.scopes import Scope
from registry.auth.tokens import LEEWAY_SECONDS, REUSE_SECONDS, InvalidToken, TokenIssuer

ISSUER = "berth-issuer"
SERVICE = "berth"
ACCESS = [{"type": "repository", "name": "acme/app", "actions": ["pull"]}]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    return load_keys(tmp_path_factory.mktemp("keys"), "ES256")


@pytest.fixture
def issuer(keys: KeySet) -> TokenIssuer:
    return TokenIssuer(keys, ISSUER, SERVICE, 300)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 1,
        "iat": now,
        "jti": "x",
        "access": ACCESS,
    }
    for key, value in changes.items():
        if value is None:
            claims.pop(key, None)
        else:
            claims[key] = value
    return claims


def _sign(keys: KeySet, claims: dict[str, Any], kid: str | None = None) -> str:
    return jwt.encode(
        claims,
        keys.signing_key,
        algorithm=keys.algorithm,
        headers={"kid": kid or keys.signing_kid, "typ": "JWT"},
    )


def _refused(issuer: TokenIssuer, token: str) -> None:
    with pytest.raises(InvalidToken):
        issuer.verify(token)
    # Twice: a refusal must not be cached as an acceptance either.
    with pytest.raises(InvalidToken):
        issuer.verify(token)


# --------------------------------------------------------------------------- accepted


def test_issued_token_grants_exactly_what_was_granted(issuer: TokenIssuer, keys: KeySet) -> None:
    token, issued_at, expires_in = issuer.issue(
        "alice",
        [
            Scope("repository", "acme/app", frozenset({"pull", "push"})),
            Scope("repository", "acme/other", frozenset()),
            Scope("registry", "catalog", frozenset({"*"})),
        ],
    )
    assert expires_in == 300 and abs(issued_at - time.time()) < 5
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256" and header["kid"] == keys.signing_kid
    claims = issuer.verify(token)
    assert claims.subject == "alice"
    assert claims.access == {
        ("repository", "acme/app"): frozenset({"pull", "push"}),
        ("repository", "acme/other"): frozenset(),
        ("registry", "catalog"): frozenset({"*"}),
    }
    assert claims.allows("repository", "acme/app", frozenset({"pull"}))
    assert claims.allows("repository", "acme/app", frozenset({"pull", "push"}))
    assert not claims.allows("repository", "acme/app", frozenset({"delete"}))
    assert not claims.allows("repository", "acme/app", frozenset({"pull", "delete"}))
    assert not claims.allows("repository", "acme/other", frozenset({"pull"}))
    assert not claims.allows("repository", "acme/app2", frozenset({"pull"}))
    assert not claims.allows("repository", "globex/app", frozenset({"pull"}))
    assert claims.allows("registry", "catalog", frozenset({"*"}))


def test_payload_follows_the_docker_claim_set(issuer: TokenIssuer, keys: KeySet) -> None:
    token, _, _ = issuer.issue("bob", [Scope("repository", "a/b", frozenset({"pull"}))])
    payload = jwt.decode(
        token,
        keys.signing_key.public_key(),
        algorithms=["ES256"],
        audience=SERVICE,
        issuer=ISSUER,
    )
    assert payload["sub"] == "bob"
    assert payload["exp"] - payload["iat"] == 300
    assert payload["nbf"] <= payload["iat"]
    assert payload["jti"]
    assert payload["access"] == [{"type": "repository", "name": "a/b", "actions": ["pull"]}]


def test_anonymous_subject_round_trips(issuer: TokenIssuer) -> None:
    token, _, _ = issuer.issue("", [])
    claims = issuer.verify(token)
    assert claims.subject == "" and claims.access == {}


def test_expiry_within_leeway_is_accepted(issuer: TokenIssuer, keys: KeySet) -> None:
    now = int(time.time())
    token = _sign(keys, _claims(exp=now - LEEWAY_SECONDS + 10, iat=now - 400, nbf=now - 400))
    assert issuer.verify(token).subject == "alice"


def test_same_grants_within_moments_reuse_one_signed_token(
    issuer: TokenIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pull = [Scope("repository", "acme/app", frozenset({"pull"}))]
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)
    first, issued_at, _ = issuer.issue("alice", pull)
    # A pull storm: the same account, the same grants, seconds apart -> the same token,
    # with the issued_at it was signed at.
    monkeypatch.setattr(time, "time", lambda: now + REUSE_SECONDS - 1)
    assert issuer.issue("alice", pull) == (first, issued_at, 300)
    # Anything else that differs gets a token of its own.
    assert issuer.issue("bob", pull)[0] != first
    assert (
        issuer.issue("alice", [Scope("repository", "acme/app", frozenset({"pull", "push"}))])[0]
        != first
    )
    assert (
        issuer.issue("alice", [Scope("repository", "acme/other", frozenset({"pull"}))])[0] != first
    )
    # ... and so does the same request once the reuse window has passed.
    monkeypatch.setattr(time, "time", lambda: now + REUSE_SECONDS)
    later, later_issued_at, _ = issuer.issue("alice", pull)
    assert later != first and later_issued_at == int(now + REUSE_SECONDS)
    assert (
        jwt.decode(later, options={"verify_signature": False})["jti"]
        != jwt.decode(first, options={"verify_signature": False})["jti"]
    )


def test_a_short_ttl_shortens_the_reuse_window(
    keys: KeySet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reused token keeps at least 90% of its lifetime: with a 10 s TTL, 1 s.
    issuer = TokenIssuer(keys, ISSUER, SERVICE, 10)
    pull = [Scope("repository", "acme/app", frozenset({"pull"}))]
    now = float(int(time.time()))
    monkeypatch.setattr(time, "time", lambda: now)
    first, _, _ = issuer.issue("alice", pull)
    monkeypatch.setattr(time, "time", lambda: now + 1)
    assert issuer.issue("alice", pull)[0] != first


def test_a_new_signing_key_is_used_at_once(tmp_path: Path) -> None:
    pull = [Scope("repository", "acme/app", frozenset({"pull"}))]
    issuer = TokenIssuer(load_keys(tmp_path / "a", "ES256"), ISSUER, SERVICE, 300)
    first, _, _ = issuer.issue("alice", pull)
    issuer.keys = load_keys(tmp_path / "b", "ES256")
    second, _, _ = issuer.issue("alice", pull)
    assert (
        jwt.get_unverified_header(second)["kid"]
        == issuer.keys.signing_kid
        != (jwt.get_unverified_header(first)["kid"])
    )


def test_token_of_a_rotated_out_key_still_verifies(tmp_path: Path) -> None:
    old = load_keys(tmp_path / "old", "ES256")
    old_pub = tmp_path / "old.pub.pem"
    old_pub.write_bytes(
        old.signing_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    new = load_keys(tmp_path / "new", "ES256", verification_key_paths=[str(old_pub)])
    token, _, _ = TokenIssuer(old, ISSUER, SERVICE, 300).issue(
        "alice", [Scope("repository", "acme/app", frozenset({"pull"}))]
    )
    claims = TokenIssuer(new, ISSUER, SERVICE, 300).verify(token)
    assert claims.allows("repository", "acme/app", frozenset({"pull"}))


def test_rs256_keys_issue_and_verify(tmp_path: Path) -> None:
    keys = load_keys(tmp_path / "keys", "RS256")
    issuer = TokenIssuer(keys, ISSUER, SERVICE, 60)
    token, _, expires_in = issuer.issue(
        "alice", [Scope("repository", "acme/app", frozenset({"pull"}))]
    )
    assert expires_in == 60
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["kid"] == keys.signing_kid
    claims = issuer.verify(token)
    assert claims.access == {("repository", "acme/app"): frozenset({"pull"})}
    # The HMAC confusion attack against an RSA key is refused too.
    pem = keys.signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _refused(issuer, _hs256(pem, keys.signing_kid, _claims()))
    # And an ES256 issuer does not accept it (unknown kid).
    _refused(TokenIssuer(load_keys(tmp_path / "ec", "ES256"), ISSUER, SERVICE, 60), token)


# --------------------------------------------------------------------------- forged


def _hs256(secret: bytes, kid: str, claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def test_alg_none_is_refused(issuer: TokenIssuer, keys: KeySet) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": keys.signing_kid}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    _refused(issuer, f"{header}.{payload}.")
    # Also with PyJWT's own rendering of an unsigned token.
    _refused(
        issuer, jwt.encode(_claims(), None, algorithm="none", headers={"kid": keys.signing_kid})
    )


def test_hs256_keyed_with_the_public_key_is_refused(issuer: TokenIssuer, keys: KeySet) -> None:
    public = keys.signing_key.public_key()
    for encoding, fmt in [
        (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
    ]:
        _refused(issuer, _hs256(public.public_bytes(encoding, fmt), keys.signing_kid, _claims()))


def test_token_signed_by_another_key_with_our_kid_is_refused(
    issuer: TokenIssuer, keys: KeySet, tmp_path: Path
) -> None:
    other = load_keys(tmp_path / "other", "ES256")
    _refused(issuer, _sign(other, _claims(), kid=keys.signing_kid))


def test_token_signed_by_another_key_with_its_own_kid_is_refused(
    issuer: TokenIssuer, tmp_path: Path
) -> None:
    other = load_keys(tmp_path / "other", "ES256")
    _refused(issuer, _sign(other, _claims()))


def test_token_without_kid_is_refused(issuer: TokenIssuer, keys: KeySet) -> None:
    token = jwt.encode(_claims(), keys.signing_key, algorithm="ES256")
    _refused(issuer, token)


def test_kid_of_a_raw_key_unknown_to_us(issuer: TokenIssuer) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(
        _claims(), stranger, algorithm="ES256", headers={"kid": libtrust_kid(stranger.public_key())}
    )
    _refused(issuer, token)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"exp": -LEEWAY_SECONDS - 30, "iat": -600, "nbf": -600}, id="expired"),
        pytest.param({"nbf": LEEWAY_SECONDS + 60}, id="not-yet-valid"),
        pytest.param({"aud": "someone-else"}, id="wrong-audience"),
        pytest.param({"aud": None}, id="missing-audience"),
        pytest.param({"iss": "evil"}, id="wrong-issuer"),
        pytest.param({"iss": None}, id="missing-issuer"),
        pytest.param({"exp": None}, id="missing-exp"),
        pytest.param({"sub": None}, id="missing-sub"),
        pytest.param({"access": {"repository": "acme/app"}}, id="access-not-a-list"),
        pytest.param({"access": [{"type": "repository", "actions": ["pull"]}]}, id="entry-no-name"),
        pytest.param(
            {"access": [{"type": "repository", "name": "a/b", "actions": "pull"}]},
            id="actions-not-a-list",
        ),
    ],
)
def test_bad_claims_are_refused(issuer: TokenIssuer, keys: KeySet, changes: dict[str, Any]) -> None:
    now = int(time.time())
    relative = {"exp", "nbf", "iat"}
    resolved = {k: (now + v if k in relative and v is not None else v) for k, v in changes.items()}
    _refused(issuer, _sign(keys, _claims(**resolved)))


def test_edited_access_claim_is_refused(issuer: TokenIssuer) -> None:
    token, _, _ = issuer.issue("alice", [Scope("repository", "acme/app", frozenset({"pull"}))])
    header, payload, signature = token.split(".")
    claims = json.loads(_unb64(payload))
    claims["access"] = [
        {"type": "repository", "name": "acme/app", "actions": ["pull", "push", "delete"]},
        {"type": "repository", "name": "globex/app", "actions": ["pull"]},
    ]
    forged = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    _refused(issuer, forged)
    # The genuine token still verifies and still grants only pull.
    assert issuer.verify(token).access == {("repository", "acme/app"): frozenset({"pull"})}


def test_edited_subject_is_refused(issuer: TokenIssuer) -> None:
    token, _, _ = issuer.issue("bob", [])
    header, payload, signature = token.split(".")
    claims = json.loads(_unb64(payload))
    claims["sub"] = "admin"
    _refused(issuer, f"{header}.{_b64(json.dumps(claims).encode())}.{signature}")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "two.segments",
        "a.b.c",
        "a.b.c.d",
        "....",
        _b64(b"not json") + "." + _b64(b"{}") + ".",
        _b64(b'{"alg":"ES256"}') + "." + _b64(b"not json") + "." + _b64(b"x" * 64),
    ],
    ids=[
        "empty",
        "garbage",
        "two-segments",
        "three-junk-segments",
        "four-segments",
        "dots",
        "header-not-json",
        "payload-not-json",
    ],
)
def test_malformed_tokens_are_refused(issuer: TokenIssuer, token: str) -> None:
    _refused(issuer, token)


def test_malformed_payload_with_valid_kid_is_refused(issuer: TokenIssuer, keys: KeySet) -> None:
    header = _b64(json.dumps({"alg": "ES256", "kid": keys.signing_kid}).encode())
    _refused(issuer, f"{header}.{_b64(b'not json')}.{_b64(b'x' * 64)}")

"""Access tokens: JWTs signed by Berth's key, in the Docker token spec's claim set.

Verification pins the algorithm to the key's own (never ``none``, never an HMAC keyed with a
public key), checks iss/aud/exp/nbf with a small leeway, and caches a verified token until it
expires, so a pull storm verifies each distinct token once per process.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt

from registry.auth.keys import KeySet
from registry.auth.scopes import Scope

LEEWAY_SECONDS = 30
REUSE_SECONDS = 5
_CACHE_SIZE = 4096


class InvalidToken(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Claims:
    subject: str
    # (type, name) -> actions
    access: dict[tuple[str, str], frozenset[str]]
    expires_at: float

    def allows(self, kind: str, name: str, actions: frozenset[str]) -> bool:
        return actions <= self.access.get((kind, name), frozenset())


class TokenIssuer:
    def __init__(self, keys: KeySet, issuer: str, service: str, ttl_seconds: int) -> None:
        self.keys, self.issuer, self.service, self.ttl = keys, issuer, service, ttl_seconds
        self._verified: OrderedDict[str, Claims] = OrderedDict()
        # (signing key, subject, grants) -> (token, issued at), for reuse by ``issue``.
        self._recent: dict[tuple[str, str, tuple[Any, ...]], tuple[str, int]] = {}
        # A reused token has at least 90% of its lifetime left.
        self._reuse_seconds = min(REUSE_SECONDS, ttl_seconds // 10)

    def issue(self, subject: str, scopes: list[Scope]) -> tuple[str, int, int]:
        """A signed token granting ``scopes``; returns (token, issued_at, expires_in).

        The same subject granted the same scopes within ``REUSE_SECONDS`` gets the token
        signed for the first of them (its own issued_at: clients count the lifetime from it).
        In a pull storm every node asks for the same token at once, and signing was the
        largest cost of each answer; registries also verify one token instead of hundreds.
        """
        now = int(time.time())
        grants = tuple((s.type, s.name, tuple(sorted(s.actions))) for s in scopes)
        key = (self.keys.signing_kid, subject, grants)
        recent = self._recent.get(key)
        if recent is not None and 0 <= now - recent[1] < self._reuse_seconds:
            return recent[0], recent[1], self.ttl
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + self.ttl,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            "access": [s.claim() for s in scopes],
        }
        token = jwt.encode(
            claims,
            self.keys.signing_key,
            algorithm=self.keys.algorithm,
            headers={"kid": self.keys.signing_kid, "typ": "JWT"},
        )
        if len(self._recent) >= _CACHE_SIZE:
            self._recent.clear()
        self._recent[key] = (token, now)
        return token, now, self.ttl

    def verify(self, token: str) -> Claims:
        now = time.time()
        cached = self._verified.get(token)
        if cached is not None:
            if cached.expires_at + LEEWAY_SECONDS > now:
                return cached
            del self._verified[token]
        claims = self._decode(token)
        self._verified[token] = claims
        while len(self._verified) > _CACHE_SIZE:
            self._verified.popitem(last=False)
        return claims

    def _decode(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise InvalidToken("malformed token") from exc
        key = self.keys.verification.get(str(header.get("kid", "")))
        if key is None:
            raise InvalidToken("token signed by an unknown key")
        try:
            payload = jwt.decode(
                token,
                key.public_key,
                algorithms=[key.algorithm],
                audience=self.service,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "nbf", "iat", "iss", "aud", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(str(exc)) from exc
        access: dict[tuple[str, str], frozenset[str]] = {}
        entries = payload.get("access") or []
        if not isinstance(entries, list):
            raise InvalidToken("access claim is not a list")
        for entry in entries:
            if not isinstance(entry, dict):
                raise InvalidToken("access entry is not an object")
            kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
            if not isinstance(kind, str) or not isinstance(name, str):
                raise InvalidToken("access entry lacks type or name")
            if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
                raise InvalidToken("access entry actions are not strings")
            access[(kind, name)] = access.get((kind, name), frozenset()) | frozenset(actions)
        return Claims(str(payload["sub"]), access, float(payload["exp"]))

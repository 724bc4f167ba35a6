"""Scopes as the Docker token spec writes them: ``repository:<name>:<actions>`` and
``registry:catalog:*``; and the WWW-Authenticate challenge that asks for them."""

from __future__ import annotations

from dataclasses import dataclass

from registry.auth.access import Action

ALL_ACTIONS = frozenset({Action.PULL, Action.PUSH, Action.DELETE})
CATALOG = ("registry", "catalog")


@dataclass(frozen=True, slots=True)
class Scope:
    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"

    def claim(self) -> dict[str, object]:
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


def parse_scope(text: str) -> Scope | None:
    """One scope, or None for text that is not one (ignored, as Distribution does).

    The name may itself contain ':' only before a port in some clients' forms
    (``repository:host:5000/x:pull``); the actions are always after the last ':'.
    """
    try:
        kind, rest = text.split(":", 1)
        name, actions = rest.rsplit(":", 1)
    except ValueError:
        return None
    if not kind or not name:
        return None
    wanted = {a.strip() for a in actions.split(",") if a.strip()}
    if "*" in wanted:
        wanted = ({"*"} if kind == "registry" else set(ALL_ACTIONS)) | (wanted - {"*"})
    return Scope(kind, name, frozenset(wanted))


def parse_scopes(values: list[str]) -> list[Scope]:
    """Scopes from several ``scope`` parameters, each possibly space-separated (POST form)."""
    scopes: list[Scope] = []
    for value in values:
        for part in value.split():
            scope = parse_scope(part)
            if scope is not None:
                scopes.append(scope)
    return scopes


def challenge(realm: str, service: str, scope: str | None, error: str | None = None) -> str:
    parts = [f'realm="{realm}"', f'service="{service}"']
    if scope:
        parts.append(f'scope="{scope}"')
    if error:
        parts.append(f'error="{error}"')
    return "Bearer " + ",".join(parts)

"""The one place that decides whether a request may do an action on a repository.

Handlers never look at HTTP methods to decide permissions: ``actions_for`` maps a request to
actions once (as Distribution does), and the configured policy grants or refuses them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from starlette.requests import Request


class Action(StrEnum):
    PULL = "pull"
    PUSH = "push"
    DELETE = "delete"


# Writes need pull too: pushing clients read blobs back, and Distribution asks for both.
_METHOD_ACTIONS: dict[str, frozenset[Action]] = {
    "GET": frozenset({Action.PULL}),
    "HEAD": frozenset({Action.PULL}),
    "POST": frozenset({Action.PULL, Action.PUSH}),
    "PUT": frozenset({Action.PULL, Action.PUSH}),
    "PATCH": frozenset({Action.PULL, Action.PUSH}),
    "DELETE": frozenset({Action.DELETE}),
}


def actions_for(method: str) -> frozenset[Action]:
    return _METHOD_ACTIONS.get(method.upper(), frozenset({Action.PULL, Action.PUSH}))


class AccessPolicy(Protocol):
    async def require(self, request: Request, repository: str, actions: frozenset[Action]) -> None:
        """Raise UNAUTHORIZED or DENIED unless the caller may do ``actions`` on ``repository``."""

    async def allows(self, request: Request, repository: str, action: Action) -> bool:
        """Whether the caller may do ``action``; used where refusal is silent (mount sources)."""

    async def require_base(self, request: Request) -> None:
        """For ``GET /v2/``: raise UNAUTHORIZED unless the caller is authenticated as required."""

    async def require_catalog(self, request: Request) -> None: ...

    async def visible(self, request: Request, repositories: list[str]) -> list[str]:
        """The subset of ``repositories`` the caller may pull, for the catalog."""


class OpenAccess:
    """``auth.mode: none``: every caller may do everything. For trusted networks and tests."""

    async def require(self, request: Request, repository: str, actions: frozenset[Action]) -> None:
        return None

    async def allows(self, request: Request, repository: str, action: Action) -> bool:
        return True

    async def require_base(self, request: Request) -> None:
        return None

    async def require_catalog(self, request: Request) -> None:
        return None

    async def visible(self, request: Request, repositories: list[str]) -> list[str]:
        return repositories

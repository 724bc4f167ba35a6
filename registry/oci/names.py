"""Repository names and tags, as the distribution-spec grammar allows them."""

from __future__ import annotations

import re

from registry import errors

# distribution-spec: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
# Distribution caps names at 255 characters; clients build paths and refs from them.
MAX_NAME_LENGTH = 255


def validate_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH or not NAME_RE.fullmatch(name):
        raise errors.NAME_INVALID({"name": name[:MAX_NAME_LENGTH]})
    return name


def is_tag(reference: str) -> bool:
    return TAG_RE.fullmatch(reference) is not None


def validate_tag(tag: str) -> str:
    if not is_tag(tag):
        raise errors.TAG_INVALID({"tag": tag[:200]}, message="invalid tag")
    return tag


def tenant_of(name: str) -> str:
    """The tenant is the first path component of a repository name."""
    return name.split("/", 1)[0]

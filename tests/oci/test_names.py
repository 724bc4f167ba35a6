"""registry.oci.names: the distribution-spec grammar for repository names and tags."""

from __future__ import annotations

import pytest

from registry.errors import RegistryError
from registry.oci.names import (
    MAX_NAME_LENGTH,
    is_tag,
    tenant_of,
    validate_name,
    validate_tag,
)


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "0",
        "ubuntu",
        "library/ubuntu",
        "acme/team/app",
        "a/b/c/d/e/f",
        "a.b",
        "a_b",
        "a__b",
        "a-b",
        "a--b",
        "a---b",
        "a.b_c__d-e--f",
        "acme/my.app_v2__x-y",
        "1/2/3",
        "a" * MAX_NAME_LENGTH,
        "/".join(["ab"] * 85),  # 254 characters across many components
    ],
)
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "A",
        "Library/ubuntu",
        "library/Ubuntu",
        "-a",
        "a-",
        ".a",
        "a.",
        "_a",
        "a_",
        "__a",
        "a__",
        "/a",
        "a/",
        "a//b",
        "a..b",
        "a.-b",
        "a-.b",
        "a._b",
        "a___b",
        "a+b",
        "a b",
        "a:b",
        "a@b",
        "a/-b",
        "a/.b",
        "a/b.",
        "a/../b",
        "./a",
        "a\n",
        "caf\u00e9",
        "a" * (MAX_NAME_LENGTH + 1),
        "/".join(["ab"] * 86),  # 257 characters, every component valid
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(RegistryError) as info:
        validate_name(name)
    assert info.value.code.code == "NAME_INVALID"
    assert info.value.status == 400


def test_invalid_name_detail_is_truncated() -> None:
    with pytest.raises(RegistryError) as info:
        validate_name("a" * 10_000)
    assert len(info.value.detail["name"]) == MAX_NAME_LENGTH


@pytest.mark.parametrize(
    "tag",
    ["latest", "v1.0.0", "1", "_", "_private", "A", "Latest", "a-b_c.D", "sha256", "a" * 128],
)
def test_valid_tags(tag: str) -> None:
    assert is_tag(tag)
    assert validate_tag(tag) == tag


@pytest.mark.parametrize(
    "tag",
    [
        "",
        ".a",
        "-a",
        "a" * 129,
        "a/b",
        "a:b",
        "sha256:abc",
        "a+b",
        "a b",
        "a@b",
        "a\n",
        "\u00e9",
    ],
)
def test_invalid_tags(tag: str) -> None:
    assert not is_tag(tag)
    with pytest.raises(RegistryError) as info:
        validate_tag(tag)
    assert info.value.code.code == "TAG_INVALID"
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("name", "tenant"),
    [("acme", "acme"), ("acme/app", "acme"), ("acme/team/app", "acme"), ("a_b/c", "a_b")],
)
def test_tenant_of(name: str, tenant: str) -> None:
    assert tenant_of(name) == tenant

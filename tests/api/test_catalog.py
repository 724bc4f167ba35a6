"""GET /v2/_catalog: every repository, sorted, paginated with n/last and a Link header."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import Image, assert_error, assert_intact, expect, push_blob
from tests.api.test_tags import next_link

NAMES = ["zeta/app", "alpha/app", "alpha/app/sub", "alpha-b/app", "alpha.c/x", "m/n/o/p"]


@pytest.fixture(scope="module")
def catalog_repos(client: httpx.Client) -> list[str]:
    prefixed = [f"catalog{name}" if "/" not in name else f"cat-{name}" for name in NAMES]
    for name in prefixed:
        push_blob(client, name, name.encode())
    return prefixed


def full_catalog(client: httpx.Client) -> list[str]:
    resp = expect(client.get("/v2/_catalog"), 200)
    assert "Link" not in resp.headers
    return resp.json()["repositories"]


def test_catalog_is_sorted_and_complete(
    client: httpx.Client, catalog_repos: list[str], known_good: Image
) -> None:
    names = full_catalog(client)
    assert names == sorted(names)
    assert len(names) == len(set(names))
    assert set(catalog_repos) <= set(names)
    assert known_good.repo in names


@pytest.mark.parametrize("n", [1, 3, 7])
def test_catalog_pagination(client: httpx.Client, catalog_repos: list[str], n: int) -> None:
    expected = full_catalog(client)
    url: str | None = f"/v2/_catalog?n={n}"
    seen: list[str] = []
    while url is not None:
        resp = expect(client.get(url), 200)
        page = resp.json()["repositories"]
        assert len(page) <= n
        seen.extend(page)
        url = next_link(resp)
        if url is not None:
            assert len(page) == n
            assert "/v2/_catalog?" in url
        assert len(seen) <= len(expected)
    assert seen == expected


def test_catalog_last(client: httpx.Client, catalog_repos: list[str]) -> None:
    expected = full_catalog(client)
    last = catalog_repos[1]
    resp = expect(client.get("/v2/_catalog", params={"last": last, "n": 2}), 200)
    assert resp.json()["repositories"] == [r for r in expected if r > last][:2]


def test_catalog_n_zero(client: httpx.Client, catalog_repos: list[str]) -> None:
    resp = expect(client.get("/v2/_catalog", params={"n": 0}), 200)
    assert resp.json()["repositories"] == []
    assert "Link" not in resp.headers


@pytest.mark.parametrize("n", ["-5", "many"])
def test_catalog_invalid_n(client: httpx.Client, known_good: Image, n: str) -> None:
    assert_error(client.get("/v2/_catalog", params={"n": n}), 400)
    assert_intact(client, known_good)

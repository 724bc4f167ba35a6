"""GET /v2/<name>/tags/list: sorted, paginated with n/last and a Link header."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.api.conftest import (
    OCI_MANIFEST,
    Image,
    assert_error,
    assert_intact,
    expect,
    make_image,
    push_image,
    push_manifest,
)

TAGS = ["v10", "v2", "latest", "Beta", "alpha", "1.0", "v1", "_x", "a-b", "a.b", "A"]
LINK_RE = re.compile(r'<([^>]+)>;\s*rel="next"')


@pytest.fixture(scope="module")
def tagged(client: httpx.Client, new_repo) -> str:
    repo = new_repo()
    image = make_image(repo, TAGS[0], seed="tags")
    push_image(client, image)
    for tag in TAGS[1:]:
        push_manifest(client, repo, tag, image.manifest, OCI_MANIFEST)
    return repo


def next_link(resp: httpx.Response) -> str | None:
    header = resp.headers.get("Link")
    if header is None:
        return None
    m = LINK_RE.search(header)
    assert m, f"malformed Link header {header!r}"
    return m.group(1)


def test_tags_are_sorted_lexically(client: httpx.Client, tagged: str) -> None:
    resp = expect(client.get(f"/v2/{tagged}/tags/list"), 200)
    assert resp.json() == {"name": tagged, "tags": sorted(TAGS)}
    assert "Link" not in resp.headers


@pytest.mark.parametrize("n", [1, 2, 3, 5, len(TAGS) - 1])
def test_pagination_follows_link(client: httpx.Client, tagged: str, n: int) -> None:
    url: str | None = f"/v2/{tagged}/tags/list?n={n}"
    pages = []
    while url is not None:
        resp = expect(client.get(url), 200)
        page = resp.json()["tags"]
        assert len(page) <= n
        pages.append(page)
        url = next_link(resp)
        if url is not None:
            assert len(page) == n
            assert url.startswith(f"/v2/{tagged}/tags/list?") or f"/v2/{tagged}/tags/list?" in url
        assert len(pages) <= len(TAGS)
    assert [t for page in pages for t in page] == sorted(TAGS)


def test_n_larger_than_the_list(client: httpx.Client, tagged: str) -> None:
    resp = expect(client.get(f"/v2/{tagged}/tags/list", params={"n": 1000}), 200)
    assert resp.json()["tags"] == sorted(TAGS)
    assert "Link" not in resp.headers


def test_n_equal_to_the_list(client: httpx.Client, tagged: str) -> None:
    resp = expect(client.get(f"/v2/{tagged}/tags/list", params={"n": len(TAGS)}), 200)
    assert resp.json()["tags"] == sorted(TAGS)
    assert "Link" not in resp.headers


def test_last_without_n(client: httpx.Client, tagged: str) -> None:
    resp = expect(client.get(f"/v2/{tagged}/tags/list", params={"last": "latest"}), 200)
    assert resp.json()["tags"] == [t for t in sorted(TAGS) if t > "latest"]


@pytest.mark.parametrize("last", ["b", "latest0", "zzz", "0"])
def test_last_that_is_not_a_tag(client: httpx.Client, tagged: str, last: str) -> None:
    resp = expect(client.get(f"/v2/{tagged}/tags/list", params={"last": last}), 200)
    assert resp.json()["tags"] == [t for t in sorted(TAGS) if t > last]


def test_last_and_n(client: httpx.Client, tagged: str) -> None:
    resp = expect(client.get(f"/v2/{tagged}/tags/list", params={"n": 2, "last": "a-b"}), 200)
    assert resp.json()["tags"] == [t for t in sorted(TAGS) if t > "a-b"][:2]


def test_n_zero_is_an_empty_list_without_link(
    client: httpx.Client, tagged: str, known_good: Image
) -> None:
    resp = expect(client.get(f"/v2/{tagged}/tags/list", params={"n": 0}), 200)
    assert resp.json()["tags"] == []
    assert "Link" not in resp.headers
    assert_intact(client, known_good)


@pytest.mark.parametrize("n", ["-1", "abc", "1.5", "0x10"])
def test_invalid_n_is_400(client: httpx.Client, tagged: str, known_good: Image, n: str) -> None:
    assert_error(client.get(f"/v2/{tagged}/tags/list", params={"n": n}), 400)
    assert_intact(client, known_good)


def test_unknown_repository(client: httpx.Client, repo: str, known_good: Image) -> None:
    assert_error(client.get(f"/v2/{repo}/tags/list"), 404, "NAME_UNKNOWN")
    assert_error(client.head(f"/v2/{repo}/tags/list"), 404)
    assert_intact(client, known_good)


def test_repository_without_tags(client: httpx.Client, repo: str) -> None:
    image = make_image(repo, None, seed="untagged")
    push_image(client, image)
    resp = expect(client.get(f"/v2/{repo}/tags/list"), 200)
    assert resp.json()["name"] == repo
    assert resp.json()["tags"] in ([], None)

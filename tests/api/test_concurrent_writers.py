"""Many writers on one tag, one blob and one new repository at once, on every backend.

test_concurrency.py races two clients; these race eight, which on PostgreSQL means eight
transactions meeting on one unique index or one row lock (tests/db/test_concurrent_writers.py
shows the same at the store level).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.api.conftest import (
    OCI_MANIFEST,
    assert_intact,
    deterministic_bytes,
    digest_of,
    expect,
    get_manifest,
    make_image,
    push_image,
)
from tests.support.processes import RegistryProcess

PARALLEL = 8


def together(count: int, work: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    """Run ``work(i)`` on ``count`` threads released at the same moment."""
    barrier = threading.Barrier(count)

    def run(index: int) -> httpx.Response:
        barrier.wait(30)
        return work(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_parallel_puts_of_different_manifests_to_one_tag(
    registry: RegistryProcess, client: httpx.Client, repo: str
) -> None:
    images = [make_image(repo, None, seed=f"tag-race-{i}", layers=1) for i in range(PARALLEL)]
    for image in images:
        push_image(client, image)  # by digest: blobs and manifests are in place

    def put(index: int) -> httpx.Response:
        with httpx.Client(base_url=registry.url, timeout=60) as own:
            return own.put(
                f"/v2/{repo}/manifests/race",
                content=images[index].manifest,
                headers={"Content-Type": OCI_MANIFEST},
            )

    answers = together(PARALLEL, put)
    assert [r.status_code for r in answers] == [201] * PARALLEL
    got = expect(get_manifest(client, repo, "race"), 200)
    assert got.content in {image.manifest for image in images}
    assert got.headers["Docker-Content-Digest"] == digest_of(got.content)
    assert expect(client.get(f"/v2/{repo}/tags/list"), 200).json()["tags"] == ["race"]
    for image in images:
        assert_intact(client, image)


def test_parallel_first_pushes_into_one_new_repository(
    registry: RegistryProcess, client: httpx.Client, repo: str
) -> None:
    """Every push creates the repository if it is missing: they must agree on one."""
    images = [make_image(repo, f"v{i}", seed="first-push", layers=2) for i in range(PARALLEL)]

    def push(index: int) -> httpx.Response:
        with httpx.Client(base_url=registry.url, timeout=60) as own:
            return push_image(own, images[index])

    answers = together(PARALLEL, push)
    assert {r.headers["Docker-Content-Digest"] for r in answers} == {images[0].digest}
    tags = expect(client.get(f"/v2/{repo}/tags/list"), 200).json()["tags"]
    assert tags == sorted(f"v{i}" for i in range(PARALLEL))
    catalog = expect(client.get("/v2/_catalog"), 200).json()["repositories"]
    assert catalog.count(repo) == 1
    for image in images:
        assert_intact(client, image)


def test_parallel_monolithic_uploads_of_one_blob_released_together(
    registry: RegistryProcess, client: httpx.Client, new_repo: Callable[..., str]
) -> None:
    data = deterministic_bytes("blob-race", 150_000)
    digest = digest_of(data)
    tenant = new_repo().split("/")[0]
    repos = [new_repo(tenant, f"r{i % 2}") for i in range(PARALLEL)]

    def upload(index: int) -> httpx.Response:
        with httpx.Client(base_url=registry.url, timeout=60) as own:
            return own.post(
                f"/v2/{repos[index]}/blobs/uploads/", params={"digest": digest}, content=data
            )

    answers = together(PARALLEL, upload)
    assert [r.status_code for r in answers] == [201] * PARALLEL
    for repo in set(repos):
        assert expect(client.get(f"/v2/{repo}/blobs/{digest}"), 200).content == data

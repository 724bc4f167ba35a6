"""Parallel pushes of the same content and to the same tag."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.api.conftest import (
    OCI_MANIFEST,
    assert_intact,
    describe,
    deterministic_bytes,
    digest_of,
    expect,
    get_manifest,
    make_image,
    push_blob,
    push_image,
)
from tests.support.processes import RegistryProcess

PARALLEL = 8


def chunked_push(base_url: str, repo: str, data: bytes) -> str:
    """POST, two PATCHes and a PUT on a client of its own."""
    with httpx.Client(base_url=base_url, timeout=60) as client:
        resp = expect(client.post(f"/v2/{repo}/blobs/uploads/"), 202)
        half = len(data) // 2
        resp = expect(client.patch(resp.headers["Location"], content=data[:half]), 202)
        resp = expect(client.patch(resp.headers["Location"], content=data[half:]), 202)
        done = client.put(resp.headers["Location"], params={"digest": digest_of(data)})
        expect(done, 201)
        return done.headers["Docker-Content-Digest"]


@pytest.mark.parametrize("same_repo", [True, False], ids=["same-repo", "different-repos"])
def test_parallel_uploads_of_the_same_blob(
    registry: RegistryProcess, client: httpx.Client, new_repo: Callable[..., str], same_repo: bool
) -> None:
    data = deterministic_bytes(f"parallel-{same_repo}", 200_000)
    tenant = new_repo().split("/")[0]
    repos = [new_repo(tenant, "shared" if same_repo else f"r{i}") for i in range(PARALLEL)]
    with ThreadPoolExecutor(PARALLEL) as pool:
        digests = list(pool.map(lambda r: chunked_push(registry.url, r, data), repos))
    assert digests == [digest_of(data)] * PARALLEL
    for repo in set(repos):
        resp = expect(client.get(f"/v2/{repo}/blobs/{digest_of(data)}"), 200)
        assert resp.content == data


def test_parallel_monolithic_uploads_of_the_same_blob(
    registry: RegistryProcess, client: httpx.Client, repo: str
) -> None:
    data = deterministic_bytes("parallel-monolithic", 100_000)

    def push(_: int) -> int:
        with httpx.Client(base_url=registry.url, timeout=60) as own:
            return own.post(
                f"/v2/{repo}/blobs/uploads/", params={"digest": digest_of(data)}, content=data
            ).status_code

    with ThreadPoolExecutor(PARALLEL) as pool:
        assert list(pool.map(push, range(PARALLEL))) == [201] * PARALLEL
    assert expect(client.get(f"/v2/{repo}/blobs/{digest_of(data)}"), 200).content == data


@pytest.mark.parametrize("round_", range(3))
def test_parallel_puts_to_the_same_tag(
    registry: RegistryProcess, client: httpx.Client, repo: str, round_: int
) -> None:
    images = [make_image(repo, None, seed=f"race-{round_}-{i}", layers=1) for i in range(2)]
    for image in images:
        push_image(client, image)  # by digest: blobs and manifests are in place

    def put(image_index: int) -> int:
        with httpx.Client(base_url=registry.url, timeout=60) as own:
            return own.put(
                f"/v2/{repo}/manifests/race",
                content=images[image_index].manifest,
                headers={"Content-Type": OCI_MANIFEST},
            ).status_code

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(put, range(2))) == [201, 201]

    got = expect(get_manifest(client, repo, "race"), 200)
    assert got.content in (images[0].manifest, images[1].manifest)
    assert got.headers["Docker-Content-Digest"] == digest_of(got.content)
    head = expect(get_manifest(client, repo, "race", method="HEAD"), 200)
    assert head.headers["Docker-Content-Digest"] == got.headers["Docker-Content-Digest"]
    tags = expect(client.get(f"/v2/{repo}/tags/list"), 200).json()["tags"]
    assert tags == ["race"]
    for image in images:
        assert_intact(client, image)


def test_parallel_pushes_of_whole_images_sharing_layers(
    registry: RegistryProcess, client: httpx.Client, new_repo: Callable[..., str]
) -> None:
    tenant = new_repo().split("/")[0]
    repos = [new_repo(tenant, f"img{i}") for i in range(PARALLEL)]
    images = [make_image(r, "v1", seed="shared-layers") for r in repos]

    def push(index: int) -> str:
        with httpx.Client(base_url=registry.url, timeout=60) as own:
            return push_image(own, images[index]).headers["Docker-Content-Digest"]

    with ThreadPoolExecutor(PARALLEL) as pool:
        assert set(pool.map(push, range(PARALLEL))) == {images[0].digest}
    for image in images:
        assert_intact(client, image)


def test_blob_push_while_reading(
    registry: RegistryProcess, client: httpx.Client, repo: str
) -> None:
    data = deterministic_bytes("read-while-push", 300_000)
    digest = push_blob(client, repo, data)

    def read(_: int) -> bytes:
        with httpx.Client(base_url=registry.url, timeout=60) as own:
            return expect(own.get(f"/v2/{repo}/blobs/{digest}"), 200).content

    def repush(_: int) -> str:
        return chunked_push(registry.url, repo, data)

    with ThreadPoolExecutor(PARALLEL) as pool:
        reads = [pool.submit(read, i) for i in range(PARALLEL // 2)]
        pushes = [pool.submit(repush, i) for i in range(PARALLEL // 2)]
        assert all(f.result() == data for f in reads)
        assert all(f.result() == digest for f in pushes)


def test_concurrent_patches_to_one_upload_do_not_mix(
    registry: RegistryProcess, client: httpx.Client, repo: str
) -> None:
    """Two clients racing on one session: the chunk answered 202 is the one that is kept."""
    slow_data = deterministic_bytes("racer-slow", 1024 * 1024)
    fast_data = deterministic_bytes("racer-fast", 1024 * 1024)
    location = expect(client.post(f"/v2/{repo}/blobs/uploads/"), 202).headers["Location"]
    half_sent, fast_done = threading.Event(), threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield slow_data[: len(slow_data) // 2]
        half_sent.set()
        fast_done.wait(30)
        yield slow_data[len(slow_data) // 2 :]

    def slow_patch() -> httpx.Response:
        with httpx.Client(base_url=registry.url, timeout=60) as own:
            return own.patch(location, content=slow_body())

    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(slow_patch)
        assert half_sent.wait(30)
        time.sleep(0.5)  # the first half reaches the server's writer
        with httpx.Client(base_url=registry.url, timeout=60) as own:
            fast = own.patch(location, content=fast_data)
        fast_done.set()
        slow_answer = slow.result()

    # Whichever wins, the registry's word and its bytes must agree.
    answers = {"fast": (fast, fast_data), "slow": (slow_answer, slow_data)}
    accepted = [data for resp, data in answers.values() if resp.status_code == 202]
    for resp, _ in answers.values():
        assert resp.status_code in (202, 400, 409, 416), describe(resp)
    assert len(accepted) == 1, [describe(r) for r, _ in answers.values()]
    status = expect(client.get(location), 204)
    assert status.headers["Range"] == f"0-{len(accepted[0]) - 1}"
    done = client.put(location, params={"digest": digest_of(accepted[0])})
    assert done.status_code == 201, describe(done)
    blob = expect(client.get(f"/v2/{repo}/blobs/{digest_of(accepted[0])}"), 200)
    assert blob.content == accepted[0]

"""Uploads outlive their connection and their server process."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import (
    Image,
    assert_error,
    assert_intact,
    deterministic_bytes,
    digest_of,
    expect,
    start_upload,
)
from tests.support.processes import RegistryProcess, start_registry

DATA = deterministic_bytes("resume", 300_000)
DIGEST = digest_of(DATA)


def test_upload_continues_after_server_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "restart"
    first = start_registry(data_dir)
    try:
        with httpx.Client(base_url=first.url, timeout=30) as client:
            location = start_upload(client, "resume/app")
            resp = client.patch(
                location, content=DATA[:100_000], headers={"Content-Range": "0-99999"}
            )
            expect(resp, 202)
            location = resp.headers["Location"]
    finally:
        first.stop()

    second = start_registry(data_dir)
    try:
        with httpx.Client(base_url=second.url, timeout=30) as client:
            status = expect(client.get(location), 204)
            assert status.headers["Range"] == "0-99999"
            resp = client.patch(
                status.headers["Location"],
                content=DATA[100_000:200_000],
                headers={"Content-Range": "100000-199999"},
            )
            expect(resp, 202)
            assert resp.headers["Range"] == "0-199999"
            done = client.put(
                resp.headers["Location"], params={"digest": DIGEST}, content=DATA[200_000:]
            )
            expect(done, 201)
            blob = expect(client.get(f"/v2/resume/app/blobs/{DIGEST}"), 200)
            assert blob.content == DATA
    finally:
        second.stop()


@pytest.mark.parametrize("with_range", [True, False], ids=["content-range", "no-content-range"])
def test_client_gone_mid_patch_leaves_no_partial_blob(
    registry: RegistryProcess, client: httpx.Client, repo: str, known_good: Image, with_range: bool
) -> None:
    location = start_upload(client, repo)
    resp = expect(client.patch(location, content=DATA[:100_000]), 202)
    location = resp.headers["Location"]

    # A PATCH that promises 1 MiB, sends half, and hangs up.
    promised = 1024 * 1024
    partial = deterministic_bytes("abandoned", promised // 2)
    head = (
        f"PATCH {location} HTTP/1.1\r\nHost: {registry.address}\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Length: {promised}\r\n\r\n"
    ).encode()
    with socket.create_connection((registry.host, registry.port), timeout=10) as sock:
        sock.sendall(head + partial)
        time.sleep(0.3)  # let the server start consuming the body
    time.sleep(0.5)  # and notice that the client is gone

    for digest in (digest_of(DATA[:100_000] + partial), digest_of(partial), DIGEST):
        assert_error(client.head(f"/v2/{repo}/blobs/{digest}"), 404)
    status = expect(client.get(location), 204)
    assert status.headers["Range"] == "0-99999", status.headers

    # The upload goes on from the last recorded offset.
    headers = {"Content-Range": f"100000-{len(DATA) - 1}"} if with_range else {}
    resp = client.patch(status.headers["Location"], content=DATA[100_000:], headers=headers)
    expect(resp, 202)
    expect(client.put(resp.headers["Location"], params={"digest": DIGEST}), 201)
    blob = expect(client.get(f"/v2/{repo}/blobs/{DIGEST}"), 200)
    assert blob.content == DATA
    assert_intact(client, known_good)

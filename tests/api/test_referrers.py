"""GET /v2/<name>/referrers/<digest> and the OCI-Subject answer to pushes with a subject."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.api.conftest import (
    OCI_CONFIG,
    OCI_INDEX,
    Image,
    assert_error,
    assert_intact,
    digest_of,
    expect,
    make_image,
    make_index,
    push_image,
)

SBOM = "application/vnd.example.sbom.v1"
SIGNATURE = "application/vnd.example.signature.v1"


def referrers(client: httpx.Client, repo: str, digest: str, **params: str) -> httpx.Response:
    return client.get(f"/v2/{repo}/referrers/{digest}", params=params)


def listed(resp: httpx.Response) -> dict[str, dict]:
    expect(resp, 200)
    assert resp.headers["Content-Type"].split(";")[0] == OCI_INDEX
    body = resp.json()
    assert body["schemaVersion"] == 2
    assert body["mediaType"] == OCI_INDEX
    return {d["digest"]: d for d in body["manifests"]}


def test_referrers(client: httpx.Client, repo: str) -> None:
    subject = make_image(repo, "app", seed="subject")
    push_image(client, subject)
    sbom = make_image(
        repo,
        None,
        seed="sbom",
        empty_config=True,
        artifact_type=SBOM,
        subject=subject,
        annotations={"org.example.sbom.format": "json"},
    )
    signature = make_image(
        repo, None, seed="signature", empty_config=True, artifact_type=SIGNATURE, subject=subject
    )
    # No artifactType: the listing shows the config's media type instead.
    plain = make_image(repo, None, seed="plain-referrer", subject=subject)
    unrelated = make_image(repo, None, seed="unrelated", artifact_type=SBOM, empty_config=True)
    for image in (sbom, signature, plain):
        resp = push_image(client, image)
        assert resp.headers["OCI-Subject"] == subject.digest
    assert "OCI-Subject" not in push_image(client, unrelated).headers

    found = listed(referrers(client, repo, subject.digest))
    assert set(found) == {sbom.digest, signature.digest, plain.digest}
    assert found[sbom.digest] == {
        "mediaType": sbom.media_type,
        "digest": sbom.digest,
        "size": len(sbom.manifest),
        "artifactType": SBOM,
        "annotations": {"org.example.sbom.format": "json"},
    }
    assert found[signature.digest]["artifactType"] == SIGNATURE
    assert found[plain.digest]["artifactType"] == OCI_CONFIG

    resp = referrers(client, repo, subject.digest, artifactType=SBOM)
    assert set(listed(resp)) == {sbom.digest}
    assert resp.headers["OCI-Filters-Applied"] == "artifactType"
    assert "OCI-Filters-Applied" not in referrers(client, repo, subject.digest).headers

    resp = referrers(client, repo, subject.digest, artifactType="application/vnd.example.none")
    assert listed(resp) == {}


def test_referrer_pushed_before_its_subject(client: httpx.Client, repo: str) -> None:
    subject = make_image(repo, "late", seed="late-subject")
    early = make_image(
        repo, None, seed="early", artifact_type=SBOM, empty_config=True, subject=subject
    )
    resp = push_image(client, early)
    assert resp.headers["OCI-Subject"] == subject.digest
    assert set(listed(referrers(client, repo, subject.digest))) == {early.digest}
    push_image(client, subject)
    assert set(listed(referrers(client, repo, subject.digest))) == {early.digest}


def test_index_as_referrer(client: httpx.Client, repo: str) -> None:
    subject = make_image(repo, "base", seed="index-subject")
    push_image(client, subject)
    child = make_image(repo, None, seed="index-referrer-child")
    index = make_index(repo, None, [child], subject=subject, annotations={"kind": "attestations"})
    resp = push_image(client, index)
    assert resp.headers["OCI-Subject"] == subject.digest
    found = listed(referrers(client, repo, subject.digest))
    assert found[index.digest]["mediaType"] == OCI_INDEX
    assert found[index.digest]["annotations"] == {"kind": "attestations"}
    # An index without artifactType is listed without one.
    assert "artifactType" not in found[index.digest]


def test_deleted_referrer_leaves_the_list(client: httpx.Client, repo: str) -> None:
    subject = make_image(repo, "s", seed="delete-subject")
    push_image(client, subject)
    referrer = make_image(
        repo, None, seed="deleted-ref", artifact_type=SBOM, empty_config=True, subject=subject
    )
    push_image(client, referrer)
    assert set(listed(referrers(client, repo, subject.digest))) == {referrer.digest}
    expect(client.delete(f"/v2/{repo}/manifests/{referrer.digest}"), 202)
    assert listed(referrers(client, repo, subject.digest)) == {}


def test_referrers_stay_in_their_repository(
    client: httpx.Client, new_repo: Callable[..., str]
) -> None:
    first, second = new_repo(), new_repo()
    subject = make_image(first, "s", seed="scoped-subject")
    push_image(client, subject)
    push_image(client, make_image(first, None, seed="scoped", subject=subject))
    assert len(listed(referrers(client, first, subject.digest))) == 1
    assert listed(referrers(client, second, subject.digest)) == {}


def test_unknown_subject_is_an_empty_list(
    client: httpx.Client, repo: str, known_good: Image
) -> None:
    assert listed(referrers(client, repo, digest_of(b"unknown subject"))) == {}
    assert listed(referrers(client, known_good.repo, digest_of(b"unknown subject"))) == {}
    assert listed(referrers(client, known_good.repo, known_good.digest)) == {}


@pytest.mark.parametrize(
    "digest", ["sha256:abc", "notadigest", "md5:" + "0" * 32, "sha256:" + "G" * 64]
)
def test_invalid_digest_is_400(client: httpx.Client, known_good: Image, digest: str) -> None:
    assert_error(referrers(client, known_good.repo, digest), 400, "DIGEST_INVALID")
    assert_intact(client, known_good)

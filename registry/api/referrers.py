"""GET /v2/<name>/referrers/<digest>: an OCI image index of the manifests whose subject it is."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from registry.api.base import authorized_repository, json_response, path_digest, services
from registry.db.manifests import ManifestStore
from registry.db.repositories import RepositoryStore
from registry.oci import mediatypes as mt


async def list_referrers(request: Request) -> Response:
    name = await authorized_repository(request)
    subject = path_digest(request)
    artifact_type = request.query_params.get("artifactType") or None
    referrers = []
    async with services(request).db.read() as session:
        repo_id = await RepositoryStore(session).get_id(name)
        if repo_id is not None:
            referrers = await ManifestStore(session).referrers(repo_id, str(subject), artifact_type)
    manifests = []
    for r in referrers:
        descriptor: dict[str, object] = {
            "mediaType": r.media_type,
            "digest": r.digest,
            "size": r.size,
        }
        if r.artifact_type:
            descriptor["artifactType"] = r.artifact_type
        if r.annotations:
            descriptor["annotations"] = r.annotations
        manifests.append(descriptor)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
    # An unknown subject (or repository) is an empty index, never a 404, as the spec requires.
    return json_response(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests},
        headers=headers,
        media_type=mt.OCI_INDEX,
    )

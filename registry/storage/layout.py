"""Where everything lives in storage; every storage path is computed here and nowhere else.

    <root>/
      blobs/<algorithm>/<first two hex digits>/<hex>/data   content, once per digest
      uploads/<upload id>/data                             an upload in progress

Repositories never appear in storage: which repository may read which blob is metadata
(db.models.RepositoryBlob), so no repository name can ever shape, or escape, a storage path.
Manifests are metadata too: their bytes are kept in the database.
"""

from __future__ import annotations

import re

from registry.oci.digest import Digest

_UPLOAD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def blob_data(digest: Digest) -> str:
    return f"/blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}/data"


def blob_dir(digest: Digest) -> str:
    return f"/blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"


def upload_dir(upload_id: str) -> str:
    if not is_upload_id(upload_id):
        raise ValueError(f"invalid upload id {upload_id!r}")
    return f"/uploads/{upload_id}"


def upload_data(upload_id: str) -> str:
    return f"{upload_dir(upload_id)}/data"


def is_upload_id(value: str) -> bool:
    return _UPLOAD_ID.fullmatch(value) is not None

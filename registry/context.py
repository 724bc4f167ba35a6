"""The long-lived services a request handler may use, built once per process by app.py."""

from __future__ import annotations

from dataclasses import dataclass, field

from registry.auth.access import AccessPolicy
from registry.auth.login import Authenticator
from registry.auth.policy import GrantCache
from registry.auth.tokens import TokenIssuer
from registry.cache import ContentCache
from registry.db.session import Database
from registry.settings import Settings
from registry.storage.blobs import BlobContent
from registry.storage.driver import StorageDriver
from registry.storage.uploads import UploadData


@dataclass
class Services:
    settings: Settings
    db: Database
    driver: StorageDriver
    blobs: BlobContent
    uploads: UploadData
    access: AccessPolicy
    # Set when auth.mode is "token".
    tokens: TokenIssuer | None = None
    authenticator: Authenticator | None = None
    manifests: ContentCache = field(default_factory=ContentCache)
    grants: GrantCache = field(default_factory=GrantCache)

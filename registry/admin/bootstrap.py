"""First start: the site admin, so the README's first command gives a usable, secured registry."""

from __future__ import annotations

import os
import sys

from registry.auth import audit
from registry.auth.keys import load_keys
from registry.auth.passwords import generate_secret, hash_password
from registry.db.identities import IdentityStore
from registry.db.session import Database
from registry.settings import Settings

ADMIN_PASSWORD_ENV = "BERTH_ADMIN_PASSWORD"


async def bootstrap(settings: Settings) -> None:
    """Create the signing keys and, in a registry with no users yet, the site admin."""
    auth = settings.auth
    load_keys(settings.keys_path, auth.algorithm, auth.signing_key, auth.verification_keys)
    db = Database(settings.database_url)
    try:
        async with db.write() as session:
            store = IdentityStore(session)
            if await store.users():
                return
            password = os.environ.get(ADMIN_PASSWORD_ENV) or ""
            generated = not password
            if generated:
                password = generate_secret(24)
            await store.create_user(auth.bootstrap_admin, hash_password(password), is_admin=True)
    finally:
        await db.dispose()
    audit.record("user.create", "success", actor="bootstrap", target=auth.bootstrap_admin)
    if generated:
        print(
            f"Created the site admin {auth.bootstrap_admin!r} with password: {password}\n"
            f"(shown once; set {ADMIN_PASSWORD_ENV} before the first start to choose it)",
            file=sys.stderr,
            flush=True,
        )
    else:
        print(
            f"Created the site admin {auth.bootstrap_admin!r} with the password from "
            f"{ADMIN_PASSWORD_ENV}.",
            file=sys.stderr,
            flush=True,
        )

"""identity generation

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 08:00:00.000000

A one-row counter that triggers raise on every INSERT, UPDATE or DELETE (and TRUNCATE, on
PostgreSQL) of the identity tables, so a process can tell with one indexed read whether what
it decided from them still holds (models.IdentityGeneration). Triggers, not application code,
so that every writer counts: the admin API, the CLI, another replica, an operator's SQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# As models.IDENTITY_TABLES at this revision (a migration must not change with the models).
TABLES = ("tenants", "users", "memberships", "robots")
BUMP = "UPDATE identity_generation SET value = value + 1 WHERE id = 1"


def upgrade() -> None:
    op.create_table(
        "identity_generation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_generation")),
    )
    op.execute("INSERT INTO identity_generation (id, value) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION bump_identity_generation() RETURNS trigger LANGUAGE plpgsql AS"
            f" $$ BEGIN {BUMP}; RETURN NULL; END $$"
        )
        for table in TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_identity_generation"
                f" AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}"
                " FOR EACH STATEMENT EXECUTE FUNCTION bump_identity_generation()"
            )
        return
    for table in TABLES:
        for event in ("INSERT", "UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_identity_generation_{event.lower()}"
                f" AFTER {event} ON {table} BEGIN {BUMP}; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER {table}_identity_generation ON {table}")
        op.execute("DROP FUNCTION bump_identity_generation()")
    else:
        for table in TABLES:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER {table}_identity_generation_{event}")
    op.drop_table("identity_generation")

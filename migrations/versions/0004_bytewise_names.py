"""bytewise order of repository and tag names on PostgreSQL

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 10:12:00.000000

The catalog and tag lists are ordered, and paginated with ``last``, by the database. SQLite
compares bytewise already; PostgreSQL uses the database's default collation unless a column
says otherwise, so both name columns get the "C" collation there (models.listed_name).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = [("repositories", 255), ("tags", 128)]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, length in COLUMNS:
        op.alter_column(
            table,
            "name",
            type_=sa.String(length, collation="C"),
            existing_type=sa.String(length),
            existing_nullable=False,
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, length in COLUMNS:
        # Without COLLATE, ALTER ... TYPE gives the column the database's default again.
        op.alter_column(
            table,
            "name",
            type_=sa.String(length),
            existing_type=sa.String(length, collation="C"),
            existing_nullable=False,
        )

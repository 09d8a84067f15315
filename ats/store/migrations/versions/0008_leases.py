"""Leases: one holder at a time for a long-running job across processes and machines.

The ``gateway-health`` watch run holds the lease ``gateway-watch`` while it probes (renewed on
every probe, with an expiry), so a second watch run — the next day's overlapping it, one started
when ``ats serve`` restarts, another machine's — stands by instead of probing and alerting too,
and takes over when the holder releases it or its lease expires (the holder died).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("acquired_at", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")

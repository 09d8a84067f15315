"""Parameter sweeps of the research ladder (issue 16): ``ats ladder sweep``.

One row per sweep: the grid, the strategy's code fingerprint, the data windows (in-sample and,
with ``--train-until``, out-of-sample), every point's params and metrics, the chosen point and
its out-of-sample metrics.  Research only: no gate reads it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("strategy", sa.String(100), nullable=False),
        sa.Column("instrument", sa.String(100), nullable=False),
        sa.Column("bar_spec", sa.String(100), nullable=False),
        sa.Column("grid", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("sort_by", sa.String(32), nullable=False),
        sa.Column("data_start", sa.String(32), nullable=False),
        sa.Column("data_end", sa.String(32), nullable=False),
        sa.Column("train_until", sa.String(32), nullable=True),
        sa.Column("points", sa.Text, nullable=False),
        sa.Column("best", sa.Text, nullable=False),
        sa.Column("out_of_sample", sa.Text, nullable=True),
        sa.Column("processes", sa.Integer, nullable=False),
        sa.Column("seconds", sa.Float(precision=53), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
    )
    op.create_index("ix_sweeps_sleeve", "sweeps", ["strategy", "instrument", "id"])


def downgrade() -> None:
    op.drop_index("ix_sweeps_sleeve", table_name="sweeps")
    op.drop_table("sweeps")

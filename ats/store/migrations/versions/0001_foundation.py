"""Foundation: audit log (append-only, hash chain), approvals, ladder verdicts.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS = "0" * 64
APPEND_ONLY = ("audit_log", "approval_events")


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_log_action", "audit_log", ["action"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.execute(sa.text(f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS}')"))
    op.create_table(
        "approval_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("strategy", sa.String(100), nullable=False),
        sa.Column("instrument", sa.String(100), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        sa.Column("audit_seq", sa.Integer, nullable=False),
    )
    op.create_index("ix_approval_events_pair", "approval_events", ["strategy", "instrument", "id"])
    op.create_table(
        "rung_verdicts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rung", sa.String(16), nullable=False),
        sa.Column("strategy", sa.String(100), nullable=False),
        sa.Column("instrument", sa.String(100), nullable=False),
        sa.Column("passed", sa.Integer, nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("data_start", sa.String(32), nullable=True),
        sa.Column("data_end", sa.String(32), nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("audit_seq", sa.Integer, nullable=False),
        sa.UniqueConstraint("audit_seq", name="uq_rung_verdicts_audit_seq"),
    )
    op.create_index("ix_rung_verdicts_pair", "rung_verdicts", ["strategy", "instrument", "rung", "id"])
    _append_only_triggers()


def _append_only_triggers() -> None:
    from ats.store.append_only import create_append_only_triggers

    for table in APPEND_ONLY:
        create_append_only_triggers(op, table)


def downgrade() -> None:
    raise RuntimeError("the audit log is append-only: its migration is not reversible")

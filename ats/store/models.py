"""Table definitions (SQLAlchemy Core), mirrored by the Alembic migrations.

Timestamps are ISO-8601 UTC text (``2026-11-24T11:06:52.123456Z``): sortable, identical on
SQLite and PostgreSQL, and exactly what the audit hash covers.  JSON payloads are stored as
canonical JSON text for the same reason.
"""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table, Text, UniqueConstraint

metadata = MetaData()

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("ts", String(32), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False, index=True),
    Column("subject", String(300), nullable=False),
    Column("payload", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# One row (id = 1): the chain's head, written in the same transaction as each append, so that
# deleting the newest rows behind the triggers' back is also found by `audit verify`.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)

# Append-only: an approval and its revocation are both events; the newest one is current.
approval_events = Table(
    "approval_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # approve | revoke
    Column("strategy", String(100), nullable=False),
    Column("instrument", String(100), nullable=False),
    Column("note", Text, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("at", String(32), nullable=False),
    Column("fingerprint", String(64), nullable=True),
    Column("audit_seq", Integer, nullable=False),
)

rung_verdicts = Table(
    "rung_verdicts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rung", String(16), nullable=False),  # backtest | paper
    Column("strategy", String(100), nullable=False),
    Column("instrument", String(100), nullable=False),
    Column("passed", Integer, nullable=False),
    Column("reasons", Text, nullable=False),  # JSON list of strings
    Column("metrics", Text, nullable=False),  # JSON object
    Column("params", Text, nullable=False),  # JSON object
    Column("data_start", String(32), nullable=True),
    Column("data_end", String(32), nullable=True),
    Column("fingerprint", String(64), nullable=False),
    Column("at", String(32), nullable=False),
    Column("audit_seq", Integer, nullable=False),
    UniqueConstraint("audit_seq", name="uq_rung_verdicts_audit_seq"),
)

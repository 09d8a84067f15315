"""Trading sessions (telemetry, bars, order events), kill switch, gateway health.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("trader_id", sa.String(64), nullable=False),
        sa.Column("sleeves", sa.Text, nullable=False),
        sa.Column("account_masked", sa.String(32), nullable=False),
        sa.Column("gateway", sa.String(100), nullable=False),
        sa.Column("started_at", sa.String(32), nullable=False),
        sa.Column("stopped_at", sa.String(32), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("host", sa.String(200), nullable=True),
        sa.Column("flow_run_id", sa.String(36), nullable=True),
    )
    op.create_index("ix_sessions_mode_status", "sessions", ["mode", "status"])
    op.create_table(
        "session_snapshots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.String(36), sa.ForeignKey("sessions.id"), nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_index("ix_session_snapshots_session", "session_snapshots", ["session_id", "id"])
    op.create_table(
        "session_bars",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.String(36), sa.ForeignKey("sessions.id"), nullable=False),
        sa.Column("instrument", sa.String(100), nullable=False),
        sa.Column("bar_type", sa.String(200), nullable=False),
        sa.Column("ts_event", sa.String(32), nullable=False),
        sa.Column("open", sa.Float(precision=53), nullable=False),
        sa.Column("high", sa.Float(precision=53), nullable=False),
        sa.Column("low", sa.Float(precision=53), nullable=False),
        sa.Column("close", sa.Float(precision=53), nullable=False),
        sa.Column("volume", sa.Float(precision=53), nullable=False),
    )
    op.create_index("ix_session_bars_session", "session_bars", ["session_id", "ts_event"])
    op.create_table(
        "session_orders",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.String(36), sa.ForeignKey("sessions.id"), nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("client_order_id", sa.String(64), nullable=False),
        sa.Column("instrument", sa.String(100), nullable=False),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("quantity", sa.Float(precision=53), nullable=False),
        sa.Column("price", sa.Float(precision=53), nullable=True),
        sa.Column("bar_date", sa.String(10), nullable=True),
        sa.Column("details", sa.Text, nullable=False),
    )
    op.create_index("ix_session_orders_session", "session_orders", ["session_id", "id"])
    op.create_table(
        "kill_switch",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),  # latch | clear
        sa.Column("session_id", sa.String(36), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("audit_seq", sa.Integer, nullable=False),
    )
    op.create_index("ix_kill_switch_mode", "kill_switch", ["mode", "id"])
    op.create_table(
        "gateway_health",
        sa.Column("gateway", sa.String(8), primary_key=True),  # paper | live
        sa.Column("state", sa.String(16), nullable=False),  # unknown | healthy | broken
        sa.Column("since", sa.String(32), nullable=False),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
        sa.Column("last_reason", sa.Text, nullable=True),
        sa.Column("last_probe_at", sa.String(32), nullable=True),
        sa.Column("last_alert_at", sa.String(32), nullable=True),
        sa.Column("alerted_broken", sa.Integer, nullable=False, server_default="0"),
        sa.Column("pending_alerts", sa.Text, nullable=False, server_default="[]"),
        sa.Column("account", sa.String(32), nullable=True),
    )
    op.create_table(
        "gateway_probes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("gateway", sa.String(8), nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("healthy", sa.Integer, nullable=False),
        sa.Column("latency_ms", sa.Float(precision=53), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("accounts", sa.String(200), nullable=True),
    )
    op.create_index("ix_gateway_probes_gateway", "gateway_probes", ["gateway", "id"])


def downgrade() -> None:
    for table in ("gateway_probes", "gateway_health", "kill_switch", "session_orders", "session_bars",
                  "session_snapshots", "sessions"):
        op.drop_table(table)

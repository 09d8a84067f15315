"""Table definitions (SQLAlchemy Core), mirrored by the Alembic migrations.

Timestamps are ISO-8601 UTC text (``2026-11-24T11:06:52.123456Z``): sortable, identical on
SQLite and PostgreSQL, and exactly what the audit hash covers.  JSON payloads are stored as
canonical JSON text for the same reason.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Integer, MetaData, String, Table, Text, UniqueConstraint

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
    # 0005: HMAC-SHA256 of "<store_id>:<hash>" under the audit key (ATS_AUDIT_KEY_FILE); NULL on
    # rows written before keying (seq < audit_head.keyed_from), which are verified by hash only.
    Column("hmac", String(64), nullable=True),
)

# One row (id = 1): the chain's head, written in the same transaction as each append, so that
# deleting the newest rows behind the triggers' back is also found by `audit verify`.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
    # 0005: this store's random id (covered by every HMAC; the external anchor is filed under it),
    # the first seq that must carry an HMAC, and the id of the key the log is keyed with.
    Column("store_id", String(32), nullable=True),
    Column("keyed_from", Integer, nullable=True),
    Column("key_id", String(32), nullable=True),
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
    # 0005: the canonical params (JSON) and bar spec the approval is pinned to (NULL: before pinning).
    Column("params", Text, nullable=True),
    Column("bar_spec", String(100), nullable=True),
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
    Column("bar_spec", String(100), nullable=True),  # 0005 (NULL: before pinning)
    UniqueConstraint("audit_seq", name="uq_rung_verdicts_audit_seq"),
)

# --- 0002: sessions, kill switch, gateway health -----------------------------------------------

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("mode", String(8), nullable=False),
    Column("trader_id", String(64), nullable=False),
    Column("sleeves", Text, nullable=False),  # JSON list of {strategy, instrument, bar_spec, params}
    Column("account_masked", String(32), nullable=False),
    Column("gateway", String(100), nullable=False),  # host:port
    Column("started_at", String(32), nullable=False),
    Column("stopped_at", String(32), nullable=True),
    Column("status", String(16), nullable=False),  # running | stopped | killed | error
    Column("reason", Text, nullable=True),
    Column("pid", Integer, nullable=True),
    Column("host", String(200), nullable=True),
    Column("flow_run_id", String(36), nullable=True),
    Column("gateway_info", Text, nullable=True),  # JSON: ats.gateway.identity.GatewayIdentity
)

session_snapshots = Table(
    "session_snapshots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(36), ForeignKey("sessions.id"), nullable=False),
    Column("ts", String(32), nullable=False),
    Column("payload", Text, nullable=False),
)

session_bars = Table(
    "session_bars",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(36), ForeignKey("sessions.id"), nullable=False),
    Column("instrument", String(100), nullable=False),
    Column("bar_type", String(200), nullable=False),
    Column("ts_event", String(32), nullable=False),
    Column("open", Float(precision=53), nullable=False),
    Column("high", Float(precision=53), nullable=False),
    Column("low", Float(precision=53), nullable=False),
    Column("close", Float(precision=53), nullable=False),
    Column("volume", Float(precision=53), nullable=False),
)

session_orders = Table(
    "session_orders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(36), ForeignKey("sessions.id"), nullable=False),
    Column("ts", String(32), nullable=False),
    Column("event", String(16), nullable=False),  # intent | denied | submitted | rejected | filled | canceled
    Column("client_order_id", String(64), nullable=False),
    Column("instrument", String(100), nullable=False),
    Column("side", String(8), nullable=False),
    Column("quantity", Float(precision=53), nullable=False),
    Column("price", Float(precision=53), nullable=True),
    Column("bar_date", String(10), nullable=True),  # date of the bar that triggered the decision
    Column("details", Text, nullable=False),
)

kill_switch = Table(
    "kill_switch",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mode", String(8), nullable=False),
    Column("action", String(8), nullable=False),  # latch | clear
    Column("session_id", String(36), nullable=True),
    Column("reason", Text, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("at", String(32), nullable=False),
    Column("audit_seq", Integer, nullable=False),
)

gateway_health = Table(
    "gateway_health",
    metadata,
    Column("gateway", String(8), primary_key=True),  # paper | live
    Column("state", String(16), nullable=False),  # unknown | healthy | broken
    Column("since", String(32), nullable=False),
    Column("consecutive_failures", Integer, nullable=False),
    Column("last_reason", Text, nullable=True),
    Column("last_probe_at", String(32), nullable=True),
    Column("last_alert_at", String(32), nullable=True),
    Column("alerted_broken", Integer, nullable=False, server_default="0"),
    Column("pending_alerts", Text, nullable=False, server_default="[]"),  # JSON list to retry
    Column("account", String(32), nullable=True),  # masked
)

gateway_probes = Table(
    "gateway_probes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("gateway", String(8), nullable=False),
    Column("at", String(32), nullable=False),
    Column("healthy", Integer, nullable=False),
    Column("latency_ms", Float(precision=53), nullable=True),
    Column("reason", Text, nullable=True),
    Column("accounts", String(200), nullable=True),
)

# --- 0007: parameter sweeps (research only; no gate reads them) --------------------------------

sweeps = Table(
    "sweeps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("strategy", String(100), nullable=False),
    Column("instrument", String(100), nullable=False),
    Column("bar_spec", String(100), nullable=False),
    Column("grid", Text, nullable=False),  # JSON object: param -> list of values, as given
    Column("fingerprint", String(64), nullable=False),  # the strategy code the points ran
    Column("sort_by", String(32), nullable=False),  # the metric the best point was chosen by
    Column("data_start", String(32), nullable=False),  # in-sample window
    Column("data_end", String(32), nullable=False),
    Column("train_until", String(32), nullable=True),  # walk-forward split; NULL: all in-sample
    Column("points", Text, nullable=False),  # JSON list of {params, metrics}, best first
    Column("best", Text, nullable=False),  # JSON {params, metrics}: the chosen point, in-sample
    Column("out_of_sample", Text, nullable=True),  # JSON {start, end, metrics} of the chosen point
    Column("processes", Integer, nullable=False),
    Column("seconds", Float(precision=53), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("at", String(32), nullable=False),
)

# --- 0008: leases (one holder at a time of a long-running job, e.g. the gateway-health watch) ---

leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),  # e.g. "flow run <id> pid 123 on host"
    Column("acquired_at", String(32), nullable=False),
    Column("expires_at", String(32), nullable=False),  # renewed by the holder; free once past
)

"""Trading sessions in the store: the record, telemetry snapshots, received bars, order events.

A session is one run of a trading node (paper or live): id, mode, sleeves, masked account,
gateway, started/stopped, status (running | stopped | killed | error) and reason.  While it
runs the node writes a telemetry snapshot every 2 s (``ats sessions watch`` shows them), every
bar it receives (the paper rung's parity check replays them) and every order event.  Start and end are audited.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, Row, func, select, update
from sqlalchemy.exc import IntegrityError

from ats.core.errors import GateRefused, InputError, StoreError
from ats.core.settings import Mode
from ats.core.sleeves import DEFAULT_BAR_SPEC, Sleeve
from ats.governance import audit
from ats.store import Store, open_store, utcnow_iso
from ats.store.models import session_bars, session_orders, session_snapshots, sessions

SessionStatus = Literal["stopped", "killed", "error", "running"]
FINAL_STATUSES = ("stopped", "killed", "error")


@dataclass(frozen=True)
class SessionRecord:
    id: str
    mode: Mode
    trader_id: str
    sleeves: list[dict[str, Any]]
    account_masked: str
    gateway: str
    started_at: str
    stopped_at: str | None
    status: SessionStatus
    reason: str | None
    pid: int | None
    host: str | None
    flow_run_id: str | None
    #: The gateway it traded against (:class:`ats.gateway.identity.GatewayIdentity` as a dict);
    #: ``{}`` for sessions recorded before ats knew (they count as ``unknown``).
    gateway_info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sleeve_list(self) -> list[Sleeve]:
        """The sleeves it traded (the stored dicts without the strategy fingerprint)."""
        return [Sleeve(s["strategy"], s["instrument"], s.get("bar_spec") or DEFAULT_BAR_SPEC, s.get("params") or {})
                for s in self.sleeves]


def _record(row: Row[Any]) -> SessionRecord:
    data = dict(row._mapping)
    data["sleeves"] = json.loads(data["sleeves"])
    data["gateway_info"] = json.loads(data["gateway_info"]) if data.get("gateway_info") else {}
    return SessionRecord(**data)


def one_session_refusal(running: list[SessionRecord], mode: str) -> GateRefused:
    """The refusal of a start while ``running`` holds a session (one IB session at a time)."""
    other_mode = running[0].mode if running else mode
    where = (f"{running[0].id} (pid {running[0].pid} on {running[0].host}, since {running[0].started_at})"
             if running else "(unknown)")
    return GateRefused("one-session", f"another {other_mode} session is running: {where}",
                       f"stop it first (ats kill --mode {other_mode} --reason …), one IB session at a time")


def _with_fingerprint(sleeve: Sleeve) -> dict[str, Any]:
    """The sleeve as stored with its session: with the code fingerprint of the strategy it ran."""
    from ats.strategies import get_strategy

    return {**sleeve.as_dict(), "fingerprint": get_strategy(sleeve.strategy).fingerprint()}


def start_session(mode: Mode, sleeves: list[Sleeve], *, trader_id: str, account_masked: str,
                  gateway: str, actor: str, flow_run_id: str | None = None,
                  gateway_info: dict[str, Any] | None = None, store: Store | None = None) -> SessionRecord:
    """Create the session row (status running) and its ``session.start`` audit row.

    ``gateway_info``: what the gateway said about itself (:mod:`ats.gateway.identity`), recorded
    on the row and in the audit row (the paper rung reads it)."""
    store = store or open_store()
    session_id = str(uuid.uuid4())
    values = {
        "id": session_id, "mode": mode, "trader_id": trader_id,
        "sleeves": audit.canonical_json([_with_fingerprint(s) for s in sleeves]),
        "account_masked": account_masked, "gateway": gateway, "started_at": utcnow_iso(),
        "stopped_at": None, "status": "running", "reason": None, "pid": os.getpid(),
        "host": socket.gethostname(), "flow_run_id": flow_run_id,
        "gateway_info": audit.canonical_json(gateway_info) if gateway_info is not None else None,
    }
    try:
        with store.write() as conn:
            # The insert goes first: the partial unique index refuses a second running session
            # of the mode before anything is audited as started.
            conn.execute(sessions.insert().values(**values))
            audit.append_in(conn, actor, "session.start", session_id, {
                "mode": mode, "sleeves": [s.as_dict() for s in sleeves], "account": account_masked,
                "gateway": gateway, "trader_id": trader_id, "flow_run_id": flow_run_id,
                **({"gateway_info": gateway_info} if gateway_info is not None else {}),
            })
    except StoreError as exc:
        if not isinstance(exc.__cause__, IntegrityError):
            raise
        error = one_session_refusal(running_sessions(store=store), mode)
        audit.append(actor, "gate.refused", mode, {"gate": error.gate, "message": str(error),
                                                  "sleeves": [s.key for s in sleeves]}, store=store)
        raise error from None
    return get_session(session_id, store=store)


def reap_dead_sessions(mode: str, actor: str, *, store: Store | None = None) -> list[str]:
    """Mark ``running`` sessions of ``mode`` whose runner process on this host is gone as ``error``.

    A runner killed with SIGKILL (or a crashed machine) never marks its session; the next
    session of the mode does, so history and the paper rung see how it ended.
    """
    store = store or open_store()
    reaped = []
    for record in running_sessions(mode, store=store):
        if not runner_gone(record):
            continue
        finish_session(record.id, "error", f"the runner process (pid {record.pid}) died without stopping the session",
                       actor, store=store)
        reaped.append(record.id)
    return reaped


def runner_gone(record: SessionRecord) -> bool:
    """A ``running`` session whose runner process on this host no longer exists."""
    return (record.status == "running" and record.host == socket.gethostname() and record.pid is not None
            and not _pid_alive(record.pid))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def finish_session(session_id: str, status: str, reason: str, actor: str, *,
                   summary: dict[str, Any] | None = None, gateway_info: dict[str, Any] | None = None,
                   store: Store | None = None) -> None:
    """Mark a running session stopped/killed/error (audited as ``session.<status>``);
    ``gateway_info`` replaces the start's (it now carries the clock speed over the session)."""
    if status not in FINAL_STATUSES:
        raise ValueError(f"status must be one of {FINAL_STATUSES}")
    store = store or open_store()
    values: dict[str, Any] = {"status": status, "reason": reason, "stopped_at": utcnow_iso()}
    extra: dict[str, Any] = {}
    if gateway_info is not None:
        values["gateway_info"] = audit.canonical_json(gateway_info)
        extra["gateway_info"] = gateway_info
    with store.write() as conn:
        audit.append_in(conn, actor, f"session.{status}", session_id, {"reason": reason, **(summary or {}), **extra})
        conn.execute(update(sessions).where(sessions.c.id == session_id, sessions.c.status == "running")
                     .values(**values))


def get_session(session_id: str, *, store: Store | None = None, prefer_running: bool = False) -> SessionRecord:
    """The session with id ``session_id``, or the one whose id starts with it.

    A prefix that more than one session's id starts with is refused (naming them), except that
    with ``prefer_running`` (``ats kill --session``) the one *running* session it matches is taken:
    a kill in a hurry must reach the session that trades, never latch another's mode.
    """
    store = store or open_store()
    with store.read() as conn:
        row = conn.execute(select(sessions).where(sessions.c.id == session_id)).first()
        if row is not None:
            return _record(row)
        matching = sessions.c.id.startswith(session_id, autoescape=True)
        if prefer_running:
            running = conn.execute(select(sessions).where(matching, sessions.c.status == "running").limit(2)).all()
            if len(running) == 1:
                return _record(running[0])
        rows = conn.execute(select(sessions).where(matching).order_by(sessions.c.started_at.desc()).limit(4)).all()
    if not rows:
        raise InputError(f"no session {session_id!r}; see `ats sessions list`")
    if len(rows) > 1:
        shown = ", ".join(f"{r.id[:12]}… ({r.mode}, {r.status})" for r in rows[:3])
        more = " and more" if len(rows) > 3 else ""
        raise InputError(f"session {session_id!r} is the start of more than one session id ({shown}{more}): "
                         f"give more of the id; see `ats sessions list`")
    return _record(rows[0])


def list_sessions(mode: str | None = None, *, status: str | None = None, limit: int = 50,
                  store: Store | None = None) -> list[SessionRecord]:
    store = store or open_store()
    query = select(sessions).order_by(sessions.c.started_at.desc()).limit(limit)
    if mode:
        query = query.where(sessions.c.mode == mode)
    if status:
        query = query.where(sessions.c.status == status)
    with store.read() as conn:
        return [_record(row) for row in conn.execute(query)]


def running_sessions(mode: str | None = None, *, store: Store | None = None) -> list[SessionRecord]:
    return list_sessions(mode, status="running", limit=1000, store=store)


# --- telemetry ---------------------------------------------------------------------------------

def record_snapshot(session_id: str, payload: dict[str, Any], *, store: Store) -> None:
    with store.write() as conn:
        conn.execute(session_snapshots.insert().values(
            session_id=session_id, ts=utcnow_iso(), payload=audit.canonical_json(payload)))


def record_bar(session_id: str, instrument: str, bar_type: str, ts_event: str, ohlcv: tuple[float, ...], *,
               store: Store) -> None:
    o, h, low, c, v = ohlcv
    with store.write() as conn:
        conn.execute(session_bars.insert().values(
            session_id=session_id, instrument=instrument, bar_type=bar_type, ts_event=ts_event,
            open=o, high=h, low=low, close=c, volume=v))


_INSERT_ORDER_EVENT = session_orders.insert()  # built once: on the path every order takes


def record_order_event(conn: Connection, session_id: str, event: str, *, client_order_id: str, instrument: str,
                       side: str, quantity: float, price: float | None = None, bar_date: str | None = None,
                       details: dict[str, Any] | None = None) -> None:
    """Insert one order event inside an open write transaction (with its audit row)."""
    conn.execute(_INSERT_ORDER_EVENT, {
        "session_id": session_id, "ts": utcnow_iso(), "event": event, "client_order_id": client_order_id,
        "instrument": instrument, "side": side, "quantity": quantity, "price": price, "bar_date": bar_date,
        "details": audit.canonical_json(details or {})})


def last_snapshot(session_id: str, *, store: Store) -> dict[str, Any] | None:
    """The session's newest telemetry snapshot (its payload with ``ts``, when it was written), or None."""
    with store.read() as conn:
        row = conn.execute(
            select(session_snapshots.c.ts, session_snapshots.c.payload)
            .where(session_snapshots.c.session_id == session_id)
            .order_by(session_snapshots.c.id.desc()).limit(1)).first()
    return None if row is None else {"ts": row.ts, **json.loads(row.payload)}


def session_detail(session_id: str, *, store: Store | None = None) -> dict[str, Any]:
    """The session with its last snapshot, bar count and order events (``ats sessions show``)."""
    store = store or open_store()
    record = get_session(session_id, store=store)
    snapshot = last_snapshot(record.id, store=store)
    with store.read() as conn:
        bars = conn.execute(select(func.count()).select_from(session_bars)
                            .where(session_bars.c.session_id == record.id)).scalar_one()
        orders = conn.execute(select(session_orders).where(session_orders.c.session_id == record.id)
                              .order_by(session_orders.c.id)).all()
    return {
        **record.as_dict(),
        "bars_received": bars,
        "last_snapshot": snapshot,
        "order_events": [
            {k: (json.loads(v) if k == "details" else v) for k, v in row._mapping.items() if k != "session_id"}
            for row in orders
        ],
    }


def session_bars_of(session_id: str, instrument: str, *, store: Store) -> list[tuple]:
    with store.read() as conn:
        rows = conn.execute(
            select(session_bars.c.ts_event, session_bars.c.open, session_bars.c.high, session_bars.c.low,
                   session_bars.c.close, session_bars.c.volume)
            .where(session_bars.c.session_id == session_id, session_bars.c.instrument == instrument)
            .order_by(session_bars.c.ts_event, session_bars.c.id)).all()
    # A reconnect re-publishes bars already seen: keep the first of each timestamp.
    seen, unique = set(), []
    for row in rows:
        if row.ts_event not in seen:
            seen.add(row.ts_event)
            unique.append(tuple(row))
    return unique


def session_progress(session_id: str, *, store: Store | None = None) -> dict[str, int]:
    """How far a running session got: recorded bars, and order events by kind (``intent``,
    ``submitted``, ``filled``, …) — what a driver of a manual simulator clock waits on."""
    store = store or open_store()
    with store.read() as conn:
        bars = conn.execute(select(func.count()).select_from(session_bars)
                            .where(session_bars.c.session_id == session_id)).scalar_one()
        events: dict[str, int] = {event: n for event, n in conn.execute(
            select(session_orders.c.event, func.count())
            .where(session_orders.c.session_id == session_id)
            .group_by(session_orders.c.event))}
    return {"bars": bars, **events}


def orders_settled(progress: dict[str, int]) -> bool:
    """Every order intent of :func:`session_progress` reached a final state (filled, denied,
    rejected or canceled)."""
    final = sum(progress.get(kind, 0) for kind in ("filled", "denied", "rejected", "canceled"))
    return progress.get("intent", 0) <= final


def session_decisions_of(session_id: str, instrument: str, *, store: Store) -> list[tuple[str, str, int]]:
    """The (bar date, side, quantity) of every order intent the session made in ``instrument``."""
    with store.read() as conn:
        rows = conn.execute(
            select(session_orders.c.bar_date, session_orders.c.side, session_orders.c.quantity)
            .where(session_orders.c.session_id == session_id, session_orders.c.instrument == instrument,
                   session_orders.c.event == "intent")
            .order_by(session_orders.c.id)).all()
    return [(row.bar_date, row.side, int(row.quantity)) for row in rows]

"""Go-live approvals: the audited human sign-off that a sleeve may trade real money.

A sleeve is a (strategy, instrument) pair.  ``approve_live`` records a GoLiveApproval pinned to
the strategy's code fingerprint (SHA-256 of its module source); ``revoke_live`` records a
revocation.  Both are append-only events written in the same transaction as their audit row;
the newest event of a pair says whether it is approved.  :func:`require_live_approval` is the
gate the live runner and the go-live flow call.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from ats import audit
from ats.errors import ApprovalMissing, InputError, NothingToDo
from ats.params import check_instrument_id
from ats.store import Store, open_store, utcnow_iso
from ats.store.models import approval_events
from ats.strategies import get_strategy

@dataclass(frozen=True)
class Approval:
    """A current go-live approval of one sleeve."""

    strategy: str
    instrument: str
    note: str
    approved_by: str
    approved_at: str
    fingerprint: str
    audit_seq: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _latest(conn: Connection, strategy: str, instrument: str):  # noqa: ANN202
    return conn.execute(
        select(approval_events)
        .where(approval_events.c.strategy == strategy, approval_events.c.instrument == instrument)
        .order_by(approval_events.c.id.desc())
        .limit(1)
    ).first()


def _as_approval(row) -> Approval:  # noqa: ANN001
    return Approval(row.strategy, row.instrument, row.note, row.actor, row.at, row.fingerprint, row.audit_seq)


def approve_live(strategy: str, instrument: str, note: str, actor: str, *,
                 store: Store | None = None) -> Approval:
    """Record a GoLiveApproval and its audit row.  Raises NothingToDo if already approved."""
    spec = get_strategy(strategy)
    check_instrument_id(instrument)
    if not (note or "").strip():
        raise InputError("--note is empty: say why this sleeve may trade real money")
    fingerprint = spec.fingerprint()
    store = store or open_store()
    with store.write() as conn:
        latest = _latest(conn, strategy, instrument)
        if latest is not None and latest.kind == "approve" and latest.fingerprint == fingerprint:
            raise NothingToDo(
                f"{strategy} on {instrument} is already approved (by {latest.actor} at {latest.at}); nothing changed"
            )
        action = "approval.reapprove" if latest is not None and latest.kind == "approve" else "approval.approve"
        at = utcnow_iso()
        payload = {"note": note, "fingerprint": fingerprint}
        if action == "approval.reapprove":
            payload["previous_fingerprint"] = latest.fingerprint
        row = audit.append_in(conn, actor, action, f"{strategy}@{instrument}", payload)
        conn.execute(approval_events.insert().values(
            kind="approve", strategy=strategy, instrument=instrument, note=note, actor=actor, at=at,
            fingerprint=fingerprint, audit_seq=row.seq))
    return Approval(strategy, instrument, note, actor, at, fingerprint, row.seq)


def revoke_live(strategy: str, instrument: str, actor: str, note: str = "", *,
                store: Store | None = None) -> int:
    """Record a revocation and its audit row; returns the audit seq.  Refuses if not approved."""
    get_strategy(strategy)
    check_instrument_id(instrument)
    store = store or open_store()
    with store.write() as conn:
        latest = _latest(conn, strategy, instrument)
        if latest is None or latest.kind != "approve":
            raise InputError(f"{strategy} on {instrument} is not approved: nothing to revoke")
        row = audit.append_in(conn, actor, "approval.revoke", f"{strategy}@{instrument}",
                              {"note": note, "revoked_fingerprint": latest.fingerprint})
        conn.execute(approval_events.insert().values(
            kind="revoke", strategy=strategy, instrument=instrument, note=note, actor=actor,
            at=utcnow_iso(), fingerprint=None, audit_seq=row.seq))
    return row.seq


def current_approvals(*, store: Store | None = None) -> list[Approval]:
    """Every sleeve whose newest event is an approval."""
    store = store or open_store()
    newest = (
        select(func.max(approval_events.c.id))
        .group_by(approval_events.c.strategy, approval_events.c.instrument)
        .scalar_subquery()
    )
    with store.read() as conn:
        rows = conn.execute(
            select(approval_events)
            .where(approval_events.c.id.in_(newest), approval_events.c.kind == "approve")
            .order_by(approval_events.c.strategy, approval_events.c.instrument)
        ).all()
    return [_as_approval(row) for row in rows]


def require_live_approval(strategy: str, instrument: str, *, store: Store | None = None) -> Approval:
    """The current approval of the sleeve, or :class:`ApprovalMissing` saying how to get one.

    Refuses when there is no approval, when it was revoked, and when the strategy's code
    changed since it was approved.
    """
    spec = get_strategy(strategy)
    check_instrument_id(instrument)
    store = store or open_store()
    with store.read() as conn:
        latest = _latest(conn, strategy, instrument)
    command = f"ats approve-live --strategy {strategy} --instrument {instrument} --note \"…\""
    if latest is None:
        raise ApprovalMissing("approval", f"{strategy} on {instrument} has no go-live approval",
                              f"approve it with: {command}")
    if latest.kind != "approve":
        raise ApprovalMissing("approval", f"{strategy} on {instrument}: the approval was revoked by "
                              f"{latest.actor} at {latest.at}", f"approve it again with: {command}")
    current = spec.fingerprint()
    if latest.fingerprint != current:
        raise ApprovalMissing(
            "approval",
            f"{strategy} code changed since it was approved for {instrument} "
            f"(approved {latest.fingerprint[:12]}, now {current[:12]})",
            f"re-approve after you change strategy code: {command}",
        )
    return _as_approval(latest)

"""Go-live approvals: the audited human sign-off that a sleeve may trade real money.

A sleeve is a (strategy, instrument) pair.  ``approve_live`` records a GoLiveApproval pinned to
the strategy's code fingerprint (SHA-256 of its module source) *and* to one params/bar-spec set
(:mod:`ats.core.pins`): what was tried on paper is what is signed off, so a session with other
params or another bar spec needs its own approval.  ``revoke_live`` records a revocation of
one set.  Both are append-only events written in the same transaction as their audit row; the
newest event of a (sleeve, set) says whether that set is approved.

:func:`require_live_approval` is the gate the live runner and the go-live flow call.  Before it
trusts an approval row it checks the row against its audit row (:mod:`ats.governance.gate_rows`): a row
inserted behind ats's back refuses the gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, func, select

from ats.core.errors import ApprovalMissing, InputError, NothingToDo
from ats.core.params import check_instrument_id
from ats.core.pins import ParamSet, needs_own_evidence, param_set, stored_set
from ats.governance import audit, gate_rows
from ats.store import Store, open_store
from ats.store.models import approval_events
from ats.strategies import get_strategy

if TYPE_CHECKING:
    from ats.core.sleeves import Sleeve

APPROVE_ACTIONS = ("approval.approve", "approval.reapprove")
FAMILY = (*APPROVE_ACTIONS, "approval.revoke")


@dataclass(frozen=True)
class Approval:
    """A current go-live approval of one sleeve and params/bar-spec set."""

    strategy: str
    instrument: str
    note: str
    approved_by: str
    approved_at: str
    fingerprint: str
    audit_seq: int
    params: dict[str, Any] | None = field(default=None)  # None: recorded before params pinning
    bar_spec: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def pinned(self) -> ParamSet | None:
        return stored_set(self.params, self.bar_spec)


def _newest(conn: Connection, strategy: str, instrument: str, pinned: ParamSet | None = None) -> Row[Any] | None:
    """The newest event of the sleeve (of one set, given ``pinned``)."""
    query = select(approval_events).where(approval_events.c.strategy == strategy,
                                          approval_events.c.instrument == instrument)
    if pinned is not None:
        query = query.where(approval_events.c.params == pinned.params_json,
                            approval_events.c.bar_spec == pinned.bar_spec)
    return conn.execute(query.order_by(approval_events.c.id.desc()).limit(1)).first()


def _as_approval(row: Row[Any]) -> Approval:
    pinned = stored_set(row.params, row.bar_spec)
    return Approval(row.strategy, row.instrument, row.note, row.actor, row.at, row.fingerprint, row.audit_seq,
                    pinned.params if pinned else None, row.bar_spec)


def _backing(row: Row[Any]) -> gate_rows.Backing:
    """What the audit row of an approval event must say."""
    pinned = stored_set(row.params, row.bar_spec)
    payload: dict[str, Any] = {"note": row.note, "params": pinned.params if pinned else None, "bar_spec": row.bar_spec}
    if row.kind == "approve":
        payload["fingerprint"] = row.fingerprint
    return gate_rows.Backing(
        label="approval", row_id=row.id, audit_seq=row.audit_seq,
        actions=APPROVE_ACTIONS if row.kind == "approve" else ("approval.revoke",), family=FAMILY,
        subject=f"{row.strategy}@{row.instrument}", at=row.at, actor=row.actor, payload=payload)


def _approved_sets(conn: Connection, strategy: str, instrument: str) -> list[ParamSet]:
    """The sets of the sleeve whose newest event is an approval, newest first."""
    newest = (select(func.max(approval_events.c.id))
              .where(approval_events.c.strategy == strategy, approval_events.c.instrument == instrument)
              .group_by(approval_events.c.params, approval_events.c.bar_spec).scalar_subquery())
    rows = conn.execute(select(approval_events).where(approval_events.c.id.in_(newest),
                                                      approval_events.c.kind == "approve")
                        .order_by(approval_events.c.id.desc())).all()
    return [pinned for row in rows if (pinned := stored_set(row.params, row.bar_spec)) is not None]


def approve_live(strategy: str, instrument: str, note: str, actor: str, *, params: str | dict | None = None,
                 bar_spec: str | None = None, store: Store | None = None) -> Approval:
    """Record a GoLiveApproval of one params/bar-spec set (default: the strategy's defaults on
    1-DAY-LAST) and its audit row.  Raises NothingToDo if that set is already approved."""
    spec = get_strategy(strategy)
    check_instrument_id(instrument)
    if not (note or "").strip():
        raise InputError("--note is empty: say why this sleeve may trade real money")
    pinned = param_set(strategy, instrument, params, bar_spec)
    fingerprint = spec.fingerprint()
    store = store or open_store()
    with store.write() as conn:
        latest = _newest(conn, strategy, instrument, pinned)
        if latest is not None and latest.kind == "approve" and latest.fingerprint == fingerprint:
            raise NothingToDo(
                f"{strategy} on {instrument} with {pinned.describe()} is already approved "
                f"(by {latest.actor} at {latest.at}); nothing changed"
            )
        action = "approval.reapprove" if latest is not None and latest.kind == "approve" else "approval.approve"
        payload = {"note": note, "fingerprint": fingerprint, "params": pinned.params, "bar_spec": pinned.bar_spec}
        if latest is not None and latest.kind == "approve":  # a reapproval
            payload["previous_fingerprint"] = latest.fingerprint
        row = audit.append_in(conn, actor, action, f"{strategy}@{instrument}", payload)
        conn.execute(approval_events.insert().values(
            kind="approve", strategy=strategy, instrument=instrument, note=note, actor=actor, at=row.ts,
            fingerprint=fingerprint, audit_seq=row.seq, params=pinned.params_json, bar_spec=pinned.bar_spec))
    return Approval(strategy, instrument, note, actor, row.ts, fingerprint, row.seq, pinned.params, pinned.bar_spec)


def revoke_live(strategy: str, instrument: str, actor: str, note: str = "", *, params: str | dict | None = None,
                bar_spec: str | None = None, store: Store | None = None) -> int:
    """Record a revocation of one set and its audit row; returns the audit seq.

    Refuses (writing nothing) when that set is not approved, naming the sets that are.
    """
    get_strategy(strategy)
    check_instrument_id(instrument)
    pinned = param_set(strategy, instrument, params, bar_spec)
    store = store or open_store()
    with store.write() as conn:
        latest = _newest(conn, strategy, instrument, pinned)
        if latest is None or latest.kind != "approve":
            others = _approved_sets(conn, strategy, instrument)
            hint = ("; approved: " + ", ".join(s.describe() for s in others)
                    + " (give --params and --bar-spec to revoke one)") if others else ""
            raise InputError(f"{strategy} on {instrument} is not approved with {pinned.describe()}: "
                             f"nothing to revoke{hint}")
        row = audit.append_in(conn, actor, "approval.revoke", f"{strategy}@{instrument}",
                              {"note": note, "revoked_fingerprint": latest.fingerprint,
                               "params": pinned.params, "bar_spec": pinned.bar_spec})
        conn.execute(approval_events.insert().values(
            kind="revoke", strategy=strategy, instrument=instrument, note=note, actor=actor,
            at=row.ts, fingerprint=None, audit_seq=row.seq, params=pinned.params_json, bar_spec=pinned.bar_spec))
    return row.seq


def approved_sets(strategy: str, instrument: str, *, store: Store | None = None) -> list[ParamSet]:
    """The params/bar-spec sets of the sleeve that are approved now, newest first."""
    store = store or open_store()
    with store.read() as conn:
        return _approved_sets(conn, strategy, instrument)


def current_approvals(*, store: Store | None = None) -> list[Approval]:
    """Every sleeve and set whose newest event is an approval (as recorded; the gate also checks
    each against its audit row)."""
    store = store or open_store()
    newest = (
        select(func.max(approval_events.c.id))
        .group_by(approval_events.c.strategy, approval_events.c.instrument, approval_events.c.params,
                  approval_events.c.bar_spec)
        .scalar_subquery()
    )
    with store.read() as conn:
        rows = conn.execute(
            select(approval_events)
            .where(approval_events.c.id.in_(newest), approval_events.c.kind == "approve")
            .order_by(approval_events.c.strategy, approval_events.c.instrument, approval_events.c.id)
        ).all()
    return [_as_approval(row) for row in rows]


def revocation_among(sleeves: Sequence[Sleeve], *, store: Store | None = None,
                     pinned: Sequence[ParamSet] | None = None) -> str | None:
    """Which of ``sleeves`` (a running live session's) no longer has a current approval of its
    params/bar-spec set — its newest event a revocation — said in one phrase naming who revoked
    it and when; ``None`` when every one still has one.

    A cheap read (the running session asks about once a second): the audit-row check is the
    gate's, done before the session started.  ``pinned``: the sleeves' sets, computed once.
    """
    store = store or open_store()
    sets = list(pinned) if pinned is not None else [
        param_set(s.strategy, s.instrument, s.params, s.bar_spec) for s in sleeves]
    with store.read() as conn:
        for sleeve, wanted in zip(sleeves, sets, strict=True):
            latest = _newest(conn, sleeve.strategy, sleeve.instrument, wanted)
            if latest is None or latest.kind != "approve":
                who = f" by {latest.actor} at {latest.at}" if latest is not None else ""
                note = f" ({latest.note})" if latest is not None and latest.note else ""
                return f"the go-live approval of {sleeve.key} was revoked{who}{note}"
    return None


def require_live_approval(strategy: str, instrument: str, params: str | dict | None = None,
                          bar_spec: str | None = None, *, store: Store | None = None) -> Approval:
    """The current approval of the sleeve for this params/bar-spec set, or :class:`ApprovalMissing`
    saying how to get one.

    Refuses when there is no approval of this set (naming the set that is approved, if any),
    when it was revoked, when the strategy's code changed since it was approved, and — as
    :class:`ats.core.errors.GateRowUnverified` — when its audit row does not back it.
    """
    spec = get_strategy(strategy)
    check_instrument_id(instrument)
    wanted = param_set(strategy, instrument, params, bar_spec)
    store = store or open_store()
    with store.read() as conn:
        latest = _newest(conn, strategy, instrument, wanted)
        others = _approved_sets(conn, strategy, instrument) if latest is None else []
    command = f"ats approve-live --strategy {strategy} --instrument {instrument} {wanted.cli_args()} --note \"…\""
    if latest is None:
        if others:
            raise ApprovalMissing(
                "approval", f"{strategy} on {instrument} is approved for {others[0].describe()}, "
                f"not for the requested {wanted.describe()}", needs_own_evidence(strategy, instrument, wanted))
        raise ApprovalMissing("approval", f"{strategy} on {instrument} has no go-live approval for {wanted.describe()}",
                              f"approve it with: {command}")
    gate_rows.require(store, "approval", [_backing(latest)])
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

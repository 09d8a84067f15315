"""The research ladder's record: rung verdicts stored with their evidence, and the status.

Rungs: ``backtest`` (``ats ladder run``), ``paper`` (judged from recorded paper sessions), then
the human ``approval`` (``ats approve-live``).  Each verdict is stored with the canonical
parameters, the bar spec, the data range and the strategy's code fingerprint, and audited.  The
judgement itself (what passes) lives in :mod:`ats.research.ladder_rules`; this module persists and reads it.

A verdict is pinned to its set (:mod:`ats.core.pins`): the paper rung of ``{"notional": 1000000}``
is judged only on sessions that ran those params and that bar spec on the current code, and
admits only sessions with the same set.  Before a gate (or ``ats ladder status``) trusts a
verdict row it checks it against its audit row (:mod:`ats.governance.gate_rows`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, select

from ats.core.errors import GateRefused, GateRowUnverified
from ats.core.params import DEFAULT_BAR_SPEC
from ats.core.pins import ParamSet, needs_own_evidence, param_set, stored_set
from ats.governance import audit, gate_rows
from ats.store import Store, open_store
from ats.store.engine import inserted_id
from ats.store.models import rung_verdicts
from ats.strategies import get_strategy

if TYPE_CHECKING:
    from ats.core.settings import Settings
    from ats.research.backtest import BacktestResult

RUNGS = ("backtest", "paper")


@dataclass(frozen=True)
class StoredVerdict:
    """A rung verdict as recorded."""

    id: int
    rung: str
    strategy: str
    instrument: str
    passed: bool
    reasons: list[str]
    metrics: dict[str, Any]
    params: dict[str, Any]
    data_start: str | None
    data_end: str | None
    fingerprint: str
    at: str
    audit_seq: int
    bar_spec: str | None = None  # None: recorded before params pinning (matches no set)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def pinned(self) -> ParamSet | None:
        return stored_set(self.params, self.bar_spec)

    def backing(self) -> gate_rows.Backing:
        """What its audit row must say (see :mod:`ats.governance.gate_rows`)."""
        return gate_rows.Backing(
            label=f"{self.rung} verdict", row_id=self.id, audit_seq=self.audit_seq, actions=(f"ladder.{self.rung}",),
            family=(f"ladder.{self.rung}",), subject=f"{self.strategy}@{self.instrument}", at=self.at,
            payload={"passed": self.passed, "reasons": self.reasons, "params": self.params, "bar_spec": self.bar_spec,
                     "data_start": self.data_start, "data_end": self.data_end, "fingerprint": self.fingerprint,
                     "metrics": self.metrics})


def _from_row(row: Row[Any]) -> StoredVerdict:
    return StoredVerdict(row.id, row.rung, row.strategy, row.instrument, bool(row.passed),
                         json.loads(row.reasons), json.loads(row.metrics), json.loads(row.params),
                         row.data_start, row.data_end, row.fingerprint, row.at, row.audit_seq, row.bar_spec)


def record_verdict(rung: str, strategy: str, instrument: str, *, passed: bool, reasons: list[str],
                   metrics: dict[str, Any], params: dict[str, Any], data_start: str | None,
                   data_end: str | None, fingerprint: str, actor: str, bar_spec: str = DEFAULT_BAR_SPEC,
                   store: Store | None = None) -> StoredVerdict:
    """Store a verdict and its audit row in one transaction, pinned to the canonical params and
    bar spec; the row's ``at`` is its audit row's time (both are checked against each other)."""
    if rung not in RUNGS:
        raise ValueError(f"unknown rung {rung!r}")
    pinned = param_set(strategy, instrument, params, bar_spec)
    store = store or open_store()
    metrics = json.loads(audit.canonical_json(metrics))
    with store.write() as conn:
        row = audit.append_in(conn, actor, f"ladder.{rung}", f"{strategy}@{instrument}", {
            "passed": passed, "reasons": reasons, "params": pinned.params, "bar_spec": pinned.bar_spec,
            "data_start": data_start, "data_end": data_end, "fingerprint": fingerprint, "metrics": metrics,
        })
        result = conn.execute(rung_verdicts.insert().values(
            rung=rung, strategy=strategy, instrument=instrument, passed=int(passed),
            reasons=audit.canonical_json(reasons), metrics=audit.canonical_json(metrics),
            params=pinned.params_json, bar_spec=pinned.bar_spec, data_start=data_start, data_end=data_end,
            fingerprint=fingerprint, at=row.ts, audit_seq=row.seq))
    return StoredVerdict(inserted_id(result), rung, strategy, instrument, passed, reasons,
                         metrics, pinned.params, data_start, data_end, fingerprint, row.ts, row.seq,
                         pinned.bar_spec)


def latest_verdict(rung: str, strategy: str, instrument: str, pinned: ParamSet | None = None, *,
                   store: Store | None = None) -> StoredVerdict | None:
    """The newest verdict of the rung for the sleeve (and, given ``pinned``, for that set)."""
    store = store or open_store()
    query = (select(rung_verdicts)
             .where(rung_verdicts.c.rung == rung, rung_verdicts.c.strategy == strategy,
                    rung_verdicts.c.instrument == instrument))
    if pinned is not None:
        query = query.where(rung_verdicts.c.params == pinned.params_json, rung_verdicts.c.bar_spec == pinned.bar_spec)
    with store.read() as conn:
        row = conn.execute(query.order_by(rung_verdicts.c.id.desc()).limit(1)).first()
    return _from_row(row) if row is not None else None


def require_paper_rung(strategy: str, instrument: str, params: str | dict | None = None,
                       bar_spec: str | None = None, *, store: Store | None = None) -> StoredVerdict:
    """Gate: the newest paper verdict of this params/bar-spec set passed, on the current strategy
    code, and its audit row backs it.

    A set with no verdict of its own is refused naming the set the rung was earned with and
    the requested one.
    """
    store = store or open_store()
    wanted = param_set(strategy, instrument, params, bar_spec)
    verdict = latest_verdict("paper", strategy, instrument, wanted, store=store)
    sleeve = f"{strategy}@{instrument}"
    if verdict is None:
        other = latest_verdict("paper", strategy, instrument, store=store)
        earned = other.pinned if other is not None else None
        if earned is None:
            raise GateRefused("paper-rung", f"{sleeve}: the paper rung has not been judged for {wanted.describe()}",
                              f"run paper sessions, then `ats ladder paper --strategy {strategy} --instrument "
                              f"{instrument} {wanted.cli_args()}`")
        raise GateRefused(
            "paper-rung", f"{sleeve}: the paper rung was earned with {earned.describe()}, "
            f"not with the requested {wanted.describe()}", needs_own_evidence(strategy, instrument, wanted))
    gate_rows.require(store, "paper-rung", [verdict.backing()])
    if not verdict.passed:
        raise GateRefused("paper-rung", f"{sleeve}: the paper rung FAILED for {wanted.describe()} "
                                        f"({'; '.join(verdict.reasons)})",
                          f"run more paper sessions with this set until `ats ladder paper --strategy {strategy} "
                          f"--instrument {instrument} {wanted.cli_args()}` passes")
    if verdict.fingerprint != get_strategy(strategy).fingerprint():
        raise GateRefused("paper-rung", f"{sleeve}: the strategy code changed since its paper rung passed",
                          "run paper sessions with the new code")
    return verdict


def status(strategy: str, instrument: str, params: str | dict | None = None, bar_spec: str | None = None, *,
           store: Store | None = None) -> list[dict[str, Any]]:
    """Each rung (backtest, paper, live approval) of one params/bar-spec set: PASS / FAIL / STALE
    (code changed) / NOT RUN / FORGED (the audit log does not back the row), when and why."""
    from ats.core.errors import ApprovalMissing
    from ats.governance.approvals import require_live_approval

    store = store or open_store()
    fingerprint = get_strategy(strategy).fingerprint()
    wanted = param_set(strategy, instrument, params, bar_spec)
    rows: list[dict[str, Any]] = []
    for rung in RUNGS:
        verdict = latest_verdict(rung, strategy, instrument, wanted, store=store)
        if verdict is None:
            other = latest_verdict(rung, strategy, instrument, store=store)
            why = ([f"judged only for other params: newest {other.pinned.describe()}"]
                   if other is not None and other.pinned is not None else [])
            rows.append({"rung": rung, "result": "NOT RUN", "when": None, "why": why})
            continue
        why = list(verdict.reasons)
        result = "PASS" if verdict.passed else "FAIL"
        try:
            gate_rows.require(store, rung, [verdict.backing()])
        except GateRowUnverified as exc:
            result, why = "FORGED", [str(exc).removeprefix(f"[gate: {rung}] ")]
        else:
            if verdict.fingerprint != fingerprint:
                result = "STALE"
                why.append("strategy code changed since this verdict")
        rows.append({"rung": rung, "result": result, "when": verdict.at, "why": why,
                     "metrics": verdict.metrics})
    try:
        approval = require_live_approval(strategy, instrument, wanted.params, wanted.bar_spec, store=store)
        rows.append({"rung": "approval", "result": "PASS", "when": approval.approved_at,
                     "why": [f"approved by {approval.approved_by}: {approval.note}"]})
    except GateRowUnverified as exc:
        rows.append({"rung": "approval", "result": "FORGED", "when": None,
                     "why": [str(exc).removeprefix("[gate: approval] ")]})
    except ApprovalMissing as exc:
        rows.append({"rung": "approval", "result": "NOT RUN", "when": None,
                     "why": [str(exc).removeprefix("[gate: approval] ")]})
    return rows


# --- running the rungs -------------------------------------------------------------------------

def run_backtest_rung(strategy: str, instrument: str, params: dict[str, Any], *, settings: Settings,
                      start: str | None = None, end: str | None = None, report: str | None = None,
                      store: Store | None = None) -> tuple[BacktestResult, StoredVerdict]:
    """Backtest over the stored bars, judge, store the verdict (audited), write the report.

    The catalog is filled with the shipped QQQ bars on first use, so a fresh checkout can
    backtest at once.
    """
    from ats.core.params import parse_params
    from ats.research.backtest import run_backtest
    from ats.research.catalog import ensure_default_data
    from ats.research.ladder_rules import judge_backtest
    from ats.research.report import check_output_path

    parse_params(strategy, params, instrument)  # refuse bad params before any work
    if report:
        check_output_path(report, "--report")  # and a report that could not be written
    ensure_default_data(settings.data_dir)
    result = run_backtest(strategy, instrument, params, start=start, end=end, data_dir=settings.data_dir)
    verdict = judge_backtest(result, settings)
    if report:
        from pathlib import Path

        from ats.research.report import write_html_report

        write_html_report(result, Path(report), verdict=verdict)
    stored = record_verdict(
        "backtest", strategy, instrument, passed=verdict.passed, reasons=list(verdict.reasons),
        metrics=result.metrics(), params=dict(params), data_start=str(result.start), data_end=str(result.end),
        fingerprint=result.fingerprint, actor=settings.operator, store=store)
    return result, stored


def paper_records(strategy: str, instrument: str, params: str | dict | None = None,
                  bar_spec: str | None = None, *, store: Store | None = None) -> list:
    """The recorded paper sessions of ``strategy`` on ``instrument`` that are evidence for this
    params/bar-spec set: same code fingerprint, same canonical params, same bar spec."""
    from ats.core.errors import InputError
    from ats.governance.sessions import list_sessions, session_bars_of, session_decisions_of
    from ats.research.ladder_rules import PaperSessionRecord
    from ats.store.models import session_orders

    store = store or open_store()
    current = get_strategy(strategy).fingerprint()
    wanted = param_set(strategy, instrument, params, bar_spec)
    records = []
    for session in list_sessions("paper", limit=100_000, store=store):
        sleeve = next((s for s in session.sleeves
                       if s["strategy"] == strategy and s["instrument"] == instrument), None)
        # Only sessions that ran the current code count: a paper rung is earned by this code.
        if sleeve is None or sleeve.get("fingerprint") != current:
            continue
        # …and by these params on these bars: another set needs its own evidence.
        try:
            ran = param_set(strategy, instrument, sleeve.get("params") or {}, sleeve.get("bar_spec"))
        except InputError:
            continue
        if ran != wanted:
            continue
        bars = [(ts[:10], o, h, low, c, v) for ts, o, h, low, c, v in session_bars_of(session.id, instrument, store=store)]
        decisions = session_decisions_of(session.id, instrument, store=store)
        with store.read() as conn:
            exits = conn.execute(
                select(session_orders.c.client_order_id).distinct()
                .where(session_orders.c.session_id == session.id, session_orders.c.instrument == instrument,
                       session_orders.c.event == "filled", session_orders.c.side == "SELL")).all()
        records.append(PaperSessionRecord(
            session_id=session.id, started_at=session.started_at, stopped_at=session.stopped_at,
            status=session.status, bars=bars, decisions=decisions, completed_trades=len(exits),
            params=wanted.params,  # canonical: {} and the defaults written out are one set
            gateway=session.gateway_info))  # real gateway on real time, or a simulator
    return records


def evaluate_paper_rung(strategy: str, instrument: str, params: str | dict | None = None,
                        bar_spec: str | None = None, *, settings: Settings,
                        store: Store | None = None) -> StoredVerdict:
    """Judge the paper rung of one params/bar-spec set (default: the strategy's defaults on
    1-DAY-LAST) from the sessions that ran exactly that set, and store the verdict (audited)."""
    from ats.research.ladder_rules import judge_paper

    store = store or open_store()
    wanted = param_set(strategy, instrument, params, bar_spec)
    records = paper_records(strategy, instrument, wanted.params, wanted.bar_spec, store=store)
    verdict = judge_paper(strategy, instrument, records, settings)
    dates = sorted(b[0] for r in records for b in r.bars)
    return record_verdict(
        "paper", strategy, instrument, passed=verdict.passed, reasons=list(verdict.reasons),
        metrics=dict(verdict.metrics), params=wanted.params, bar_spec=wanted.bar_spec,
        data_start=dates[0] if dates else None, data_end=dates[-1] if dates else None,
        fingerprint=get_strategy(strategy).fingerprint(), actor=settings.operator, store=store)

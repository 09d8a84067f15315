"""The research ladder's record: rung verdicts stored with their evidence, and the status.

Rungs: ``backtest`` (``ats ladder run``), ``paper`` (judged from recorded paper sessions), then
the human ``approval`` (``ats approve-live``).  Each verdict is stored with the parameters, the
data range and the strategy's code fingerprint, and audited.  The judgement itself (what
passes) lives in :mod:`ats.ladder_rules`; this module persists and reads it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select

from ats import audit
from ats.errors import GateRefused
from ats.store import Store, open_store, utcnow_iso
from ats.store.models import rung_verdicts
from ats.strategies import get_strategy

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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _from_row(row) -> StoredVerdict:  # noqa: ANN001
    return StoredVerdict(row.id, row.rung, row.strategy, row.instrument, bool(row.passed),
                         json.loads(row.reasons), json.loads(row.metrics), json.loads(row.params),
                         row.data_start, row.data_end, row.fingerprint, row.at, row.audit_seq)


def record_verdict(rung: str, strategy: str, instrument: str, *, passed: bool, reasons: list[str],
                   metrics: dict[str, Any], params: dict[str, Any], data_start: str | None,
                   data_end: str | None, fingerprint: str, actor: str,
                   store: Store | None = None) -> StoredVerdict:
    """Store a verdict and its audit row in one transaction."""
    if rung not in RUNGS:
        raise ValueError(f"unknown rung {rung!r}")
    store = store or open_store()
    at = utcnow_iso()
    metrics_text = audit.canonical_json(metrics)
    with store.write() as conn:
        row = audit.append_in(conn, actor, f"ladder.{rung}", f"{strategy}@{instrument}", {
            "passed": passed, "reasons": reasons, "params": params, "data_start": data_start,
            "data_end": data_end, "fingerprint": fingerprint, "metrics": json.loads(metrics_text),
        })
        result = conn.execute(rung_verdicts.insert().values(
            rung=rung, strategy=strategy, instrument=instrument, passed=int(passed),
            reasons=audit.canonical_json(reasons), metrics=metrics_text,
            params=audit.canonical_json(params), data_start=data_start, data_end=data_end,
            fingerprint=fingerprint, at=at, audit_seq=row.seq))
    return StoredVerdict(result.inserted_primary_key[0], rung, strategy, instrument, passed, reasons,
                         json.loads(metrics_text), params, data_start, data_end, fingerprint, at, row.seq)


def latest_verdict(rung: str, strategy: str, instrument: str, *,
                   store: Store | None = None) -> StoredVerdict | None:
    store = store or open_store()
    with store.read() as conn:
        row = conn.execute(
            select(rung_verdicts)
            .where(rung_verdicts.c.rung == rung, rung_verdicts.c.strategy == strategy,
                   rung_verdicts.c.instrument == instrument)
            .order_by(rung_verdicts.c.id.desc()).limit(1)
        ).first()
    return _from_row(row) if row is not None else None


def require_paper_rung(strategy: str, instrument: str, *, store: Store | None = None) -> StoredVerdict:
    """Gate: the newest paper verdict passed and was judged on the current strategy code."""
    verdict = latest_verdict("paper", strategy, instrument, store=store)
    sleeve = f"{strategy}@{instrument}"
    if verdict is None:
        raise GateRefused("paper-rung", f"{sleeve}: the paper rung has not been judged",
                          f"run paper sessions, then `ats ladder status --strategy {strategy} --instrument {instrument}`")
    if not verdict.passed:
        raise GateRefused("paper-rung", f"{sleeve}: the paper rung FAILED ({'; '.join(verdict.reasons)})")
    if verdict.fingerprint != get_strategy(strategy).fingerprint():
        raise GateRefused("paper-rung", f"{sleeve}: the strategy code changed since its paper rung passed",
                          "run paper sessions with the new code")
    return verdict


def status(strategy: str, instrument: str, *, store: Store | None = None) -> list[dict[str, Any]]:
    """Each rung (backtest, paper, live approval) with PASS/FAIL/NOT RUN, when and why."""
    from ats.approvals import require_live_approval
    from ats.errors import ApprovalMissing

    store = store or open_store()
    fingerprint = get_strategy(strategy).fingerprint()
    rows: list[dict[str, Any]] = []
    for rung in RUNGS:
        verdict = latest_verdict(rung, strategy, instrument, store=store)
        if verdict is None:
            rows.append({"rung": rung, "result": "NOT RUN", "when": None, "why": []})
            continue
        why = list(verdict.reasons)
        result = "PASS" if verdict.passed else "FAIL"
        if verdict.fingerprint != fingerprint:
            result = "STALE"
            why.append("strategy code changed since this verdict")
        rows.append({"rung": rung, "result": result, "when": verdict.at, "why": why,
                     "metrics": verdict.metrics})
    try:
        approval = require_live_approval(strategy, instrument, store=store)
        rows.append({"rung": "approval", "result": "PASS", "when": approval.approved_at,
                     "why": [f"approved by {approval.approved_by}: {approval.note}"]})
    except ApprovalMissing as exc:
        rows.append({"rung": "approval", "result": "NOT RUN", "when": None,
                     "why": [str(exc).removeprefix("[gate: approval] ")]})
    return rows


# --- running the rungs -------------------------------------------------------------------------

def run_backtest_rung(strategy: str, instrument: str, params: dict[str, Any], *, settings,  # noqa: ANN001
                      start: str | None = None, end: str | None = None, report: str | None = None,
                      store: Store | None = None):  # noqa: ANN201 - (BacktestResult, StoredVerdict)
    """Backtest over the stored bars, judge, store the verdict (audited), write the report.

    The catalog is filled with the shipped QQQ bars on first use, so a fresh checkout can
    backtest at once.
    """
    from ats.backtest import run_backtest
    from ats.catalog import ensure_default_data
    from ats.ladder_rules import judge_backtest
    from ats.params import parse_params

    parse_params(strategy, params, instrument)  # refuse bad params before any work
    ensure_default_data(settings.data_dir)
    result = run_backtest(strategy, instrument, params, start=start, end=end, data_dir=settings.data_dir)
    verdict = judge_backtest(result, settings)
    if report:
        from pathlib import Path

        from ats.report import write_html_report

        write_html_report(result, Path(report), verdict=verdict)
    stored = record_verdict(
        "backtest", strategy, instrument, passed=verdict.passed, reasons=list(verdict.reasons),
        metrics=result.metrics(), params=dict(params), data_start=str(result.start), data_end=str(result.end),
        fingerprint=result.fingerprint, actor=settings.operator, store=store)
    return result, stored


def paper_records(strategy: str, instrument: str, *, store: Store | None = None) -> list:
    """The recorded paper sessions that ran the current code of ``strategy`` on ``instrument``."""
    from ats.ladder_rules import PaperSessionRecord
    from ats.sessions import list_sessions, session_bars_of, session_decisions_of
    from ats.store.models import session_orders

    store = store or open_store()
    current = get_strategy(strategy).fingerprint()
    records = []
    for session in list_sessions("paper", limit=100_000, store=store):
        sleeve = next((s for s in session.sleeves
                       if s["strategy"] == strategy and s["instrument"] == instrument), None)
        # Only sessions that ran the current code count: a paper rung is earned by this code.
        if sleeve is None or sleeve.get("fingerprint") != current:
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
            params=dict(sleeve.get("params") or {})))
    return records


def evaluate_paper_rung(strategy: str, instrument: str, *, settings, store: Store | None = None) -> StoredVerdict:  # noqa: ANN001
    """Judge the paper rung from the recorded sessions and store the verdict (audited)."""
    from ats.ladder_rules import judge_paper

    store = store or open_store()
    records = paper_records(strategy, instrument, store=store)
    verdict = judge_paper(strategy, instrument, records, settings)
    dates = sorted(b[0] for r in records for b in r.bars)
    params = records[-1].params if records else {}
    return record_verdict(
        "paper", strategy, instrument, passed=verdict.passed, reasons=list(verdict.reasons),
        metrics=dict(verdict.metrics), params=dict(params), data_start=dates[0] if dates else None,
        data_end=dates[-1] if dates else None, fingerprint=get_strategy(strategy).fingerprint(),
        actor=settings.operator, store=store)

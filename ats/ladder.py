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

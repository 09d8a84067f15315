"""The research ladder's judgement: pure functions from results to a PASS/FAIL verdict.

Storing and auditing verdicts is the caller's job (``ats.research.ladder``); nothing here writes.

* **Backtest rung** (:func:`judge_backtest`): at least ``ladder.min_trades`` completed trades
  and a maximum drawdown of at most ``ladder.max_drawdown``.
* **Paper rung** (:func:`judge_paper`), over the finished paper sessions of one strategy and
  instrument that ran with the most recent session's params:

  - no session ended in error;
  - at least ``ladder.paper_min_days`` distinct trading days (bars) received;
  - at least ``ladder.paper_min_trades`` completed trades;
  - **parity**: the bars the sessions received, replayed in order through the backtest engine
    with a strategy restart at the start of each session (as the node restarts each day and
    adopts the open position), give the same order decisions ``(date, side, quantity)`` as
    the sessions made.  Match ratio = matched / max(#paper, #replay) (1.0 when both are
    empty), matched counting each decision at most once; it must be ≥ ``ladder.parity_min``.

  **Evidence** (issue 17, finding 2): each session records the gateway it traded against
  (:mod:`ats.gateway.identity`).  Sessions against a real gateway on real time are judged on
  their own first, their trading days counted on the wall clock — the exchange days (XNYS) on
  which they ran, never the bars a replay fed them; if they pass, the verdict's ``evidence`` is
  ``gateway``.  Otherwise every session is judged with days counted from the bars received,
  and a pass is ``evidence: simulator`` — which admits a live session only against a
  simulator (``ats.trading.gates.Gates.paper_evidence_fits``).

A passing verdict lists why it passed; a failing one lists every check that failed.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from ats.core.settings import Settings
    from ats.governance.sessions import SessionStatus
    from ats.research.backtest import BacktestResult

    # A decision as recorded or replayed: ``(bar date, "BUY"|"SELL", quantity)`` (the date as text,
    # a date or an ns timestamp) or a dict with those keys.
    type DecisionIn = Sequence[Any] | Mapping[str, Any]
    # ``replay(strategy, instrument, params, bars, restarts)``: the replayed decisions.
    type Replay = Callable[[str, str, dict[str, Any], list[tuple], list[str]], Sequence[DecisionIn]]

SESSION_STATUSES = ("stopped", "killed", "error", "running")


@dataclass
class RungVerdict:
    """The verdict of one rung: passed or not, the reasons in words, and the numbers behind it."""

    rung: str
    passed: bool
    reasons: list[str]
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


@dataclass
class PaperSessionRecord:
    """What one paper session recorded (written by the node runner, read by the paper rung).

    ``bars`` are the daily bars the strategy received, ``(date, open, high, low, close,
    volume)`` with the date as ``YYYY-MM-DD`` (or a ``date``/ns timestamp); ``decisions`` the
    orders it submitted, ``(bar date, "BUY"|"SELL", quantity)`` — see
    ``IbsReversion.decisions``.
    """

    session_id: str
    started_at: datetime | str
    stopped_at: datetime | str | None
    status: SessionStatus
    bars: list[tuple] = field(default_factory=list)
    decisions: list[tuple] = field(default_factory=list)
    completed_trades: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    #: The gateway it traded against (``ats.gateway.identity.GatewayIdentity.as_dict()``); ``{}``: unknown.
    gateway: dict[str, Any] = field(default_factory=dict)

    @property
    def real_time(self) -> bool:
        """Traded against a real gateway on real time (``gateway`` kind, real-time clock)."""
        return bool(self.gateway.get("real_time"))

    def __post_init__(self) -> None:
        if self.status not in SESSION_STATUSES:
            raise ValueError(f"session status must be one of {', '.join(SESSION_STATUSES)} (got {self.status!r})")

    def to_dict(self) -> dict[str, Any]:
        def stamp(value: object) -> object:
            return value.isoformat() if isinstance(value, (date, datetime)) else value

        return {
            "session_id": self.session_id,
            "started_at": stamp(self.started_at),
            "stopped_at": stamp(self.stopped_at),
            "status": self.status,
            "bars": [[stamp(b[0]), *b[1:]] for b in self.bars],
            "decisions": [[stamp(d[0]), d[1], d[2]] for d in self.decisions],
            "completed_trades": self.completed_trades,
            "params": dict(self.params),
            "gateway": dict(self.gateway),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PaperSessionRecord:
        return cls(
            session_id=data["session_id"],
            started_at=data["started_at"],
            stopped_at=data.get("stopped_at"),
            status=data["status"],
            bars=[tuple(b) for b in data.get("bars", [])],
            decisions=[tuple(d) for d in data.get("decisions", [])],
            completed_trades=int(data.get("completed_trades", 0)),
            params=dict(data.get("params") or {}),
            gateway=dict(data.get("gateway") or {}),
        )


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def judge_backtest(result: BacktestResult, settings: Settings) -> RungVerdict:
    """PASS when ``result`` has enough completed trades and a small enough maximum drawdown."""
    min_trades = settings.ladder.min_trades
    max_dd = settings.ladder.max_drawdown
    failures, passes = [], []
    if result.num_trades < min_trades:
        failures.append(f"only {result.num_trades} completed trades; at least {min_trades} are required "
                        f"(ATS_LADDER_MIN_TRADES)")
    else:
        passes.append(f"{result.num_trades} completed trades ≥ {min_trades}")
    if result.max_drawdown > max_dd:
        failures.append(f"maximum drawdown {_pct(result.max_drawdown)} exceeds the limit {_pct(max_dd)} "
                        f"(ATS_LADDER_MAX_DRAWDOWN)")
    else:
        passes.append(f"maximum drawdown {_pct(result.max_drawdown)} ≤ {_pct(max_dd)}")
    metrics = {
        **result.metrics(),
        "params": dict(result.params),
        "data_range": [result.start, result.end],
        "fingerprint": result.fingerprint,
        "thresholds": {"min_trades": min_trades, "max_drawdown": max_dd},
    }
    return RungVerdict("backtest", not failures, failures or passes, metrics)


def _day(value: object) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1e9, tz=UTC).date().isoformat() if value > 10**12 else str(value)
    return str(value)[:10]


def _decision(item: DecisionIn) -> tuple[str, str, int]:
    if isinstance(item, dict):
        return (_day(item["date"]), str(item["side"]).upper(), int(item["quantity"]))
    day, side, quantity = tuple(item)[:3]
    return (_day(day), str(side).upper(), int(quantity))


def match_ratio(paper: Sequence[DecisionIn], replay: Sequence[DecisionIn]) -> tuple[int, float]:
    """``(matched, ratio)``: decisions found in both (each counted once) / the longer list."""
    a = Counter(_decision(d) for d in paper)
    b = Counter(_decision(d) for d in replay)
    matched = sum((a & b).values())
    longest = max(sum(a.values()), sum(b.values()))
    return matched, (1.0 if longest == 0 else matched / longest)


def _params_key(params: dict[str, Any]) -> str:
    return json.dumps(params or {}, sort_keys=True)


def judge_paper(strategy: str, instrument: str, records: list[PaperSessionRecord], settings: Settings,
                *, replay: Replay | None = None) -> RungVerdict:
    """Judge the paper rung of ``strategy`` on ``instrument`` from its recorded sessions.

    ``replay(strategy, instrument, params, bars, restarts)`` returns the replayed decisions;
    by default it is the real backtest engine (:func:`ats.research.backtest.run_backtest`).
    Real-gateway evidence first, simulator evidence otherwise (see the module docstring).
    """
    real = [r for r in records if r.real_time]
    if real:
        on_gateway = _judge_paper(strategy, instrument, real, settings, replay=replay, days_by="wall")
        on_gateway.metrics["evidence"] = "gateway"
        if on_gateway.passed or len(real) == len(records):
            return on_gateway
    verdict = _judge_paper(strategy, instrument, records, settings, replay=replay, days_by="bars")
    verdict.metrics["evidence"] = "simulator"
    verdict.metrics["real_time_sessions"] = len(real)
    if verdict.passed:
        verdict.reasons.append(
            f"evidence: simulator — {len(records) - len(real)} of {len(records)} sessions ran on a simulator or a "
            "replayed clock; this admits a live session only against a simulator (a real live gateway needs "
            "paper sessions on the real paper gateway, on real trading days)")
    return verdict


def _trading_days_run(record: PaperSessionRecord) -> set[str]:
    """The XNYS trading days (New York dates) on which a session ran, by the wall clock."""
    import exchange_calendars as xcals
    import pandas as pd

    start = _as_datetime(record.started_at)
    if start is None:
        return set()
    stop = _as_datetime(record.stopped_at) or start
    first = pd.Timestamp(start).tz_convert("America/New_York").date()
    last = pd.Timestamp(stop).tz_convert("America/New_York").date()
    if last < first:
        return set()
    calendar = xcals.get_calendar("XNYS")
    return {day.date().isoformat() for day in calendar.sessions_in_range(pd.Timestamp(first), pd.Timestamp(last))}


def _as_datetime(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _judge_paper(strategy: str, instrument: str, records: list[PaperSessionRecord], settings: Settings,
                 *, replay: Replay | None = None, days_by: Literal["wall", "bars"] = "bars") -> RungVerdict:
    min_days = settings.ladder.paper_min_days
    min_trades = settings.ladder.paper_min_trades
    parity_min = settings.ladder.parity_min
    thresholds = {"min_days": min_days, "min_trades": min_trades, "parity_min": parity_min}
    finished = sorted((r for r in records if r.status != "running"), key=lambda r: str(r.started_at))
    running = [r.session_id for r in records if r.status == "running"]
    if not finished:
        reason = f"no finished paper sessions recorded for {strategy} on {instrument}"
        if running:
            reason += f" ({len(running)} still running)"
        return RungVerdict("paper", False, [reason], {"sessions": 0, "running": running,
                                                      "thresholds": thresholds})

    current = _params_key(finished[-1].params)
    sessions = [r for r in finished if _params_key(r.params) == current]
    ignored = [r.session_id for r in finished if _params_key(r.params) != current]
    failures, passes = [], []

    errored = [r.session_id for r in sessions if r.status == "error"]
    for session_id in errored:
        failures.append(f"session {session_id} ended in error")
    if not errored:
        passes.append(f"none of the {len(sessions)} sessions ended in error")

    if days_by == "wall":
        days = sorted({day for r in sessions for day in _trading_days_run(r)})
        counted = "real trading days on the real paper gateway"
    else:
        days = sorted({_day(b[0]) for r in sessions for b in r.bars})
        counted = "trading days on paper"
    if len(days) < min_days:
        failures.append(f"only {len(days)} {counted}; at least {min_days} are required "
                        f"(ATS_LADDER_PAPER_MIN_DAYS)")
    else:
        passes.append(f"{len(days)} {counted} ≥ {min_days}")

    trades = sum(r.completed_trades for r in sessions)
    if trades < min_trades:
        failures.append(f"only {trades} completed paper trades; at least {min_trades} are required "
                        f"(ATS_LADDER_PAPER_MIN_TRADES)")
    else:
        passes.append(f"{trades} completed paper trades ≥ {min_trades}")

    paper_decisions = [_decision(d) for r in sessions for d in r.decisions]
    replayed: list[tuple[str, str, int]] = []
    parity_error = None
    bars = [b for r in sessions for b in r.bars]
    if bars:
        restarts = [min(_day(b[0]) for b in r.bars) for r in sessions[1:] if r.bars]
        try:
            run = replay or _replay_with_backtest
            replayed = [_decision(d) for d in run(strategy, instrument, sessions[-1].params, bars, restarts)]
        except Exception as exc:  # noqa: BLE001 - any replay failure is a failed parity check
            parity_error = f"{type(exc).__name__}: {exc}"
    matched, ratio = match_ratio(paper_decisions, replayed)
    if parity_error:
        failures.append(f"the backtest replay of the paper bars failed: {parity_error}")
    elif ratio < parity_min:
        missing = sorted((Counter(paper_decisions) - Counter(replayed)).elements())
        extra = sorted((Counter(replayed) - Counter(paper_decisions)).elements())
        detail = []
        if missing:
            detail.append(f"paper only: {_show(missing)}")
        if extra:
            detail.append(f"replay only: {_show(extra)}")
        failures.append(f"paper/backtest parity {ratio:.2f} is below {parity_min:.2f} "
                        f"({matched} of {max(len(paper_decisions), len(replayed))} decisions match; "
                        f"{'; '.join(detail)}) (ATS_LADDER_PARITY_MIN)")
    else:
        passes.append(f"paper/backtest parity {ratio:.2f} ≥ {parity_min:.2f} "
                      f"({matched} of {max(len(paper_decisions), len(replayed))} decisions match)")

    metrics = {
        "sessions": len(sessions),
        "sessions_ignored_other_params": ignored,
        "running": running,
        "errored": errored,
        "trading_days": len(days),
        "first_day": days[0] if days else None,
        "last_day": days[-1] if days else None,
        "completed_trades": trades,
        "paper_decisions": len(paper_decisions),
        "replay_decisions": len(replayed),
        "matched_decisions": matched,
        "parity": ratio,
        "params": dict(sessions[-1].params),
        "thresholds": thresholds,
    }
    return RungVerdict("paper", not failures, failures or passes, metrics)


def _show(items: list[tuple[str, str, int]], limit: int = 5) -> str:
    shown = ", ".join(f"{d} {s} {q}" for d, s, q in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _replay_with_backtest(strategy: str, instrument: str, params: dict[str, Any], bars: list,
                          restarts: list[str]) -> list[tuple[str, str, int]]:
    from ats.research.backtest import run_backtest

    result = run_backtest(strategy, instrument, params, bars=bars, restarts=restarts)
    return result.decision_tuples()

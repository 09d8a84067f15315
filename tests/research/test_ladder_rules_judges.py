"""The ladder's judgement: backtest and paper rungs pass and fail for the right reasons.

Paper records are built from real replay decisions of real QQQ bars, then perturbed.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from ats.core.settings import load_settings
from ats.research.backtest import run_backtest
from ats.research.catalog import shipped_csv
from ats.research.ladder_rules import PaperSessionRecord, judge_backtest, judge_paper, match_ratio


@pytest.fixture
def settings():
    return load_settings(env={}, dotenv="/nonexistent")


@pytest.fixture(scope="module")
def bars():
    frame = pd.read_csv(shipped_csv())
    frame = frame[(frame["date"] >= "2024-01-01") & (frame["date"] <= "2024-06-30")]
    return [tuple(r) for r in frame[["date", "open", "high", "low", "close", "volume"]].itertuples(index=False)]


@pytest.fixture(scope="module")
def sessions(bars):
    """Paper sessions of ~10 bars each, with the decisions a faithful strategy would have made."""
    chunks = [bars[i:i + 10] for i in range(0, len(bars), 10)]
    restarts = [c[0][0] for c in chunks[1:]]
    replay = run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, bars=bars, restarts=restarts)
    records = []
    for n, chunk in enumerate(chunks):
        days = {b[0] for b in chunk}
        decisions = [(d["date"], d["side"], d["quantity"]) for d in replay.decisions if d["date"] in days]
        trades = sum(1 for t in replay.trades if chunk[0][0] <= t["exit_date"] <= chunk[-1][0])
        records.append(PaperSessionRecord(
            session_id=f"s{n}", started_at=f"{chunk[0][0]}T13:25:00", stopped_at=f"{chunk[-1][0]}T20:05:00",
            status="stopped", bars=list(chunk), decisions=decisions, completed_trades=trades, params={},
        ))
    assert sum(r.completed_trades for r in records) >= 10
    return records


def test_backtest_rung_passes_with_enough_trades_and_small_drawdown(settings):
    result = run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, start="2015-01-01", end="2024-12-31")
    verdict = judge_backtest(result, settings)
    assert verdict.passed, verdict.reasons
    assert verdict.rung == "backtest"
    assert any("completed trades ≥ 20" in r for r in verdict.reasons)
    assert verdict.metrics["fingerprint"] == result.fingerprint
    assert verdict.to_dict()["verdict"] == "PASS"


def test_backtest_rung_fails_on_too_few_trades(settings):
    result = run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, start="2024-11-01", end="2024-12-31")
    verdict = judge_backtest(result, settings)
    assert not verdict.passed
    assert verdict.reasons == [f"only {result.num_trades} completed trades; at least 20 are required "
                               "(ATS_LADDER_MIN_TRADES)"]


def test_backtest_rung_fails_on_a_deep_drawdown(settings):
    result = run_backtest("ibs_reversion", "QQQ.NASDAQ", {"notional": 95_000.0}, start="2000-01-01",
                          end="2003-12-31")
    assert result.max_drawdown > 0.35
    verdict = judge_backtest(result, settings)
    assert not verdict.passed
    assert any(r.startswith("maximum drawdown") and "exceeds the limit 35.0%" in r for r in verdict.reasons)


def test_paper_rung_passes_when_sessions_match_the_replay(settings, sessions):
    verdict = judge_paper("ibs_reversion", "QQQ.NASDAQ", sessions, settings)
    assert verdict.passed, verdict.reasons
    assert verdict.metrics["parity"] == 1.0
    assert verdict.metrics["trading_days"] == sum(len(r.bars) for r in sessions)


def test_paper_rung_fails_when_decisions_differ(settings, sessions):
    perturbed = [dataclasses.replace(r) for r in sessions]
    changed = 0
    for record in perturbed:
        if record.decisions and changed < 4:
            day, side, quantity = record.decisions[0]
            record.decisions = [(day, side, quantity + 1), *record.decisions[1:]]
            changed += 1
    verdict = judge_paper("ibs_reversion", "QQQ.NASDAQ", perturbed, settings)
    assert not verdict.passed
    assert len(verdict.reasons) == 1
    assert verdict.reasons[0].startswith("paper/backtest parity")
    assert "paper only:" in verdict.reasons[0] and "replay only:" in verdict.reasons[0]
    assert verdict.metrics["parity"] < 0.95


def test_paper_rung_fails_on_a_session_that_ended_in_error(settings, sessions):
    records = [*sessions[:-1], dataclasses.replace(sessions[-1], status="error")]
    verdict = judge_paper("ibs_reversion", "QQQ.NASDAQ", records, settings)
    assert not verdict.passed
    assert verdict.reasons == [f"session {sessions[-1].session_id} ended in error"]


def test_paper_rung_fails_on_too_few_days_and_trades(settings, sessions):
    verdict = judge_paper("ibs_reversion", "QQQ.NASDAQ", sessions[:1], settings)
    assert not verdict.passed
    assert [r for r in verdict.reasons if "trading days" in r] == []  # 10 days are enough
    assert verdict.reasons[0].startswith(f"only {sessions[0].completed_trades} completed paper trades")
    one_day = [dataclasses.replace(sessions[0], bars=sessions[0].bars[:1], decisions=[], completed_trades=0)]
    verdict = judge_paper("ibs_reversion", "QQQ.NASDAQ", one_day, settings)
    assert verdict.reasons[:2] == [
        "only 1 trading days on paper; at least 10 are required (ATS_LADDER_PAPER_MIN_DAYS)",
        "only 0 completed paper trades; at least 10 are required (ATS_LADDER_PAPER_MIN_TRADES)",
    ]


def test_paper_rung_without_sessions_fails(settings):
    verdict = judge_paper("ibs_reversion", "QQQ.NASDAQ", [], settings)
    assert verdict.reasons == ["no finished paper sessions recorded for ibs_reversion on QQQ.NASDAQ"]


def test_running_sessions_are_not_judged(settings, sessions):
    running = dataclasses.replace(sessions[0], session_id="live-now", status="running", started_at="2099-01-01")
    verdict = judge_paper("ibs_reversion", "QQQ.NASDAQ", [*sessions, running], settings)
    assert verdict.passed
    assert verdict.metrics["running"] == ["live-now"]


def test_record_round_trips_through_a_dict(sessions):
    record = sessions[1]
    assert PaperSessionRecord.from_dict(record.to_dict()).to_dict() == record.to_dict()


def test_match_ratio():
    a = [("2024-01-02", "BUY", 7), ("2024-01-05", "SELL", 7)]
    assert match_ratio([], []) == (0, 1.0)
    assert match_ratio(a, a) == (2, 1.0)
    assert match_ratio(a, a[:1]) == (1, 0.5)
    assert match_ratio(a, [("2024-01-02", "BUY", 8)]) == (0, 0.0)


# --- evidence: a real gateway on real time, or a simulator (issue 17, finding 2) -------------------

REAL_GATEWAY = {"kind": "gateway", "server_version": 200, "clock_offset_s": 0.4, "clock_speed": 1.0,
                "real_time": True}
SIMULATOR = {"kind": "simulator", "server_version": 200, "clock_offset_s": -9.2e7, "clock_speed": 1.1e6,
             "real_time": False}


def _one_75_second_session(sessions, gateway: dict) -> PaperSessionRecord:
    """Every bar and decision of the half year in ONE session of 75 s on 2026-12-02."""
    bars = [b for r in sessions for b in r.bars]
    decisions = [d for r in sessions for d in r.decisions]
    return PaperSessionRecord("fast", "2026-12-02T15:00:00", "2026-12-02T15:01:15", "stopped", bars, decisions,
                              sum(r.completed_trades for r in sessions), {}, gateway)


def test_a_75_second_replay_is_simulator_evidence_only(settings, sessions):
    # Arrange: the half year replayed in one 75 s session on an accelerated simulator
    one = _one_75_second_session(sessions, SIMULATOR)

    # Act
    verdict = judge_paper("ibs_reversion", "QQQ.NASDAQ", [one], settings)

    # Assert: it passes as simulator evidence, and says what that admits
    assert verdict.passed and verdict.metrics["evidence"] == "simulator"
    assert any("admits a live session only against a simulator" in r for r in verdict.reasons)


def test_a_75_second_session_on_a_real_gateway_counts_one_real_trading_day(settings, sessions):
    # Arrange: the same bars, but the session claims a real gateway: its days are the wall clock's
    one = _one_75_second_session(sessions, REAL_GATEWAY)

    # Act
    verdict = judge_paper("ibs_reversion", "QQQ.NASDAQ", [one], settings)

    # Assert
    assert not verdict.passed and verdict.metrics["evidence"] == "gateway"
    assert "only 1 real trading days on the real paper gateway; at least 10 are required" in verdict.reasons[0]


def test_real_gateway_sessions_on_ten_exchange_days_are_gateway_evidence(settings, sessions):
    # Arrange: the sessions ran on real time, each on the exchange day of its bars
    real = [dataclasses.replace(r, gateway=REAL_GATEWAY) for r in sessions]

    # Act
    verdict = judge_paper("ibs_reversion", "QQQ.NASDAQ", real, settings)

    # Assert
    assert verdict.passed, verdict.reasons
    assert verdict.metrics["evidence"] == "gateway"
    assert any("real trading days on the real paper gateway ≥ 10" in r for r in verdict.reasons)


def test_a_weekend_session_on_a_real_gateway_counts_no_trading_day(settings, sessions):
    saturday = dataclasses.replace(sessions[0], started_at="2026-11-28T15:00:00Z", stopped_at="2026-11-28T16:00:00Z",
                                   gateway=REAL_GATEWAY)

    verdict = judge_paper("ibs_reversion", "QQQ.NASDAQ", [saturday], settings)

    assert verdict.metrics["trading_days"] == 0

"""After a restart the strategy adopts the open position: no second buy, and it sells it.

Real engine: the backtest restarts the strategy (removes the instance, starts a fresh one,
as a node restart does) on days when it is long; the fresh instance must carry on exactly as
the uninterrupted one.
"""

from __future__ import annotations

import pandas as pd
import pytest

from ats.research.backtest import run_backtest
from ats.research.catalog import shipped_csv


@pytest.fixture(scope="module")
def rows():
    frame = pd.read_csv(shipped_csv())
    frame = frame[(frame["date"] >= "2022-01-01") & (frame["date"] <= "2023-12-31")]
    return [tuple(r) for r in frame[["date", "open", "high", "low", "close", "volume"]].itertuples(index=False)]


def days_long(result) -> list[str]:
    """Bar dates strictly inside a holding period (after the entry fill, before the exit decision)."""
    dates = [p["date"] for p in result.equity_curve]
    inside = []
    for trade in result.trades:
        exit_decision = next(d["date"] for d in result.decisions
                             if d["side"] == "SELL" and d["date"] >= trade["entry_date"])
        inside += [d for d in dates if trade["entry_date"] < d < exit_decision]
    return inside


def test_restarted_strategy_adopts_the_position_and_decides_as_if_never_stopped(rows):
    straight = run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, bars=rows)
    restart_days = days_long(straight)[::7][:10]
    assert len(restart_days) == 10  # every restart happens while a position is open

    restarted = run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, bars=rows, restarts=restart_days)

    assert restarted.restarts == restart_days
    assert restarted.decisions == straight.decisions
    assert restarted.trades == straight.trades
    sides = [d["side"] for d in restarted.decisions]
    assert all(a != b for a, b in zip(sides, sides[1:], strict=False))  # never two buys in a row


def test_a_restart_while_flat_changes_nothing(rows):
    straight = run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, bars=rows)
    long_days = set(days_long(straight))
    flat_days = [p["date"] for p in straight.equity_curve if p["date"] not in long_days][5::40]
    restarted = run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, bars=rows, restarts=flat_days)
    assert restarted.decisions == straight.decisions


def test_max_hold_counts_from_the_restart(rows):
    # Held bars before a restart are not known to the new instance: the max-hold clock restarts.
    params = {"buy_threshold": 0.3, "sell_threshold": 0.99, "max_hold_bars": 3}
    straight = run_backtest("ibs_reversion", "QQQ.NASDAQ", params, bars=rows)
    first = straight.trades[0]
    dates = [p["date"] for p in straight.equity_curve]
    restart = dates[dates.index(first["entry_date"]) + 1]
    restarted = run_backtest("ibs_reversion", "QQQ.NASDAQ", params, bars=rows, restarts=[restart])
    assert restarted.trades[0]["entry_date"] == first["entry_date"]
    assert restarted.trades[0]["exit_date"] > first["exit_date"]

"""The Nautilus backtest against an independent plain-pandas implementation of the rules.

The reference follows the same stated conventions (decision on bar D's close, fill at the
next bar's open, a decision on the last bar fills at its close, IB fixed commissions), and
must give the same decisions, entries and exits — dates, quantities and prices.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ats.core.commission import ib_commission
from ats.research.backtest import run_backtest
from ats.research.catalog import import_csv, shipped_csv

START, END = "2015-01-01", "2024-12-31"


def reference(frame: pd.DataFrame, buy: float, sell: float, notional: float, max_hold: int | None):
    """Decisions and completed trades of the IBS rules, in plain pandas/Python."""
    frame = frame.reset_index(drop=True)
    span = frame["high"] - frame["low"]
    frame["ibs"] = ((frame["close"] - frame["low"]) / span).where(span > 0)
    decisions, trades = [], []
    long_qty, held, entry = 0, 0, None
    last = len(frame) - 1
    for i, row in frame.iterrows():
        if long_qty:
            held += 1
        if pd.isna(row["ibs"]):
            continue
        fill_price = frame.at[i + 1, "open"] if i < last else row["close"]
        fill_date = frame.at[i + 1, "date"] if i < last else row["date"]
        if long_qty and (row["ibs"] > sell or (max_hold is not None and held >= max_hold)):
            decisions.append((row["date"], "SELL", long_qty))
            fee = ib_commission(long_qty, entry[2]) + ib_commission(long_qty, fill_price)
            trades.append({"entry_date": entry[0], "exit_date": fill_date, "quantity": long_qty,
                           "entry_price": entry[2], "exit_price": fill_price,
                           "pnl": round((fill_price - entry[2]) * long_qty - fee, 2)})
            long_qty, held, entry = 0, 0, None
        elif not long_qty and row["ibs"] < buy:
            quantity = math.floor(notional / row["close"])
            if quantity > 0:
                decisions.append((row["date"], "BUY", quantity))
                long_qty, held, entry = quantity, 0, (fill_date, quantity, fill_price)
    return decisions, trades


def shape(trade: dict) -> tuple:
    """A trade's dates and quantity exactly, its prices and P&L to the cent."""
    return (trade["entry_date"], trade["exit_date"], int(trade["quantity"]),
            round(float(trade["entry_price"]), 4), round(float(trade["exit_price"]), 4),
            round(float(trade["pnl"]), 2))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("catalog")
    import_csv(shipped_csv(), "QQQ.NASDAQ", directory)
    return directory


@pytest.fixture(scope="module")
def qqq():
    return pd.read_csv(shipped_csv())


PARAM_SETS = [
    {},  # the defaults: 0.2 / 0.8 / 4000
    {"buy_threshold": 0.1, "sell_threshold": 0.6, "notional": 2500.0},
    {"buy_threshold": 0.3, "sell_threshold": 0.9, "max_hold_bars": 3},
]


@pytest.mark.parametrize("params", PARAM_SETS, ids=["defaults", "tight", "max-hold"])
def test_nautilus_backtest_matches_the_pandas_reference(data_dir, qqq, params):
    result = run_backtest("ibs_reversion", "QQQ.NASDAQ", params, start=START, end=END, data_dir=data_dir)
    window = qqq[(qqq["date"] >= START) & (qqq["date"] <= END)]
    decisions, trades = reference(window.copy(), params.get("buy_threshold", 0.2),
                                  params.get("sell_threshold", 0.8), params.get("notional", 4000.0),
                                  params.get("max_hold_bars"))
    assert len(decisions) > 100  # a real comparison, not two empty lists
    assert result.decision_tuples() == decisions
    assert [shape(t) for t in result.trades] == [shape(t) for t in trades]
    assert result.num_trades == len(trades)
    assert (result.start, result.end, result.bars) == ("2015-01-02", "2024-12-31", len(window))


def test_the_full_history_matches_the_reference_for_the_defaults(data_dir, qqq):
    result = run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, data_dir=data_dir)
    decisions, trades = reference(qqq.copy(), 0.2, 0.8, 4000.0, None)
    assert result.decision_tuples() == decisions
    assert [(t["entry_date"], t["exit_date"], t["quantity"]) for t in result.trades] == \
        [(t["entry_date"], t["exit_date"], t["quantity"]) for t in trades]
    assert result.bars == 6496


def test_metrics_follow_from_the_equity_curve(data_dir):
    result = run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, start="2020-01-01", end="2020-12-31",
                          data_dir=data_dir)
    equity = pd.Series([p["equity"] for p in result.equity_curve])
    assert result.final_equity == equity.iloc[-1]
    assert result.total_return == pytest.approx(equity.iloc[-1] / 100_000 - 1)
    peak = equity.cummax().clip(lower=100_000)
    assert result.max_drawdown == pytest.approx((1 - equity / peak).max())
    returns = pd.concat([pd.Series([100_000.0]), equity]).pct_change().dropna()
    assert result.sharpe == pytest.approx(returns.mean() / returns.std() * 252 ** 0.5)
    pnl = sum(t["pnl"] for t in result.trades) + (result.open_position or {}).get("unrealised_pnl", 0)
    assert result.final_equity - 100_000 == pytest.approx(pnl, abs=0.05)
    assert 0 < result.exposure < 1
    assert result.win_rate == sum(t["pnl"] > 0 for t in result.trades) / result.num_trades
    assert result.fingerprint and len(result.fingerprint) == 64


def test_bars_passed_directly_give_the_same_result_as_the_catalog(data_dir, qqq):
    window = qqq[(qqq["date"] >= "2023-01-01") & (qqq["date"] <= "2023-12-31")]
    from_catalog = run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, start="2023-01-01", end="2023-12-31",
                                data_dir=data_dir)
    rows = [tuple(r) for r in window[["date", "open", "high", "low", "close", "volume"]].itertuples(index=False)]
    direct = run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, bars=rows)
    assert direct.decisions == from_catalog.decisions
    assert direct.trades == from_catalog.trades


def test_commission_is_ib_fixed_pricing():
    assert ib_commission(100, 50.0) == 1.0  # 0.50 → the USD 1.00 minimum
    assert ib_commission(1000, 50.0) == 5.0  # 0.005 per share
    assert ib_commission(10, 5.0) == 0.5  # capped at 1% of the USD 50 trade value


def test_fresh_data_dir_backtests_at_once(tmp_path):
    result = run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, start="2024-06-01", data_dir=tmp_path / "fresh")
    assert result.start == "2024-06-03" and result.end == "2024-12-31"


def test_bad_inputs_are_refused(data_dir):
    from ats.core.errors import InputError

    with pytest.raises(InputError, match="start 2024-02-01 is after end 2024-01-01"):
        run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, start="2024-02-01", end="2024-01-01", data_dir=data_dir)
    with pytest.raises(InputError, match="no QQQ.NASDAQ-1-DAY-LAST-EXTERNAL bars between"):
        run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, start="2030-01-01", data_dir=data_dir)
    with pytest.raises(InputError, match="no SPY.ARCA-1-DAY-LAST-EXTERNAL bars stored"):
        run_backtest("ibs_reversion", "SPY.ARCA", {}, data_dir=data_dir)
    with pytest.raises(InputError, match="not a date"):
        run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, start="yesterday", data_dir=data_dir)


def test_the_simulator_charges_what_the_backtest_charges() -> None:
    """One formula (ats.core.commission) for the backtest's fee model and the simulator's fills."""
    from decimal import Decimal

    from ats.ibsim import commission_for

    for shares, price in ((1, 0.5), (10, 5.0), (100, 50.0), (333, 17.13), (1000, 450.0), (250_000, 3.21)):
        assert commission_for(Decimal(shares), price) == ib_commission(shares, price)

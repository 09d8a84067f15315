"""One engine reset between runs gives exactly what a fresh engine per run gives."""

from __future__ import annotations

import pytest

from ats.research.backtest import Backtester, run_backtest
from ats.research.catalog import import_csv, shipped_csv

PARAM_SETS = [
    {},
    {"buy_threshold": 0.1, "sell_threshold": 0.6, "notional": 2500.0},
    {"buy_threshold": 0.3, "sell_threshold": 0.9, "max_hold_bars": 3},
    {},  # the first set again, after two other runs on the same engine
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("catalog")
    import_csv(shipped_csv(), "QQQ.NASDAQ", directory)
    return directory


def test_a_reused_backtester_gives_what_single_runs_give(data_dir):
    with Backtester("ibs_reversion", "QQQ.NASDAQ", start="2012-01-01", end="2019-12-31",
                    data_dir=data_dir) as backtester:
        reused = [backtester.run(params).to_dict() for params in PARAM_SETS]

    single = [run_backtest("ibs_reversion", "QQQ.NASDAQ", params, start="2012-01-01", end="2019-12-31",
                           data_dir=data_dir).to_dict() for params in PARAM_SETS]
    assert reused == single
    assert reused[0]["num_trades"] > 100 and reused[0]["trades"] != reused[1]["trades"]


def test_the_strategies_of_earlier_runs_no_longer_receive_events(data_dir):
    # Nautilus leaves a removed strategy subscribed to its order and position events; a reused
    # engine must not deliver each run's events to every strategy of the runs before it.
    with Backtester("ibs_reversion", "QQQ.NASDAQ", start="2019-01-01", end="2019-12-31",
                    data_dir=data_dir) as backtester:
        for params in PARAM_SETS:
            backtester.run(params)
        bus = backtester._engine.kernel.msgbus
        (strategy,) = backtester._engine.trader.strategies()
        order_handlers = bus.subscriptions(f"events.order.{strategy.id}")
        position_handlers = bus.subscriptions(f"events.position.{strategy.id}")

    assert [s.handler for s in order_handlers] == [strategy.handle_event]
    assert [s.handler for s in position_handlers] == [strategy.handle_event]


def test_a_run_with_restarts_between_plain_runs_leaves_them_unchanged(data_dir):
    with Backtester("ibs_reversion", "QQQ.NASDAQ", start="2020-01-01", end="2020-12-31",
                    data_dir=data_dir) as backtester:
        before = backtester.run({}).to_dict()
        restarted = backtester.run({}, restarts=["2020-03-02", "2020-06-15"])
        after = backtester.run({}).to_dict()

    assert before == after
    assert restarted.restarts == ["2020-03-02", "2020-06-15"]
    assert restarted.to_dict() == run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, start="2020-01-01",
                                               end="2020-12-31", data_dir=data_dir,
                                               restarts=["2020-03-02", "2020-06-15"]).to_dict()


def test_bars_imported_again_are_read_again(tmp_path):
    rows = [line for line in shipped_csv().read_text().splitlines()]
    header, body = rows[0], [r for r in rows[1:] if r.startswith("2024-")]
    first = tmp_path / "first.csv"
    first.write_text("\n".join([header, *body[:100]]) + "\n")
    second = tmp_path / "second.csv"
    second.write_text("\n".join([header, *body[100:]]) + "\n")
    data_dir = tmp_path / "data"
    import_csv(first, "QQQ.NASDAQ", data_dir)
    before = run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, data_dir=data_dir)

    import_csv(second, "QQQ.NASDAQ", data_dir)
    after = run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, data_dir=data_dir)

    assert (before.start, before.bars) == ("2024-01-02", 100)
    assert (after.start, after.bars) == (body[100][:10], len(body) - 100)

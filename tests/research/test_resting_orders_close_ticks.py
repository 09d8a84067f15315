"""The rung's market has no close tick but the last while every order is sent on a bar and settles
at once; a strategy whose orders rest (a limit order) is run with every session's close as a tick
too — its results are exactly those of a market that always had them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ats.research.backtest import Backtester, run_backtest
from ats.research.catalog import import_csv, shipped_csv
from ats.strategies import REGISTRY, StrategySpec, get_strategy

# What both strategy modules begin with (each is a module file of its own: the registry loads one
# file per strategy).
PREAMBLE = """
from dataclasses import dataclass
from datetime import UTC, date, datetime

from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.data import Bar, BarType, TradeTick
from nautilus_trader.model.enums import OrderSide, TimeInForce
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.trading.strategy import Strategy


@dataclass(frozen=True)
class Decision:
    date: date
    side: str
    quantity: int
"""

# Buys with a limit at the deciding bar's close (it rests until a tick trades at or under it) and
# sells at the market on the next bar it holds: entries fill at a session's close whenever the
# next open is above the limit and that session's close is not.
RESTING_LIMIT = PREAMBLE + '''
class RestingLimitConfig(StrategyConfig, frozen=True):
    instrument_id: InstrumentId
    bar_type: BarType
    quantity: int = 10


class RestingLimit(Strategy):
    def __init__(self, config: RestingLimitConfig) -> None:
        super().__init__(config)
        self.decisions = []

    def on_start(self) -> None:
        self.instrument = self.cache.instrument(self.config.instrument_id)
        self.subscribe_bars(self.config.bar_type)

    def on_bar(self, bar: Bar) -> None:
        iid = self.config.instrument_id
        if self.cache.orders_open_count(instrument_id=iid) or self.cache.orders_inflight_count(instrument_id=iid):
            return
        day = datetime.fromtimestamp(bar.ts_event / 1e9, tz=UTC).date()
        if self.cache.positions_open(instrument_id=iid):
            order = self.order_factory.market(iid, OrderSide.SELL, self.instrument.make_qty(self.config.quantity))
            self.decisions.append(Decision(day, "SELL", self.config.quantity))
        else:
            order = self.order_factory.limit(iid, OrderSide.BUY, self.instrument.make_qty(self.config.quantity),
                                             bar.close, time_in_force=TimeInForce.GTC)
            self.decisions.append(Decision(day, "BUY", self.config.quantity))
        self.submit_order(order)
'''


# Trades only at the market on bars, but exits on the highest trade tick seen while long: it takes
# the trade ticks, so a market without the sessions' closes would show it other prices.
TICK_TRAILING = PREAMBLE + '''
class TickTrailingConfig(StrategyConfig, frozen=True):
    instrument_id: InstrumentId
    bar_type: BarType
    trail: float = 0.01


class TickTrailing(Strategy):
    def __init__(self, config: TickTrailingConfig) -> None:
        super().__init__(config)
        self.decisions = []
        self.peak = 0.0

    def on_start(self) -> None:
        self.instrument = self.cache.instrument(self.config.instrument_id)
        self.subscribe_bars(self.config.bar_type)
        self.subscribe_trade_ticks(self.config.instrument_id)

    def on_stop(self) -> None:
        self.unsubscribe_trade_ticks(self.config.instrument_id)

    def on_trade_tick(self, tick: TradeTick) -> None:
        self.peak = max(self.peak, float(tick.price))

    def on_bar(self, bar: Bar) -> None:
        iid = self.config.instrument_id
        day = datetime.fromtimestamp(bar.ts_event / 1e9, tz=UTC).date()
        if self.cache.positions_open(instrument_id=iid):
            if float(bar.close) < self.peak * (1 - self.config.trail):
                self.decisions.append(Decision(day, "SELL", 10))
                self.submit_order(self.order_factory.market(iid, OrderSide.SELL, self.instrument.make_qty(10)))
        elif float(bar.close) < float(bar.open):
            self.peak = float(bar.close)
            self.decisions.append(Decision(day, "BUY", 10))
            self.submit_order(self.order_factory.market(iid, OrderSide.BUY, self.instrument.make_qty(10)))
'''


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("catalog")
    import_csv(shipped_csv(), "QQQ.NASDAQ", directory)
    return directory


def _register(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str, strategy_class: str,
              *, declared: bool) -> str:
    """Register ``source`` as strategy ``name`` (module ``<name>_pkg.<name>``); ``declared``: as deciding
    on bars only — a claim these strategies break, for the rung's run-time check to catch."""
    package = tmp_path / f"{name}_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(REGISTRY, name, StrategySpec(name, f"{name}_pkg.{name}", strategy_class,
                                                     f"{strategy_class}Config", decides_on_bars_only=declared))
    monkeypatch.delitem(sys.modules, f"{name}_pkg.{name}", raising=False)
    monkeypatch.delitem(sys.modules, f"{name}_pkg", raising=False)
    return name


@pytest.fixture
def resting_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    return _register(tmp_path, monkeypatch, "resting_limit", RESTING_LIMIT, "RestingLimit", declared=True)


@pytest.fixture
def tick_trailing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    return _register(tmp_path, monkeypatch, "tick_trailing", TICK_TRAILING, "TickTrailing", declared=True)


@pytest.fixture
def undeclared_resting_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    return _register(tmp_path, monkeypatch, "undeclared_limit", RESTING_LIMIT, "RestingLimit", declared=False)


def _with_every_close_as_a_tick(name: str, data_dir: Path) -> dict:
    """The same run on a market that has every session's close as a tick from the start."""
    with Backtester(name, "QQQ.NASDAQ", start="2020-01-01", end="2021-12-31", data_dir=data_dir) as backtester:
        backtester._close_ticks = True
        return backtester.run({}).to_dict()


def test_a_strategy_whose_orders_rest_trades_at_the_sessions_closes(data_dir, resting_limit):
    # Arrange
    reference = _with_every_close_as_a_tick(resting_limit, data_dir)

    # Act
    result = run_backtest(resting_limit, "QQQ.NASDAQ", {}, start="2020-01-01", end="2021-12-31", data_dir=data_dir)

    # Assert: what a market with every close gives (an open-only market fills these entries at other
    # prices and days: with the re-run taken out, this comparison fails)
    assert result.to_dict() == reference
    assert len(result.trades) > 3


def test_later_runs_of_the_backtester_keep_the_close_ticks(data_dir, resting_limit):
    # Arrange
    reference = _with_every_close_as_a_tick(resting_limit, data_dir)

    # Act: the first run finds the resting orders; the second starts on the market with every close
    with Backtester(resting_limit, "QQQ.NASDAQ", start="2020-01-01", end="2021-12-31", data_dir=data_dir) as backtester:
        first = backtester.run({}).to_dict()
        second = backtester.run({}).to_dict()

    # Assert
    assert first == reference and second == reference


def test_the_market_order_strategy_runs_without_close_ticks(data_dir):
    # Arrange / Act
    with Backtester("ibs_reversion", "QQQ.NASDAQ", start="2020-01-01", end="2021-12-31",
                    data_dir=data_dir) as backtester:
        plain = backtester.run({}).to_dict()
        without = backtester._close_ticks
    reference = _with_every_close_as_a_tick("ibs_reversion", data_dir)

    # Assert: declared to decide on bars only, its orders never rest: the close ticks change nothing
    # and are left out
    assert get_strategy("ibs_reversion").decides_on_bars_only
    assert without is False
    assert plain == reference


def test_a_strategy_that_takes_the_trade_ticks_sees_the_sessions_closes(data_dir, tick_trailing):
    # Arrange
    reference = _with_every_close_as_a_tick(tick_trailing, data_dir)

    # Act: every order is a market order sent on a bar and filled at once
    result = run_backtest(tick_trailing, "QQQ.NASDAQ", {}, start="2020-01-01", end="2021-12-31", data_dir=data_dir)

    # Assert: its exits follow the highest trade it saw, closes included (without them: other trades)
    assert result.to_dict() == reference


def test_the_rerun_keeps_restarts_given_as_an_iterator(data_dir, resting_limit):
    # Arrange
    days = ["2020-06-01", "2021-03-01"]
    with Backtester(resting_limit, "QQQ.NASDAQ", start="2020-01-01", end="2021-12-31", data_dir=data_dir) as backtester:
        backtester._close_ticks = True
        reference = backtester.run({}, restarts=days).to_dict()

    # Act: the first run (no close ticks) spends the iterator; the re-run must restart all the same
    with Backtester(resting_limit, "QQQ.NASDAQ", start="2020-01-01", end="2021-12-31", data_dir=data_dir) as backtester:
        result = backtester.run({}, restarts=iter(days)).to_dict()

    # Assert
    assert result["restarts"] == days
    assert result == reference


def test_a_strategy_not_declared_to_decide_on_bars_only_has_every_close_from_the_start(
        data_dir, undeclared_resting_limit):
    # Arrange
    reference = _with_every_close_as_a_tick(undeclared_resting_limit, data_dir)

    # Act
    with Backtester(undeclared_resting_limit, "QQQ.NASDAQ", start="2020-01-01", end="2021-12-31",
                    data_dir=data_dir) as backtester:
        before = backtester._close_ticks
        result = backtester.run({}).to_dict()

    # Assert: no first run without the closes to find out
    assert before is True
    assert result == reference

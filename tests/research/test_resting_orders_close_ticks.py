"""The rung's market has no close tick but the last while every order is sent on a bar and settles
at once; a strategy whose orders rest (a limit order) is run with every session's close as a tick
too — its results are exactly those of a market that always had them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ats.research.backtest import Backtester, run_backtest
from ats.research.catalog import import_csv, shipped_csv
from ats.strategies import REGISTRY, StrategySpec

# Buys with a limit at the deciding bar's close (it rests until a tick trades at or under it) and
# sells at the market on the next bar it holds: entries fill at a session's close whenever the
# next open is above the limit and that session's close is not.
RESTING_LIMIT = '''
from dataclasses import dataclass
from datetime import UTC, date, datetime

from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.model.enums import OrderSide, TimeInForce
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.trading.strategy import Strategy


@dataclass(frozen=True)
class Decision:
    date: date
    side: str
    quantity: int


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
TICK_TRAILING = '''
from dataclasses import dataclass
from datetime import UTC, date, datetime

from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.data import Bar, BarType, TradeTick
from nautilus_trader.model.enums import OrderSide
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.trading.strategy import Strategy


@dataclass(frozen=True)
class Decision:
    date: date
    side: str
    quantity: int


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


@pytest.fixture
def resting_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    package = tmp_path / "resting_strategies"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "resting_limit.py").write_text(RESTING_LIMIT)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(REGISTRY, "resting_limit", StrategySpec(
        "resting_limit", "resting_strategies.resting_limit", "RestingLimit", "RestingLimitConfig"))
    yield "resting_limit"
    for name in ("resting_strategies.resting_limit", "resting_strategies"):
        sys.modules.pop(name, None)


@pytest.fixture
def tick_trailing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    package = tmp_path / "tick_strategies"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tick_trailing.py").write_text(TICK_TRAILING)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(REGISTRY, "tick_trailing", StrategySpec(
        "tick_trailing", "tick_strategies.tick_trailing", "TickTrailing", "TickTrailingConfig"))
    yield "tick_trailing"
    for name in ("tick_strategies.tick_trailing", "tick_strategies"):
        sys.modules.pop(name, None)


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

    # Assert: its orders never rest, so the close ticks change nothing and are left out
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

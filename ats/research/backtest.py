"""The backtest rung: run a registered strategy over daily bars in the Nautilus ``BacktestEngine``.

How the simulation is set up, and why:

* **Fills: market orders fill at the next session's open.**  Live, the IB adapter publishes
  day D's bar only once day D+1 has begun (ib_sim_spec §2.5), so an order decided on bar D
  fills around D+1's open.  Nautilus would, by default, fill a market order at the close of
  the very bar that triggered it (its bar execution moves the market through O, H, L, C of
  that bar before the strategy sees it).  So here the simulated venue does not execute on
  bars (``bar_execution=False``); it trades on ticks built from the bars, each session's open
  at 09:30 and close at 16:00 New York time, and the strategy receives bar D just after the
  D+1 open tick.  An order decided on the *last* bar of the data has no next open: it fills
  at that bar's close, the last price known.
* **Close ticks only where they can matter.**  For a strategy registered as deciding on bars
  only (``StrategySpec.decides_on_bars_only``: it reads the market through its bars and sends
  orders from ``on_bar``), no session's close but the last is a tick while every order is
  sent on a bar and fills (or is refused) at once, just after an open tick: a close tick
  would move the simulated market where nothing trades (a third of the engine's data, work
  whose result nothing reads).  Checked at run time: an order that rests or is sent at
  another time (a limit order, a timer's order), which could trade at a close, or anything
  subscribed to the trade ticks (``on_trade_tick``, bars aggregated from ticks), which would
  see the closes, and the run is repeated with every session's close as a tick, as are the
  Backtester's later runs.  Not noticed at run time: reading the cache's tick history — the
  declaration's promise.  Every other strategy runs with every session's close as a tick.
* **Commissions: IB fixed pricing** (:class:`IbFixedFeeModel`): USD 0.005 per share, at
  least USD 1.00 and at most 1 % of the trade value, per fill (each order fills once here).
* **Account:** a USD cash account (no leverage, no shorting), ``NETTING`` positions.
* **Dividends** are not credited (bars carry prices only): QQQ's ~0.5 %/year yield on the days
  held is left out of the returns.
* **Restarts** (``restarts=``): before the bar of each given date the running strategy is
  removed and a fresh instance started, as a node restart does; it adopts the open position.
  The paper-rung parity check uses this to replay paper sessions one after the other.

Metrics: total return and CAGR of the equity curve (cash plus the position at each bar's
close), Sharpe of daily equity returns annualised with √252 (risk-free rate 0), maximum
drawdown as a fraction of the running peak, exposure = fraction of bars whose close found the
strategy long, win rate = winning / completed trades (net of commissions).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict
from zoneinfo import ZoneInfo

import msgspec

from ats.core.commission import ib_commission
from ats.core.errors import InputError
from ats.core.params import DEFAULT_BAR_SPEC, parse_bar_type, parse_instrument_id, parse_params

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from nautilus_trader.backtest.engine import BacktestEngine
    from nautilus_trader.backtest.models import FeeModel
    from nautilus_trader.cache.cache import Cache
    from nautilus_trader.common.component import MessageBus
    from nautilus_trader.common.events import TimeEvent
    from nautilus_trader.model.data import Bar, BarType, TradeTick
    from nautilus_trader.model.events import PositionEvent
    from nautilus_trader.model.identifiers import InstrumentId, PositionId
    from nautilus_trader.model.instruments import Instrument
    from nautilus_trader.model.objects import Money, Price, Quantity
    from nautilus_trader.model.orders import Order
    from nautilus_trader.trading.config import StrategyConfig
    from nautilus_trader.trading.controller import Controller
    from nautilus_trader.trading.strategy import Strategy
    from pandas import DataFrame

    # Bars given as data (``bars=``): Nautilus bars, a DataFrame, dicts of date/open/high/low/close/volume,
    # or ``(date, open, high, low, close, volume)`` rows; cells as the caller has them (text, numbers,
    # dates), checked by ``float()`` and :func:`_to_date`.
    type BarsInput = DataFrame | Iterable[Bar] | Iterable[Mapping[str, Any]] | Iterable[Sequence[Any]]
    # What the engine is fed: a trade tick per session open (and the last close) and the bars themselves.
    type ExecData = list[Bar | TradeTick]


class Fill(TypedDict):
    """One filled order of a backtest run (each order fills once here)."""

    ts: int
    date: date
    side: str
    quantity: int
    price: float
    commission: float


class StrategyDecision(Protocol):
    """What a strategy appends to its ``decisions``: the bar date, ``BUY``/``SELL``, the quantity."""

    @property
    def date(self) -> date: ...
    @property
    def side(self) -> str: ...
    @property
    def quantity(self) -> int: ...

NEW_YORK = ZoneInfo("America/New_York")
SESSION_OPEN = time(9, 30)
SESSION_CLOSE = time(16, 0)
TRADING_DAYS_PER_YEAR = 252
_TICK_SIZE = 10**9  # the execution ticks carry ample size: our orders are tiny against a day's volume


# --------------------------------------------------------------------------------------------
# Commissions
# --------------------------------------------------------------------------------------------
def _fee_model_class() -> type[FeeModel]:
    from nautilus_trader.backtest.models import FeeModel
    from nautilus_trader.model.objects import Money

    class IbFixedFeeModel(FeeModel):
        """IB fixed pricing for US stocks (see :func:`ats.core.commission.ib_commission`)."""

        def get_commission(self, order: Order, fill_qty: Quantity, fill_px: Price, instrument: Instrument) -> Money:
            return Money(ib_commission(float(fill_qty), float(fill_px)), instrument.quote_currency)

    return IbFixedFeeModel


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------
@dataclass
class BacktestResult:
    """Everything a backtest run produced; :meth:`to_dict` is JSON-serialisable."""

    strategy: str
    instrument_id: str
    bar_type: str
    params: dict[str, Any]
    fingerprint: str
    start: str
    end: str
    bars: int
    starting_cash: float
    final_equity: float
    trades: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    open_position: dict[str, Any] | None
    equity_curve: list[dict[str, Any]]
    num_trades: int
    win_rate: float | None
    total_return: float
    cagr: float
    sharpe: float
    max_drawdown: float
    exposure: float
    commissions: float
    fill_model: str = "market orders fill at the next session's open (last bar: at its close)"
    restarts: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        """The headline numbers, as judged by the ladder."""
        return {
            "num_trades": self.num_trades,
            "win_rate": self.win_rate,
            "total_return": self.total_return,
            "cagr": self.cagr,
            "sharpe": self.sharpe,
            "max_drawdown": self.max_drawdown,
            "exposure": self.exposure,
            "final_equity": self.final_equity,
            "commissions": self.commissions,
            "bars": self.bars,
        }

    def decision_tuples(self) -> list[tuple[str, str, int]]:
        return [(d["date"], d["side"], d["quantity"]) for d in self.decisions]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Input bars
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Row:
    date: date
    open: float
    high: float
    low: float
    close: float
    volume: float


def _to_date(value: object) -> date:
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).date()
    if isinstance(value, date):
        return value
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1e9, tz=UTC).date()  # ts_event in ns
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            pass
    if hasattr(value, "to_pydatetime"):
        return _to_date(value.to_pydatetime())
    raise InputError(f"bar date {value!r} is not a date")


def _normalise_bars(bars: BarsInput) -> list[_Row]:
    """Rows from Nautilus bars, a DataFrame, dicts or ``(date, o, h, l, c, v)`` tuples."""
    rows: list[_Row] = []
    if hasattr(bars, "itertuples") and hasattr(bars, "columns"):  # pandas DataFrame
        given: DataFrame = bars
        frame = given.reset_index() if "date" not in given.columns else given
        if "date" not in frame.columns:
            frame = frame.rename(columns={frame.columns[0]: "date"})
        bars = frame[["date", "open", "high", "low", "close", "volume"]].itertuples(index=False, name=None)
    for item in bars:
        if hasattr(item, "bar_type"):
            bar: Bar = item
            rows.append(_Row(_to_date(int(bar.ts_event)), float(bar.open), float(bar.high), float(bar.low),
                             float(bar.close), float(bar.volume)))
        elif isinstance(item, dict):
            day = item.get("date", item.get("ts", item.get("ts_event")))
            rows.append(_Row(_to_date(day), float(item["open"]), float(item["high"]), float(item["low"]),
                             float(item["close"]), float(item.get("volume", 0))))
        else:
            day, o, h, lo, c, v = tuple(item)[:6]
            rows.append(_Row(_to_date(day), float(o), float(h), float(lo), float(c), float(v)))
    rows.sort(key=lambda r: r.date)
    unique: list[_Row] = []
    for row in rows:  # a bar published twice (adapter resubscription) is one bar
        if unique and unique[-1].date == row.date:
            continue
        unique.append(row)
    return unique


def _infer_precision(rows: list[_Row]) -> int:
    for precision in range(2, 10):
        if all(abs(round(v, precision) - v) < 1e-9 for r in rows for v in (r.open, r.high, r.low, r.close)):
            return precision
    return 9


def _session_ns(day: date, at: time) -> int:
    moment = datetime.combine(day, at, tzinfo=NEW_YORK)
    return int(moment.timestamp()) * 1_000_000_000


def parse_day(value: date | str | None, name: str) -> date | None:
    """A ``YYYY-MM-DD`` string or date as a date (``None`` for empty); ``name`` is the option named in an error."""
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value.date() if isinstance(value, datetime) else value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InputError(f"{name} date {value!r} is not a date (expected YYYY-MM-DD)") from None


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------
def _restarter_class() -> type[Controller]:
    from nautilus_trader.trading.controller import Controller

    class Restarter(Controller):
        """Stops the running strategy and starts a fresh instance at given times (a node restart)."""

        factory: Callable[[], Strategy]
        restart_ns: list[int]
        current: Strategy
        retired: list[Strategy]

        def on_start(self) -> None:
            for i, ts in enumerate(self.restart_ns):
                self.clock.set_time_alert_ns(f"ats-restart-{i}", ts, self._restart)

        def _restart(self, _event: TimeEvent) -> None:
            old = self.current
            self._trader.remove_strategy(old.id)
            _unsubscribe_strategy_events(old)
            self.retired.append(old)
            self.current = self.factory()
            self.create_strategy(self.current, start=True)

    return Restarter


_RESTARTER: type[Controller] | None = None


def _unsubscribe_strategy_events(strategy: Strategy) -> None:
    """Take a removed strategy off the message bus.

    Nautilus subscribes a strategy to its order and position events when it is added and does
    not unsubscribe it when it is removed (``Trader.remove_strategy``, ``clear_strategies``):
    every later event would still reach each removed instance — a sweep's fiftieth point would
    deliver its events to fifty strategies.
    """
    for topic in (f"events.order.{strategy.id}", f"events.position.{strategy.id}"):
        strategy.msgbus.unsubscribe(topic=topic, handler=strategy.handle_event)


def _get_restarter() -> type[Controller]:
    global _RESTARTER
    if _RESTARTER is None:
        _RESTARTER = _restarter_class()
    return _RESTARTER


@dataclass(frozen=True)
class _ExecData:
    """What the engine is fed, and when each bar reaches the strategy (its ``ts_init``)."""

    items: ExecData
    bar_times: frozenset[int]


def _build_exec_data(rows: list[_Row], instrument: Instrument, bar_type: BarType, close_ticks: bool) -> _ExecData:
    """Ticks and bars for the engine; ``close_ticks``: every session's close is a tick, not only the last."""
    from nautilus_trader.model.data import Bar, TradeTick
    from nautilus_trader.model.enums import AggressorSide
    from nautilus_trader.model.identifiers import TradeId
    from nautilus_trader.model.objects import Price, Quantity

    precision = instrument.price_precision
    iid = instrument.id
    size = Quantity(_TICK_SIZE, 0)
    data: ExecData = []
    bar_times: list[int] = []
    opens = [_session_ns(r.date, SESSION_OPEN) for r in rows]
    n = len(rows)
    for i, row in enumerate(rows):
        o = Price(row.open, precision)
        c = Price(row.close, precision)
        data.append(TradeTick(iid, o, size, AggressorSide.NO_AGGRESSOR, TradeId(f"O{i}"), opens[i], opens[i]))
        # The last session's close is the price an order decided on the last bar fills at.
        close = _session_ns(row.date, SESSION_CLOSE) if close_ticks or i == n - 1 else None
        if close is not None:
            data.append(TradeTick(iid, c, size, AggressorSide.NO_AGGRESSOR, TradeId(f"C{i}"), close, close))
        # Bar i reaches the strategy just after the next session's open tick (see module doc).
        delivered = (opens[i + 1] if i + 1 < n else _session_ns(row.date, SESSION_CLOSE)) + 1
        bar_times.append(delivered)
        ts_event = int(datetime(row.date.year, row.date.month, row.date.day, tzinfo=UTC).timestamp()) * 10**9
        data.append(Bar(bar_type, o, Price(row.high, precision), Price(row.low, precision), c,
                        Quantity(round(row.volume), 0), ts_event, delivered))
    data.sort(key=lambda d: d.ts_init)
    return _ExecData(data, frozenset(bar_times))


def run_backtest(
    strategy_name: str,
    instrument_id: str,
    params: dict[str, Any] | str | None = None,
    start: date | str | None = None,
    end: date | str | None = None,
    data_dir: Path | str | None = None,
    starting_cash: float = 100_000,
    bars: BarsInput | None = None,
    bar_spec: str = DEFAULT_BAR_SPEC,
    restarts: Sequence[date | str] = (),
) -> BacktestResult:
    """Backtest ``strategy_name`` on ``instrument_id`` daily bars and return the result.

    Bars come from the catalog under ``data_dir`` (default: the settings' data dir; the
    shipped QQQ bars are imported on first use) or, when ``bars`` is given, from that list
    (Nautilus bars, ``(date, open, high, low, close, volume)`` tuples, dicts, or a DataFrame).
    ``start``/``end`` (inclusive, ``YYYY-MM-DD``) cut the bars.  ``restarts`` lists the dates
    before whose bar the strategy is restarted.  Raises :class:`InputError` on bad input.
    """
    from ats.strategies import get_strategy

    get_strategy(strategy_name)
    parse_params(strategy_name, params, str(parse_instrument_id(str(instrument_id))), bar_spec)  # before any work
    with Backtester(strategy_name, instrument_id, start=start, end=end, data_dir=data_dir,
                    starting_cash=starting_cash, bars=bars, bar_spec=bar_spec) as backtester:
        return backtester.run(params, restarts=restarts)


class Backtester:
    """One strategy over one bar series, run as often as needed (a sweep runs every grid point).

    The bars are read, cut and turned into the engine's ticks once, and the Nautilus engine is
    built once and ``reset()`` between runs (its data, venue and instrument are kept), so a run
    costs the simulation itself.  A run with ``restarts`` uses an engine of its own (it needs the
    restart controller).  Results are exactly those of :func:`run_backtest`.  Close it (or use it
    as a context manager) to release the engine.
    """

    def __init__(self, strategy_name: str, instrument_id: str, *, start: date | str | None = None,
                 end: date | str | None = None, data_dir: Path | str | None = None,
                 starting_cash: float = 100_000, bars: BarsInput | None = None,
                 bar_spec: str = DEFAULT_BAR_SPEC) -> None:
        from ats.strategies import get_strategy

        self.strategy_name = strategy_name
        self._spec = get_strategy(strategy_name)
        self._strategy_cls, _ = self._spec.load()
        self.instrument_id = parse_instrument_id(str(instrument_id))
        self.bar_spec = bar_spec
        self.bar_type = parse_bar_type(str(self.instrument_id), bar_spec)
        first, last = parse_day(start, "start"), parse_day(end, "end")
        if first and last and first > last:
            raise InputError(f"start {first} is after end {last}")
        if not starting_cash > 0:
            raise InputError(f"starting cash must be greater than 0 (got {starting_cash})")
        self.starting_cash = starting_cash
        rows, stored, source = _input_rows(self.instrument_id, self.bar_type, bar_spec, data_dir, bars)
        self.rows = [r for r in rows if (first is None or r.date >= first) and (last is None or r.date <= last)]
        if not self.rows:
            raise InputError(f"no {self.bar_type} bars between {first or 'the start'} and {last or 'the end'}")
        if stored is None:
            from ats.research.catalog import make_equity

            stored = make_equity(self.instrument_id, _infer_precision(self.rows))
        self.instrument: Instrument = stored
        # Stored bars: the engine's ticks are built once per process for a series and cut (see _EXEC_DATA).
        self._data_key = None if source is None else (source, first, last)
        self._data: _ExecData | None = None
        # Every session's close as a tick too: unless the strategy is declared to decide on bars
        # only, and then from its first run with an order that rested or was not sent on a bar,
        # or with a trade-tick subscriber (see the module doc).
        self._close_ticks = not self._spec.decides_on_bars_only
        self._engine: BacktestEngine | None = None
        self._engine_hook: _BeforeEachBar | None = None  # the reused engine's, made with it

    def run(self, params: dict[str, Any] | str | None = None,
            restarts: Sequence[date | str] = ()) -> BacktestResult:
        """Backtest one params set (validated like ``--params``) over the bars."""
        config = parse_params(self.strategy_name, params, str(self.instrument_id), self.bar_spec)
        restart_days = sorted({day for d in restarts if (day := parse_day(d, "restart")) is not None})
        # External order claims only matter for live reconciliation; in the backtest they would
        # stop a restarted instance from registering (Nautilus keeps the first claim).  Two kinds
        # of work whose result nothing reads, about a tenth and a twentieth of a full-history run:
        # * the strategy's event and command log lines: the engine's logging is bypassed here,
        #   yet Nautilus renders each order event and command as text before the logger drops it;
        # * client order ids formatted from the clock's date and time: UUID ids instead (Nautilus'
        #   ``use_uuid_client_order_ids``); no result, decision or fill carries an order id.
        config = msgspec.structs.replace(config, external_order_claims=None, log_events=False, log_commands=False,
                                         use_uuid_client_order_ids=True)
        rows = self.rows
        if self._data is None:
            self._data = self._exec_data()
        data = self._data
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            restart_ns = _restart_times(rows, data.items, restart_days)
            if restart_ns:
                engine, hook = self._new_engine(data, restart_controller=True)  # an engine of its own
                try:
                    fills, decisions, on_bars = self._simulate(engine, hook, config, restart_ns, data.bar_times)
                finally:
                    engine.dispose()
            else:
                if self._engine is None or self._engine_hook is None:
                    self._engine, self._engine_hook = self._new_engine(data, restart_controller=False)
                else:
                    self._engine.reset()
                    for strategy in self._engine.trader.strategies():
                        _unsubscribe_strategy_events(strategy)
                    self._engine.clear_strategies()
                fills, decisions, on_bars = self._simulate(self._engine, self._engine_hook, config, [],
                                                           data.bar_times)
        if not on_bars and not self._close_ticks:
            # An order rested or was sent between bars, or trade ticks were watched: the close ticks
            # matter (see the module doc).
            self._close_ticks = True
            self._data = None
            self.close()  # its engine holds the data without them
            return self.run(params, restart_days)  # ``restarts`` may have been an iterator, now spent
        return _result(self.strategy_name, self._spec.fingerprint(), config, self.bar_type, rows,
                       self.starting_cash, fills, decisions,
                       [d.isoformat() for d in restart_days if rows[0].date < d <= rows[-1].date])

    def _exec_data(self) -> _ExecData:
        if self._data_key is None:
            return _build_exec_data(self.rows, self.instrument, self.bar_type, self._close_ticks)
        key = (*self._data_key, self._close_ticks)
        data = _EXEC_DATA.pop(key, None)  # popped and put back: the newest last
        if data is None:
            data = _build_exec_data(self.rows, self.instrument, self.bar_type, self._close_ticks)
        _EXEC_DATA[key] = data
        while len(_EXEC_DATA) > _EXEC_DATA_KEPT:
            _EXEC_DATA.pop(next(iter(_EXEC_DATA)))
        return data

    def close(self) -> None:
        """Dispose of the engine (idempotent)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
            self._engine_hook = None

    def __enter__(self) -> Backtester:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _new_engine(self, data: _ExecData, restart_controller: bool) -> tuple[BacktestEngine, _BeforeEachBar]:
        from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
        from nautilus_trader.config import LoggingConfig, PortfolioConfig
        from nautilus_trader.model.currencies import USD
        from nautilus_trader.model.enums import AccountType, OmsType
        from nautilus_trader.model.identifiers import TraderId
        from nautilus_trader.model.objects import Money
        from nautilus_trader.trading.config import ImportableControllerConfig

        controller = None
        if restart_controller:
            controller = ImportableControllerConfig(
                controller_path="ats.research.backtest:Restarter",
                config_path="nautilus_trader.common.config:ActorConfig",
                config={},
            )
        engine = BacktestEngine(BacktestEngineConfig(
            trader_id=TraderId("BACKTESTER-001"),
            logging=LoggingConfig(log_level="ERROR", bypass_logging=True),
            controller=controller,
            run_analysis=False,  # the post-run statistics ats does not use (see _skip_post_run_analysis)
            # One more kind of work whose result nothing reads (ats computes its metrics from the
            # fills, :func:`_result`), about a tenth of a full-history run: the portfolio re-marks
            # open positions on every bar as well as on every trade tick, and only its marks read
            # it.  (Closed positions: see _BeforeEachBar.)
            portfolio=PortfolioConfig(bar_updates=False),
        ))
        try:
            hook = _BeforeEachBar(engine, self.bar_type)
            engine.add_venue(
                self.instrument.id.venue,
                oms_type=OmsType.NETTING,
                account_type=AccountType.CASH,
                starting_balances=[Money(self.starting_cash, USD)],
                base_currency=USD,
                fee_model=_fee_model_class()(),
                bar_execution=False,
                trade_execution=True,
            )
            engine.add_instrument(self.instrument)
            engine.add_data(data.items, sort=False)
            engine.sort_data()
        except BaseException:
            engine.dispose()
            raise
        return engine, hook

    def _simulate(self, engine: BacktestEngine, hook: _BeforeEachBar, config: StrategyConfig,
                  restart_ns: list[int], bar_times: frozenset[int]) -> tuple[list[Fill], list[StrategyDecision], bool]:
        """The fills, the decisions, and whether every order was sent on a bar and settled at once
        (and nothing took the trade ticks): whether the run is the same without the close ticks."""
        from nautilus_trader.model.enums import OrderSide

        _skip_post_run_analysis(engine)
        strategy_cls = self._strategy_cls
        strategy = strategy_cls(config)
        engine.add_strategy(strategy)
        retired: list[Strategy] = []
        restarter = None
        if restart_ns:
            restarter = next(a for a in engine.trader.actors() if isinstance(a, _get_restarter()))
            restarter.factory = lambda: strategy_cls(config)
            restarter.restart_ns = restart_ns
            restarter.current = strategy
            restarter.retired = retired
        hook.begin_run()
        engine.run()
        instances = [*retired, restarter.current if restarter else strategy]
        decisions: list[StrategyDecision] = [d for s in instances for d in s.decisions]
        fills: list[Fill] = []
        on_bars = not hook.trade_ticks_taken
        for order in engine.cache.orders(instrument_id=self.instrument.id):
            if on_bars and not (order.ts_init in bar_times and order.ts_last == order.ts_init and order.is_closed):
                on_bars = False
            if not order.filled_qty or float(order.filled_qty) == 0:
                continue
            commission = sum(float(m) for m in order.commissions())
            ts = order.ts_last
            fills.append({
                "ts": ts,
                "date": datetime.fromtimestamp(ts / 1e9, tz=NEW_YORK).date(),
                "side": "BUY" if order.side == OrderSide.BUY else "SELL",
                "quantity": int(order.filled_qty),
                "price": float(order.avg_px),
                "commission": commission,
            })
        fills.sort(key=lambda f: f["ts"])
        return fills, decisions, on_bars


class _BeforeEachBar:
    """What the rung does as each bar arrives, before the strategy sees it (a higher bus priority).

    * **Closed positions leave the engine's cache.**  A NETTING position closed and later
      re-opened is first snapshotted by Nautilus' cache (pickled three times, unpickled again by
      the portfolio's realized-PnL book) — about a tenth of a full-history run, work whose
      result nothing here reads (ats computes its metrics from the fills, :func:`_result`).  A
      closed position taken out of the cache never re-opens: the next entry opens a new
      position under the same id.  The purge comes at the next bar, so after everything that
      handled the close and before any order the bar can lead to; open positions are never
      purged (Nautilus refuses to), orders and fills are kept.  Driven by the position events
      rather than Nautilus' own timed purge (``purge_closed_positions_interval_mins``): a daily
      timer fires on every calendar day, a time event each, where this does work only on the
      ≈ 1 bar in 8 that follows a close.
    * **Whether anything takes the trade ticks** (``on_trade_tick``, a tick indicator, bars
      aggregated from ticks): it would see the close ticks (see the module doc).

    Made with its engine (subscribed to its position events and bars), one per engine: the bus
    keeps its subscriptions over the engine's resets; :meth:`begin_run` before each run.
    """

    def __init__(self, engine: BacktestEngine, bar_type: BarType) -> None:
        from nautilus_trader.model.events import PositionClosed

        self._closed: list[PositionId] = []
        self._cache: Cache = engine.cache
        self._msgbus: MessageBus = engine.kernel.msgbus
        self._position_closed = PositionClosed
        self.trade_ticks_taken = False
        self._msgbus.subscribe(topic="events.position.*", handler=self.on_position_event)
        self._msgbus.subscribe(topic=f"data.bars.{bar_type}", handler=self.on_bar, priority=100)

    def begin_run(self) -> None:
        """Forget the previous run: what it closed (its engine was reset, those positions are gone)
        and whether it took the trade ticks."""
        self._closed.clear()
        self.trade_ticks_taken = False

    def on_position_event(self, event: PositionEvent) -> None:
        if isinstance(event, self._position_closed):
            self._closed.append(event.position_id)

    def on_bar(self, _bar: Bar) -> None:
        if self._closed:
            for position_id in self._closed:
                self._cache.purge_position(position_id)
            self._closed.clear()
        if not self.trade_ticks_taken and self._msgbus.has_subscribers("data.trades*"):
            self.trade_ticks_taken = True


def _ignore(*_args: object, **_kwargs: object) -> None:
    return None


def _skip_post_run_analysis(engine: BacktestEngine) -> None:
    """Turn off the portfolio analyzer's trade record: ats computes its own metrics (:func:`_result`).

    Left on, it builds a pandas series per closed position while the run goes (``record_trade``,
    one ``pd.concat`` each) — with the post-run analysis (``run_analysis=False`` in the engine's
    config) about half of a full-history run, all thrown away.  Nothing the simulation decides or
    fills reads it.
    """
    engine.portfolio.analyzer.record_trade = _ignore


def _restart_times(rows: list[_Row], data: ExecData, restart_days: list[date]) -> list[int]:
    """Engine times of the restarts: 1 ns before the bar of each restart day reaches the strategy."""
    if not restart_days:
        return []
    delivered = {item.ts_event: item.ts_init for item in data if hasattr(item, "bar_type")}
    restart_ns = []
    for day in restart_days:
        index = next((i for i, r in enumerate(rows) if r.date >= day), None)
        if index is None or index == 0:
            continue  # a restart before the first bar is just the start
        restart_ns.append(delivered[_day_ts(rows[index].date)] - 1)
    return restart_ns


def _input_rows(iid: InstrumentId, bar_type: BarType, bar_spec: str, data_dir: Path | str | None,
                bars: BarsInput | None) -> tuple[list[_Row], Instrument | None, tuple | None]:
    """The bars (sorted, one per date), the stored instrument and the stored series' identity
    (catalog, bar type, files' stamp); ``None`` for both with given bars."""
    if bars is not None:
        return _normalise_bars(bars), None, None
    from ats.research import catalog

    if data_dir is None:
        from ats.core.settings import get_settings

        data_dir = get_settings().data_dir
    if str(iid) == catalog.DEFAULT_INSTRUMENT and bar_spec == DEFAULT_BAR_SPEC:
        catalog.ensure_default_data(data_dir)
    return _stored_rows(str(iid), bar_type, bar_spec, data_dir)


# The catalog's bars per series, read once per process and kept while the stored files are the
# same (a sweep, the paper rung's replays and the nightly flow read the same series many times).
_STORED: dict[tuple[str, str], tuple[tuple, list[_Row], Instrument | None]] = {}
# The engine's ticks and bars built from a stored series, per (series identity, start, end): the
# last few kept (Nautilus data objects are immutable, so engines share them).  A series whose
# files changed has a new stamp, hence a new key.
_EXEC_DATA: dict[tuple, _ExecData] = {}
_EXEC_DATA_KEPT = 4


def _stored_rows(instrument_id: str, bar_type: BarType, bar_spec: str,
                 data_dir: Path | str) -> tuple[list[_Row], Instrument | None, tuple]:
    from ats.research import catalog

    key = (str(catalog.catalog_path(data_dir).resolve()), str(bar_type))
    stamp = catalog.series_stamp(instrument_id, data_dir, bar_spec)
    cached = _STORED.get(key)
    if cached is not None and cached[0] == stamp:
        return list(cached[1]), cached[2], (key, stamp)
    stored = catalog.load_bars(instrument_id, data_dir, bar_spec)
    if not stored:
        raise InputError(f"no {bar_type} bars stored in {catalog.catalog_path(data_dir)}; "
                         f"import them with `ats data import --csv FILE --instrument {instrument_id}`")
    rows = _normalise_bars(stored)
    instrument = catalog.load_instrument(instrument_id, data_dir)
    _STORED[key] = (stamp, rows, instrument)
    return list(rows), instrument, (key, stamp)


def _day_ts(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 10**9


def _result(strategy_name: str, fingerprint: str, config: StrategyConfig, bar_type: BarType, rows: list[_Row],
            starting_cash: float, fills: list[Fill], decisions: Sequence[StrategyDecision],
            restarts: list[str]) -> BacktestResult:
    # Completed trades: FIFO lots from the fills.
    lots: list[dict[str, Any]] = []
    trades: list[dict[str, Any]] = []
    for fill in fills:
        if fill["side"] == "BUY":
            lots.append({"date": fill["date"], "quantity": fill["quantity"], "price": fill["price"],
                         "commission": fill["commission"]})
            continue
        remaining = fill["quantity"]
        while remaining > 0 and lots:
            lot = lots[0]
            qty = min(remaining, lot["quantity"])
            entry_fee = lot["commission"] * qty / lot["quantity"]
            exit_fee = fill["commission"] * qty / fill["quantity"]
            pnl = (fill["price"] - lot["price"]) * qty - entry_fee - exit_fee
            trades.append({
                "side": "LONG",
                "entry_date": lot["date"].isoformat(),
                "exit_date": fill["date"].isoformat(),
                "quantity": qty,
                "entry_price": lot["price"],
                "exit_price": fill["price"],
                "commission": round(entry_fee + exit_fee, 2),
                "pnl": round(pnl, 2),
                "return": (fill["price"] * qty - exit_fee) / (lot["price"] * qty + entry_fee) - 1,
            })
            lot["commission"] -= entry_fee
            lot["quantity"] -= qty
            remaining -= qty
            if lot["quantity"] == 0:
                lots.pop(0)

    # Equity at each bar's close.
    cash = float(starting_cash)
    held = 0
    fills_by_date: dict[date, list[Fill]] = {}
    for fill in fills:
        fills_by_date.setdefault(fill["date"], []).append(fill)
    curve: list[dict[str, Any]] = []
    equities: list[float] = []
    in_market = 0
    for row in rows:
        day_fills = fills_by_date.get(row.date)
        if day_fills:
            for fill in day_fills:
                sign = 1 if fill["side"] == "BUY" else -1
                held += sign * fill["quantity"]
                cash -= sign * fill["quantity"] * fill["price"] + fill["commission"]
        if held > 0:
            in_market += 1
        equity = round(cash + held * row.close, 2)
        equities.append(equity)
        curve.append({"date": row.date.isoformat(), "equity": equity})

    final = equities[-1]
    total_return = final / starting_cash - 1
    days = (rows[-1].date - rows[0].date).days
    cagr = (final / starting_cash) ** (365.25 / days) - 1 if days > 0 and final > 0 else 0.0
    returns = [b / a - 1 for a, b in zip([starting_cash, *equities[:-1]], equities, strict=True)]
    sharpe = 0.0
    if len(returns) > 1:
        mean = sum(returns) / len(returns)
        var = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
        if var > 0:
            sharpe = mean / math.sqrt(var) * math.sqrt(TRADING_DAYS_PER_YEAR)
    peak, max_dd = float(starting_cash), 0.0
    for value in equities:
        if value > peak:
            peak = value
        drawdown = 1 - value / peak
        if drawdown > max_dd:
            max_dd = drawdown

    open_position = None
    if lots:
        qty = sum(lot["quantity"] for lot in lots)
        cost = sum(lot["quantity"] * lot["price"] for lot in lots)
        open_position = {
            "entry_date": lots[0]["date"].isoformat(),
            "quantity": qty,
            "entry_price": cost / qty,
            "mark_price": rows[-1].close,
            "unrealised_pnl": round(qty * rows[-1].close - cost - sum(lot["commission"] for lot in lots), 2),
        }
    wins = sum(1 for t in trades if t["pnl"] > 0)
    params = {name: getattr(config, name) for name in _user_param_names(config)}
    return BacktestResult(
        strategy=strategy_name,
        instrument_id=str(bar_type.instrument_id),
        bar_type=str(bar_type),
        params=params,
        fingerprint=fingerprint,
        start=rows[0].date.isoformat(),
        end=rows[-1].date.isoformat(),
        bars=len(rows),
        starting_cash=float(starting_cash),
        final_equity=final,
        trades=trades,
        decisions=[{"date": d.date.isoformat(), "side": d.side, "quantity": d.quantity} for d in decisions],
        open_position=open_position,
        equity_curve=curve,
        num_trades=len(trades),
        win_rate=wins / len(trades) if trades else None,
        total_return=total_return,
        cagr=cagr,
        sharpe=sharpe,
        max_drawdown=max_dd,
        exposure=in_market / len(rows),
        commissions=round(sum(f["commission"] for f in fills), 2),
        restarts=list(restarts),
    )


def _user_param_names(config: StrategyConfig) -> list[str]:
    from nautilus_trader.config import StrategyConfig

    base = set(StrategyConfig.__struct_fields__) | {"instrument_id", "bar_type"}
    return [name for name in type(config).__struct_fields__ if name not in base]


def __getattr__(name: str) -> type[Controller]:
    # ``Restarter`` is built on first use (it subclasses a Nautilus class: heavy import).
    if name == "Restarter":
        return _get_restarter()
    raise AttributeError(name)

"""``ibs_reversion``: buy weak closes, sell strong closes, on daily bars, long only.

The Internal Bar Strength of a bar is ``IBS = (close - low) / (high - low)``: 0 when the bar
closed on its low, 1 when it closed on its high.  The rules, exactly:

* IBS is computed on the bar that has just closed; a bar with ``high == low`` gives no signal.
* Long only, one position at a time.
* Flat and ``IBS < buy_threshold``: buy ``floor(notional / close)`` shares at market
  (nothing when that is 0 shares).
* Long and ``IBS > sell_threshold``, or the position has been held ``max_hold_bars`` bars:
  sell the whole position at market.

The same class runs in the backtest, on paper and live.  Two things make that safe:

* **Adoption.**  On start the strategy looks at the open position in its instrument (after a
  restart the node reconciles it from the broker; ``external_order_claims`` makes it ours) and
  treats it as its own: it does not buy again, and it sells it on the exit rule.
* **No double submit.**  While one of its orders is open or in flight it submits nothing new.

Every order it submits is also appended to :attr:`IbsReversion.decisions` as a
:class:`Decision` (the date of the bar that triggered it, the side, the quantity): the paper
rung compares those with a backtest replay of the same bars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.model.enums import OrderSide, TimeInForce
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.model.instruments import Instrument
from nautilus_trader.trading.strategy import Strategy

# Market orders are sent GTC.  The IB adapter maps a market order's default TIF to GTC anyway,
# and IB reconciles DAY orders oddly across its nightly restart (a DAY order can come back as
# cancelled or unknown during reconciliation); GTC behaves the same in the backtest (a market
# order fills at once there) and on the broker.
ORDER_TIF = TimeInForce.GTC


def ibs(high: float, low: float, close: float) -> float | None:
    """Internal Bar Strength ``(close - low) / (high - low)``, or ``None`` when ``high == low``.

    The result is clamped to ``[0, 1]`` so that a close a hair outside the range (a data
    vendor's rounding) cannot produce a signal beyond the thresholds' scale.
    """
    span = high - low
    if span <= 0:
        return None
    value = (close - low) / span
    return min(1.0, max(0.0, value))


def entry_quantity(notional: float, close: float) -> int:
    """Whole shares that ``notional`` USD buys at ``close``: ``floor(notional / close)``, ≥ 0."""
    if close <= 0 or notional <= 0:
        return 0
    return max(0, math.floor(notional / close))


def bar_date(ts_event_ns: int) -> date:
    """The trading date of a daily bar: the UTC date of its ``ts_event``.

    The IB adapter stamps a daily bar at midnight UTC of its date, and the catalog stores the
    same stamp, so this is the bar's session date in both.
    """
    return datetime.fromtimestamp(ts_event_ns / 1_000_000_000, tz=UTC).date()


@dataclass(frozen=True)
class Decision:
    """One order the strategy submitted: the date of the bar that triggered it, side, shares."""

    date: date
    side: str  # "BUY" | "SELL"
    quantity: int

    def as_tuple(self) -> tuple[str, str, int]:
        return (self.date.isoformat(), self.side, self.quantity)


class IbsReversionConfig(StrategyConfig, frozen=True):
    """Configuration of :class:`IbsReversion`.

    Parameters
    ----------
    instrument_id : InstrumentId
        The instrument traded, e.g. ``QQQ.NASDAQ``.
    bar_type : BarType
        The daily bars the signal is computed on, e.g. ``QQQ.NASDAQ-1-DAY-LAST-EXTERNAL``.
    buy_threshold : float, default 0.2
        Enter when flat and the bar's IBS is strictly below this (0..1).
    sell_threshold : float, default 0.8
        Exit when long and the bar's IBS is strictly above this (0..1).
    notional : float, default 4000.0
        USD spent per entry; the entry is ``floor(notional / close)`` shares.  Kept below the
        live risk cap (USD 5,000 per order by default).
    max_hold_bars : int, optional
        Exit after the position has been held this many bars (≥ 1); ``None`` disables it.
    """

    instrument_id: InstrumentId
    bar_type: BarType
    buy_threshold: float = 0.2
    sell_threshold: float = 0.8
    notional: float = 4000.0
    max_hold_bars: int | None = None

    def __post_init__(self) -> None:
        for name in ("buy_threshold", "sell_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1 (got {value})")
        if not self.buy_threshold < self.sell_threshold:
            # Otherwise one bar could be both an entry and an exit signal.
            raise ValueError(f"buy_threshold ({self.buy_threshold}) must be below sell_threshold ({self.sell_threshold})")
        if not self.notional > 0:
            raise ValueError(f"notional must be greater than 0 USD (got {self.notional})")
        if self.max_hold_bars is not None and self.max_hold_bars < 1:
            raise ValueError(f"max_hold_bars must be at least 1 or null (got {self.max_hold_bars})")


class IbsReversion(Strategy):
    """Long-only IBS mean reversion on daily bars (see the module docstring for the rules)."""

    def __init__(self, config: IbsReversionConfig) -> None:
        super().__init__(config)
        self.instrument: Instrument | None = None
        self.decisions: list[Decision] = []
        # Bars seen while long: drives ``max_hold_bars``.  After a restart the count starts
        # again from 0 for the adopted position (the bars before the restart are not known).
        self._bars_held = 0
        self._last_bar_ts: int | None = None

    # Lifecycle -----------------------------------------------------------------------------
    def on_start(self) -> None:
        self.instrument = self.cache.instrument(self.config.instrument_id)
        if self.instrument is None:
            self.log.error(f"instrument {self.config.instrument_id} not found; stopping")
            self.stop()
            return
        held = self._long_quantity()
        if held > 0:
            self.log.info(f"adopting the open position: long {held} {self.config.instrument_id}")
        self._bars_held = 0
        self.subscribe_bars(self.config.bar_type)

    def on_stop(self) -> None:
        # Positions are deliberately left open: a restart adopts them.
        self.unsubscribe_bars(self.config.bar_type)

    def on_reset(self) -> None:
        self.decisions = []
        self._bars_held = 0
        self._last_bar_ts = None

    # Signal --------------------------------------------------------------------------------
    def on_bar(self, bar: Bar) -> None:
        if bar.bar_type != self.config.bar_type:
            return
        # The IB adapter re-publishes already-seen daily bars after a resubscription: one
        # decision per bar.
        if self._last_bar_ts is not None and bar.ts_event <= self._last_bar_ts:
            return
        self._last_bar_ts = bar.ts_event
        held = self._long_quantity()
        if held > 0:
            self._bars_held += 1
        else:
            self._bars_held = 0

        if self._order_working():
            self.log.info("an order is still working; no new decision on this bar")
            return

        value = ibs(float(bar.high), float(bar.low), float(bar.close))
        if value is None:
            return
        day = bar_date(bar.ts_event)

        if held > 0:
            max_hold = self.config.max_hold_bars
            if value > self.config.sell_threshold or (max_hold is not None and self._bars_held >= max_hold):
                self._submit(day, OrderSide.SELL, held)
        elif value < self.config.buy_threshold:
            quantity = entry_quantity(self.config.notional, float(bar.close))
            if quantity > 0:
                self._submit(day, OrderSide.BUY, quantity)

    # Helpers -------------------------------------------------------------------------------
    def _long_quantity(self) -> int:
        """Shares held in the instrument by any open position the cache knows (ours or adopted)."""
        net = Decimal(0)
        for position in self.cache.positions_open(instrument_id=self.config.instrument_id):
            net += position.signed_decimal_qty()
        return int(net) if net > 0 else 0

    def _order_working(self) -> bool:
        iid = self.config.instrument_id
        return bool(
            self.cache.orders_open_count(instrument_id=iid)
            or self.cache.orders_inflight_count(instrument_id=iid)
        )

    def _submit(self, day: date, side: OrderSide, quantity: int) -> None:
        order = self.order_factory.market(
            instrument_id=self.config.instrument_id,
            order_side=side,
            quantity=self.instrument.make_qty(quantity),
            time_in_force=ORDER_TIF,
        )
        decision = Decision(day, "BUY" if side == OrderSide.BUY else "SELL", quantity)
        self.decisions.append(decision)
        self.log.info(f"{decision.side} {quantity} {self.config.instrument_id} on the {day} bar")
        self.submit_order(order)

"""``order_check``: places a fixed list of orders once, on the first bar — a risk-cap drill.

Not a trading strategy: it exists to prove, against a paper gateway (or the simulator), that the
node's risk caps hold — an order above ``max_notional_per_order`` and a burst above
``max_order_submit_rate`` are denied inside the node and never reach the broker (``ats demo``
step 7 and the runner tests use it).  Like every strategy it can only trade live behind every
gate, approval included.
"""

from __future__ import annotations

from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.model.enums import OrderSide, TimeInForce
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.trading.strategy import Strategy


class OrderCheckConfig(StrategyConfig, frozen=True):
    """Configuration of :class:`OrderCheck`.

    Parameters
    ----------
    instrument_id : InstrumentId
        The instrument the orders are for.
    bar_type : BarType
        The bars whose first arrival triggers the orders.
    quantities : tuple[int, ...], default (1,)
        One market BUY per entry, submitted back to back (a burst when there are several).
    limit_price : float, optional
        When set, the orders are GTC limit orders at this price instead of market orders.
    """

    instrument_id: InstrumentId
    bar_type: BarType
    quantities: tuple[int, ...] = (1,)
    limit_price: float | None = None

    def __post_init__(self) -> None:
        if not self.quantities or any(q < 1 for q in self.quantities):
            raise ValueError("quantities must be a non-empty list of whole shares ≥ 1")


class OrderCheck(Strategy):
    """Submits ``quantities`` as BUY orders on the first bar it receives, then nothing."""

    def __init__(self, config: OrderCheckConfig) -> None:
        super().__init__(config)
        self.fired = False

    def on_start(self) -> None:
        self.subscribe_bars(self.config.bar_type)

    def on_stop(self) -> None:
        self.unsubscribe_bars(self.config.bar_type)

    def on_bar(self, bar: Bar) -> None:
        if self.fired:
            return
        self.fired = True
        instrument = self.cache.instrument(self.config.instrument_id)
        for quantity in self.config.quantities:
            if self.config.limit_price is None:
                order = self.order_factory.market(self.config.instrument_id, OrderSide.BUY,
                                                  instrument.make_qty(quantity), time_in_force=TimeInForce.GTC)
            else:
                order = self.order_factory.limit(self.config.instrument_id, OrderSide.BUY,
                                                 instrument.make_qty(quantity),
                                                 instrument.make_price(self.config.limit_price),
                                                 time_in_force=TimeInForce.GTC)
            self.submit_order(order)

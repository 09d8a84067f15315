"""A real Nautilus TradingNode (IB data + exec clients, reconciliation on) against the simulator.

Run as a subprocess by the tests and the benchmark (the IB client caches are module-level, so
every node gets a fresh process).  It prints one JSON object per line, prefixed ``@@ ``, for
everything the tests assert on.

    python ibsim_node_script.py --port P --phase trade|check|bars [--client-id 1] [--account DU1234567]

* ``bars``:  subscribe to QQQ.NASDAQ-1-DAY-LAST-EXTERNAL and report every bar.
* ``trade``: ``bars`` plus: MKT BUY 10 (fills), LMT BUY 5 far below the market (cancelled once
  accepted), LMT BUY 3 GTC far below the market (left resting); then waits to be killed.
* ``check``: report the reconciled open positions and open orders.

Every phase runs until the test terminates the process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

T0 = time.monotonic()


def emit(event: str, **data: Any) -> None:
    sys.stdout.write("@@ " + json.dumps({"event": event, "t": round(time.monotonic() - T0, 3), **data},
                                        default=str) + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--phase", choices=["trade", "check", "bars"], required=True)
    parser.add_argument("--client-id", type=int, default=1)
    parser.add_argument("--account", default="DU1234567")
    args = parser.parse_args()

    from ibapi.common import MarketDataTypeEnum as IBMarketDataTypeEnum
    from nautilus_trader.adapters.interactive_brokers.common import IB
    from nautilus_trader.adapters.interactive_brokers.config import (
        InteractiveBrokersDataClientConfig,
        InteractiveBrokersExecClientConfig,
        InteractiveBrokersInstrumentProviderConfig,
        SymbologyMethod,
    )
    from nautilus_trader.adapters.interactive_brokers.factories import (
        InteractiveBrokersLiveDataClientFactory,
        InteractiveBrokersLiveExecClientFactory,
    )
    from nautilus_trader.config import (
        LiveExecEngineConfig,
        LiveRiskEngineConfig,
        LoggingConfig,
        StrategyConfig,
        TradingNodeConfig,
    )
    from nautilus_trader.live.node import TradingNode
    from nautilus_trader.model.data import Bar, BarType
    from nautilus_trader.model.enums import OrderSide, TimeInForce
    from nautilus_trader.model.identifiers import InstrumentId
    from nautilus_trader.model.objects import Price, Quantity
    from nautilus_trader.trading.strategy import Strategy

    instrument_id = InstrumentId.from_str("QQQ.NASDAQ")
    bar_type = BarType.from_str("QQQ.NASDAQ-1-DAY-LAST-EXTERNAL")

    class ProbeConfig(StrategyConfig, frozen=True):
        phase: str = "bars"

    class Probe(Strategy):
        def __init__(self, config: ProbeConfig) -> None:
            super().__init__(config)
            self.phase = config.phase
            self.cancel_target = None

        def on_start(self) -> None:
            emit("started")
            instrument = self.cache.instrument(instrument_id)
            emit("instrument", id=str(instrument.id) if instrument else None,
                 price_precision=instrument.price_precision if instrument else None)
            if self.phase == "check":
                positions = [
                    {"instrument": str(p.instrument_id), "side": p.side.name, "quantity": str(p.quantity)}
                    for p in self.cache.positions_open()
                ]
                orders = [
                    {"client_order_id": str(o.client_order_id), "venue_order_id": str(o.venue_order_id),
                     "status": o.status.name, "side": o.side.name, "quantity": str(o.quantity),
                     "price": str(o.price) if o.has_price else None, "type": o.order_type.name}
                    for o in self.cache.orders_open()
                ]
                emit("reconciled", positions=positions, orders=orders)
                return
            self.subscribe_bars(bar_type)
            emit("subscribed", bar_type=str(bar_type))
            if self.phase == "trade":
                order = self.order_factory.market(instrument_id, OrderSide.BUY, Quantity.from_int(10))
                self.submit_order(order)

        def on_bar(self, bar: Bar) -> None:
            emit("bar", bar_type=str(bar.bar_type), ts_event=bar.ts_event, open=str(bar.open),
                 close=str(bar.close))

        def on_order_accepted(self, event: Any) -> None:
            emit("accepted", client_order_id=str(event.client_order_id), venue_order_id=str(event.venue_order_id))
            if self.cancel_target is not None and event.client_order_id == self.cancel_target:
                self.cancel_order(self.cache.order(event.client_order_id))

        def on_order_rejected(self, event: Any) -> None:
            emit("rejected", client_order_id=str(event.client_order_id), reason=str(event.reason))

        def on_order_canceled(self, event: Any) -> None:
            emit("canceled", client_order_id=str(event.client_order_id))
            if self.phase == "trade":
                resting = self.order_factory.limit(
                    instrument_id, OrderSide.BUY, Quantity.from_int(3), Price.from_str("100.00"),
                    time_in_force=TimeInForce.GTC)
                self.submit_order(resting)
                emit("resting_submitted", client_order_id=str(resting.client_order_id))

        def on_order_filled(self, event: Any) -> None:
            emit("filled", client_order_id=str(event.client_order_id), venue_order_id=str(event.venue_order_id),
                 last_qty=str(event.last_qty), last_px=str(event.last_px), commission=str(event.commission))

        def on_position_opened(self, event: Any) -> None:
            emit("position_opened", instrument=str(event.instrument_id), side=event.side.name,
                 quantity=str(event.quantity))
            if self.phase == "trade":
                order = self.order_factory.limit(
                    instrument_id, OrderSide.BUY, Quantity.from_int(5), Price.from_str("100.00"),
                    time_in_force=TimeInForce.GTC)
                self.cancel_target = order.client_order_id
                self.submit_order(order)

    provider = InteractiveBrokersInstrumentProviderConfig(
        symbology_method=SymbologyMethod.IB_SIMPLIFIED, load_ids=frozenset(["QQQ.NASDAQ"]))
    common = dict(ibg_host="127.0.0.1", ibg_port=args.port, ibg_client_id=args.client_id,
                  instrument_provider=provider, connection_timeout=20, request_timeout_secs=10)
    data_cfg = InteractiveBrokersDataClientConfig(
        use_regular_trading_hours=True, market_data_type=IBMarketDataTypeEnum.REALTIME, **common)
    exec_cfg = InteractiveBrokersExecClientConfig(account_id=args.account, fetch_all_open_orders=False, **common)
    node_cfg = TradingNodeConfig(
        trader_id="SIMTEST-001",
        logging=LoggingConfig(log_level="WARNING"),
        risk_engine=LiveRiskEngineConfig(max_order_submit_rate="10/00:00:01",
                                         max_notional_per_order={"QQQ.NASDAQ": 50_000}),
        exec_engine=LiveExecEngineConfig(reconciliation=True, reconciliation_lookback_mins=1440),
        data_clients={IB: data_cfg}, exec_clients={IB: exec_cfg},
        timeout_connection=30.0, timeout_reconciliation=20.0, timeout_disconnection=5.0,
    )
    node = TradingNode(config=node_cfg)
    node.add_data_client_factory(IB, InteractiveBrokersLiveDataClientFactory)
    node.add_exec_client_factory(IB, InteractiveBrokersLiveExecClientFactory)
    node.trader.add_strategy(Probe(ProbeConfig(phase=args.phase)))
    emit("building")
    node.build()
    emit("built")
    try:
        node.run()
    finally:
        node.dispose()
        emit("exited")


if __name__ == "__main__":
    main()

"""Run by tests in a throwaway environment holding ``ib_async`` (an independent TWS API client
with its own protocol code; no ats import).  Connects, qualifies QQQ, buys 2 at market, rests a
BUY 1 limit at 100 and cancels it; prints one JSON line with what it saw."""

from __future__ import annotations

import argparse
import json

from ib_async import IB, LimitOrder, MarketOrder, Stock


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    ib = IB()
    ib.connect("127.0.0.1", args.port, clientId=8, timeout=20)
    contract = Stock("QQQ", "SMART", "USD", primaryExchange="NASDAQ")
    [qualified] = ib.qualifyContracts(contract)
    trade = ib.placeOrder(qualified, MarketOrder("BUY", 2))
    while not trade.isDone():
        ib.waitOnUpdate(timeout=20)
    resting = ib.placeOrder(qualified, LimitOrder("BUY", 1, 100.0, tif="GTC"))
    while resting.orderStatus.status not in ("Submitted", "PreSubmitted"):
        ib.waitOnUpdate(timeout=20)
    ib.cancelOrder(resting.order)
    while not resting.isDone():
        ib.waitOnUpdate(timeout=20)
    print(json.dumps({"server_version": ib.client.serverVersion(), "con_id": qualified.conId,
                      "status": trade.orderStatus.status, "filled": str(trade.orderStatus.filled),
                      "fill_price": trade.fills[0].execution.price if trade.fills else None,
                      "cancelled": resting.orderStatus.status, "accounts": ib.managedAccounts()}), flush=True)
    ib.disconnect()


if __name__ == "__main__":
    main()

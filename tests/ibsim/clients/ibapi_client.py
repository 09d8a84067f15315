"""Run by tests in a throwaway environment holding another release of ``ibapi`` (no ats import).

Connects to the simulator at ``--port``, checks the contract, buys 2 QQQ at market (waits for
the fill), rests a BUY 1 limit at 100 and cancels it; prints one JSON line with what it saw.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from decimal import Decimal

from ibapi import server_versions
from ibapi.client import EClient
from ibapi.contract import Contract
from ibapi.order import Order
from ibapi.wrapper import EWrapper


class App(EWrapper, EClient):
    def __init__(self) -> None:
        EWrapper.__init__(self)
        EClient.__init__(self, self)
        self.events: list[tuple] = []
        self.cond = threading.Condition()

    def _add(self, *event: object) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait(self, predicate, what: str, timeout: float = 20.0) -> tuple:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"timed out waiting for {what}; saw {self.events[-10:]}")
                self.cond.wait(left)

    def nextValidId(self, orderId):  # noqa: N802, N803
        self._add("nextValidId", orderId)

    def contractDetails(self, reqId, contractDetails):  # noqa: N802, N803
        self._add("contractDetails", reqId, contractDetails.contract.conId)

    def orderStatus(self, orderId, status, filled, remaining, *rest):  # noqa: N802, N803
        self._add("orderStatus", orderId, status, str(filled))

    def execDetails(self, reqId, contract, execution):  # noqa: N802, N803
        self._add("execDetails", execution.orderId, str(execution.shares), execution.price)

    def error(self, reqId, *args):  # noqa: N802, N803 - the signature changed across releases
        code = next((a for a in args if isinstance(a, int) and a >= 100), None)
        self._add("error", reqId, code)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = App()
    app.connect("127.0.0.1", args.port, 7)
    threading.Thread(target=app.run, daemon=True).start()
    order_id = app.wait(lambda e: e[0] == "nextValidId", "nextValidId")[1]
    contract = Contract()
    contract.symbol, contract.secType, contract.exchange, contract.primaryExchange, contract.currency = (
        "QQQ", "STK", "SMART", "NASDAQ", "USD")
    app.reqContractDetails(1, contract)
    con_id = app.wait(lambda e: e[0] == "contractDetails", "contractDetails")[2]

    market = Order()
    market.action, market.orderType, market.totalQuantity = "BUY", "MKT", Decimal(2)
    market.eTradeOnly, market.firmQuoteOnly = False, False  # older releases send them unless told not to
    app.placeOrder(order_id, contract, market)
    fill = app.wait(lambda e: e[0] == "execDetails" and e[1] == order_id, "the market order's fill")
    app.wait(lambda e: e[0] == "orderStatus" and e[1] == order_id and e[2] == "Filled", "Filled")

    limit = Order()
    limit.action, limit.orderType, limit.totalQuantity, limit.lmtPrice, limit.tif = "BUY", "LMT", Decimal(1), 100.0, "GTC"
    limit.eTradeOnly, limit.firmQuoteOnly = False, False
    app.placeOrder(order_id + 1, contract, limit)
    app.wait(lambda e: e[0] == "orderStatus" and e[1] == order_id + 1 and e[2] == "Submitted", "Submitted")
    try:
        from ibapi.order_cancel import OrderCancel

        app.cancelOrder(order_id + 1, OrderCancel())
    except ImportError:  # releases before OrderCancel take the manual cancel time
        app.cancelOrder(order_id + 1, "")
    app.wait(lambda e: e[0] == "orderStatus" and e[1] == order_id + 1 and e[2] == "Cancelled", "Cancelled")
    app.wait(lambda e: e[0] == "error" and e[1] == order_id + 1, "the cancel's error 202")
    print(json.dumps({"client_max": server_versions.MAX_CLIENT_VER, "server_version": app.serverVersion(),
                      "con_id": con_id, "filled": fill[2], "fill_price": fill[3],
                      "errors": [e[2] for e in app.events if e[0] == "error" and e[1] != -1]}), flush=True)
    app.disconnect()


if __name__ == "__main__":
    main()

"""The simulator's "hold fills" fault: an order stays in flight (Submitted) until released.

The fault suite needs an order that reached the broker but has not filled yet (to SIGKILL a
runner in between); the simulator otherwise fills market orders at once.
"""

from __future__ import annotations

import pytest
from ibsim_support import nautilus_qqq, order

from ats.ibsim import SimGateway

pytestmark = pytest.mark.timeout(60)


def test_held_market_order_stays_submitted_until_released(sim_gateway: SimGateway, ib_app) -> None:
    # Arrange
    app = ib_app(sim_gateway.port)
    order_id = app.wait_ready()
    sim_gateway.hold_fills(True)

    # Act: the order reaches the gateway; a day passes; only then are fills released.
    app.placeOrder(order_id, nautilus_qqq(), order("BUY", 3))
    app.rec.wait_for("orderStatus", lambda a: a[0] == order_id and a[1] == "Submitted")
    sim_gateway.advance(1)
    held = sim_gateway.snapshot()
    sim_gateway.release_fills()

    # Assert
    assert [(o["order_id"], o["quantity"]) for o in held["open_orders"]] == [(order_id, "3")]
    assert held["fills"] == [] and held["positions"] == {}
    assert [r["result"] for r in sim_gateway.ledger] == ["accepted"]
    app.rec.wait_for("execDetails", lambda a: a[2].orderId == order_id)
    app.rec.wait_for("orderStatus", lambda a: a[0] == order_id and a[1] == "Filled")
    after = sim_gateway.snapshot()
    assert after["open_orders"] == []
    assert after["positions"]["QQQ.NASDAQ"]["quantity"] == "3"
    assert [f["price"] for f in after["fills"]] == [sim_gateway.last_price("QQQ.NASDAQ")]


def test_fill_released_while_the_client_is_gone_is_reported_on_reconnect(sim_gateway: SimGateway, ib_app) -> None:
    # Arrange: an order in flight, then its client disappears.
    first = ib_app(sim_gateway.port)
    order_id = first.wait_ready()
    sim_gateway.hold_fills(True)
    first.placeOrder(order_id, nautilus_qqq(), order("BUY", 2, ref="intent-1"))
    first.rec.wait_for("orderStatus", lambda a: a[0] == order_id and a[1] == "Submitted")
    first.close()
    assert sim_gateway.wait_for(lambda: sim_gateway.clients == [])

    # Act
    sim_gateway.release_fills()
    again = ib_app(sim_gateway.port)
    again.wait_ready()
    again.reqExecutions(7, _all_executions())
    again.rec.wait_for("execDetailsEnd")
    again.reqPositions()
    again.rec.wait_for("positionEnd")

    # Assert: exactly one order, filled once, and the restarted client sees fill and position.
    [(req_id, _contract, execution)] = again.rec.named("execDetails")
    assert (req_id, execution.orderId, str(execution.shares), execution.orderRef) == (7, order_id, "2", "intent-1")
    assert [str(a[2]) for a in again.rec.named("position")] == ["2"]
    assert [r["kind"] for r in sim_gateway.ledger] == ["place"]


def test_limit_orders_do_not_fill_while_held(sim_gateway: SimGateway, ib_app) -> None:
    app = ib_app(sim_gateway.port)
    order_id = app.wait_ready()
    sim_gateway.hold_fills(True)
    above = sim_gateway.last_price("QQQ.NASDAQ") * 2  # marketable at once and all day

    app.placeOrder(order_id, nautilus_qqq(), order("BUY", 1, "LMT", limit=round(above, 2)))
    app.rec.wait_for("orderStatus", lambda a: a[0] == order_id and a[1] == "Submitted")
    sim_gateway.advance(1)
    assert sim_gateway.snapshot()["fills"] == []

    sim_gateway.hold_fills(False)  # switching it off alone fills nothing retroactively …
    assert sim_gateway.snapshot()["fills"] == []
    sim_gateway.advance(1)  # … the next price path does
    app.rec.wait_for("orderStatus", lambda a: a[0] == order_id and a[1] == "Filled")


def _all_executions():  # noqa: ANN202
    from ibapi.execution import ExecutionFilter

    return ExecutionFilter()


def test_held_acks_reach_the_client_only_when_released_and_in_order(sim_gateway: SimGateway, ib_app) -> None:
    # Arrange
    app = ib_app(sim_gateway.port)
    order_id = app.wait_ready()
    sim_gateway.hold_acks(True)

    # Act: the order and its cancel reach the gateway; a later request is answered at once.
    app.placeOrder(order_id, nautilus_qqq(), order("BUY", 1, "LMT", limit=100.0))
    app.cancelOrder(order_id, _cancel())
    app.reqCurrentTime()
    app.rec.wait_for("currentTime")
    heard_while_held = [n for n, a in app.rec.calls if n in ("openOrder", "orderStatus", "error") and a[0] == order_id]
    held = sim_gateway.held_acks
    sim_gateway.release_acks()
    app.rec.wait_for("orderStatus", lambda a: a[0] == order_id and a[1] == "Cancelled")

    # Assert
    assert heard_while_held == [] and held >= 3
    assert [(r["kind"], r["result"]) for r in sim_gateway.ledger] == [("place", "accepted"), ("cancel", "cancelled")]
    statuses = [a[1] for a in app.rec.named("orderStatus") if a[0] == order_id]
    assert statuses[0] == "Submitted" and statuses[-1] == "Cancelled"
    assert sim_gateway.held_acks == 0


def _cancel():  # noqa: ANN202
    from ibapi.order_cancel import OrderCancel

    return OrderCancel()

"""Requests common clients make beyond the Nautilus adapter's, answered from the simulator's book
and replayed prices: account updates, PnL, completed orders, time, reference data and ticks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal

import pytest
from ibapi.order_cancel import OrderCancel
from ibsim_support import IBApp, nautilus_qqq, order

from ats.ibsim import SimGateway

pytestmark = pytest.mark.timeout(60)
App = Callable[..., IBApp]
QQQ_CON_ID = 320227571


def _bought(sim: SimGateway, ib_app: App, quantity: int = 10) -> IBApp:
    app = ib_app(sim.port)
    order_id = app.wait_ready()
    app.placeOrder(order_id, nautilus_qqq(), order("BUY", quantity))
    app.rec.wait_for("orderStatus", lambda a: a[0] == order_id and a[1] == "Filled")
    return app


def test_account_updates_report_values_and_the_position_and_follow_the_market(sim_gateway: SimGateway,
                                                                             ib_app: App) -> None:
    # Arrange
    app = _bought(sim_gateway, ib_app)

    # Act
    app.reqAccountUpdates(True, "")
    app.rec.wait_for("accountDownloadEnd")
    first = app.rec.named("updatePortfolio")
    sim_gateway.advance()
    app.rec.wait_for("updatePortfolio", lambda a: a[2] == sim_gateway.last_price("QQQ.NASDAQ")
                     and len(app.rec.named("updatePortfolio")) > len(first))

    # Assert
    values = {key: (value, currency) for key, value, currency, _ in app.rec.named("updateAccountValue")}
    assert values["NetLiquidation"][1] == "USD" and float(values["TotalCashValue"][0]) < 100_000
    (contract, position, price, value, avg_cost, unrealized, _realized, account), = first
    assert (contract.conId, position, account) == (QQQ_CON_ID, Decimal(10), "DU1234567")
    assert value == round(10 * price, 2) and unrealized == round(10 * (price - avg_cost), 2)
    assert app.rec.named("updateAccountTime") and app.rec.named("accountDownloadEnd") == [("DU1234567",)]


def test_account_updates_multi_and_pnl_per_account_and_position(sim_gateway: SimGateway, ib_app: App) -> None:
    # Arrange
    app = _bought(sim_gateway, ib_app)

    # Act
    app.reqAccountUpdatesMulti(5, "DU1234567", "", False)
    app.rec.wait_for("accountUpdateMultiEnd", lambda a: a[0] == 5)
    app.reqPnL(6, "DU1234567", "")
    app.reqPnLSingle(7, "DU1234567", "", QQQ_CON_ID)
    app.rec.wait_for("pnlSingle", lambda a: a[0] == 7)
    sim_gateway.advance()
    app.rec.wait_for("pnl", lambda a: len(app.rec.named("pnl")) >= 2)

    # Assert
    keys = {a[3] for a in app.rec.named("accountUpdateMulti") if a[0] == 5}
    assert {"NetLiquidation", "TotalCashValue", "BuyingPower"} <= keys
    (req_id, position, _daily, unrealized, realized, value), = app.rec.named("pnlSingle")[:1]
    price_then = value / 10
    assert (req_id, position, realized) == (7, Decimal(10), 0.0)
    assert app.rec.named("pnl")[0][2] == unrealized  # one position: the account's unrealised is its own
    moved = 10 * (sim_gateway.last_price("QQQ.NASDAQ") - price_then)
    assert app.rec.named("pnl")[-1][2] == pytest.approx(unrealized + moved, abs=0.02)


def test_completed_orders_list_the_filled_and_the_cancelled(sim_gateway: SimGateway, ib_app: App) -> None:
    # Arrange: one order filled, one rested and cancelled.
    app = _bought(sim_gateway, ib_app, 3)
    resting = max(a[0] for a in app.rec.named("orderStatus")) + 1
    app.placeOrder(resting, nautilus_qqq(), order("BUY", 1, "LMT", limit=100.0))
    app.rec.wait_for("orderStatus", lambda a: a[0] == resting and a[1] == "Submitted")
    app.cancelOrder(resting, OrderCancel())
    app.rec.wait_for("orderStatus", lambda a: a[0] == resting and a[1] == "Cancelled")

    # Act
    app.reqCompletedOrders(True)
    app.rec.wait_for("completedOrdersEnd")

    # Assert
    done = [(c.conId, o.action, o.totalQuantity, o.orderType, s.status, o.filledQuantity)
            for c, o, s in app.rec.named("completedOrder")]
    assert done == [(QQQ_CON_ID, "BUY", Decimal(3), "MKT", "Filled", Decimal(3)),
                    (QQQ_CON_ID, "BUY", Decimal(1), "LMT", "Cancelled", Decimal(0))]


def test_time_reference_data_and_ticks_come_from_the_replayed_market(sim_gateway: SimGateway, ib_app: App) -> None:
    # Arrange
    app = ib_app(sim_gateway.port)
    app.wait_ready()
    market_now = sim_gateway.market_epoch()  # the manual clock stands still until advance()

    # Act
    app.reqCurrentTimeInMillis()
    app.reqHeadTimeStamp(11, nautilus_qqq(), "TRADES", 1, 1)
    app.reqMatchingSymbols(12, "QQ")
    app.reqSecDefOptParams(13, "QQQ", "", "STK", QQQ_CON_ID)
    app.reqHistoricalTicks(14, nautilus_qqq(), "", "20240531 23:59:59 UTC", 10, "TRADES", 1, True, [])
    app.reqTickByTickData(15, nautilus_qqq(), "BidAsk", 0, False)
    app.rec.wait_for("tickByTickBidAsk", lambda a: a[0] == 15)
    sim_gateway.advance()
    app.rec.wait_for("tickByTickBidAsk", lambda a: a[0] == 15 and len(app.rec.named("tickByTickBidAsk")) >= 2)

    # Assert
    qqq = sim_gateway.market.instruments["QQQ.NASDAQ"]
    (millis,), = app.rec.named("currentTimeInMillis")
    assert millis == market_now * 1000
    assert app.rec.named("headTimestamp") == [(11, qqq.bars[0].date.strftime("%Y%m%d") + "-13:30:00")]
    (req_id, descriptions), = app.rec.named("symbolSamples")
    assert (req_id, [d.contract.symbol for d in descriptions]) == (12, ["QQQ"])
    assert app.rec.named("securityDefinitionOptionParameterEnd") == [(13,)]
    (req_id, ticks, done), = app.rec.named("historicalTicksLast")
    day = qqq.bar_on(dt.date(2024, 5, 31))
    assert (req_id, len(ticks), done, ticks[-1].price) == (14, 10, True, day.close)
    first, second = [a for a in app.rec.named("tickByTickBidAsk") if a[0] == 15][:2]
    assert round(second[3] - second[2], 2) == 0.02  # ask - bid: one cent either side of the last price
    assert second[1] > first[1]  # the market clock moved on


def test_market_data_ticks_move_with_the_price(sim_factory, ib_app: App) -> None:
    # Arrange: a clock we step a fraction of a day at a time.
    sim = sim_factory()
    app = ib_app(sim.port)
    app.wait_ready()
    app.reqMktData(21, nautilus_qqq(), "", False, False, [])
    app.rec.wait_for("tickPrice", lambda a: a[0] == 21 and a[1] == 4)

    # Act
    sim.advance()
    app.rec.wait_for("tickPrice", lambda a: a[0] == 21 and a[1] == 4 and a[2] == sim.last_price("QQQ.NASDAQ"))

    # Assert: bid and ask move with it, sizes come along.
    last = sim.last_price("QQQ.NASDAQ")
    prices = {a[1]: a[2] for a in app.rec.named("tickPrice") if a[0] == 21}
    assert (prices[1], prices[2], prices[4]) == (round(last - 0.01, 2), round(last + 0.01, 2), last)
    assert any(a[0] == 21 and a[2] == Decimal(100) for a in app.rec.named("tickSize"))

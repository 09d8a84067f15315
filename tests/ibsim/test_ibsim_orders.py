"""Orders as IB handles them, through the stock ibapi client: order types matched against the
replayed intraday path, time in force, brackets, OCA groups, what-if, ids and IB's reject codes.

The bars are written by the tests, so every price and time below follows from the path rule of
``DailyBar.price_at`` (open → nearer extreme → other extreme → close, in thirds of the 6.5 h
session starting 09:30 New York, 13:30 UTC in June):

* 2024-06-03: 100 flat (the simulator starts at its close: last price 100)
* 2024-06-04: 100 → 99 → 110 → 101
* 2024-06-05: opens 104 (a gap up), → 106 → 95 → 96
* 2024-06-06: 96 → 97 → 90 → 91
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ibapi.contract import Contract
from ibapi.execution import ExecutionFilter
from ibapi.order import Order
from ibsim_support import IBApp, stock

from ats.ibsim import SimGateway, versions

pytestmark = pytest.mark.timeout(60)
App = Callable[..., IBApp]

BARS = """date,open,high,low,close,volume
2024-06-03,100,100,100,100,1000000
2024-06-04,100,110,99,101,1000000
2024-06-05,104,106,95,96,1000000
2024-06-06,96,97,90,91,1000000
"""


@pytest.fixture
def sim(sim_factory: Callable[..., SimGateway], tmp_path: Path) -> SimGateway:
    return _sim_with_bars(sim_factory, tmp_path)


def _sim_with_bars(sim_factory: Callable[..., SimGateway], tmp_path: Path, **kwargs: Any) -> SimGateway:
    path = tmp_path / "test.csv"
    path.write_text(BARS)
    return sim_factory(data={"TEST.NASDAQ": path}, start="2024-06-03", **kwargs)


@pytest.fixture
def app(sim: SimGateway, ib_app: App) -> IBApp:
    client = ib_app(sim.port)
    client.wait_ready()
    return client


def ticket(action: str, qty: int | str, order_type: str = "MKT", *, tif: str = "GTC", **fields: Any) -> Order:
    o = Order()
    o.action, o.totalQuantity, o.orderType, o.tif = action, Decimal(qty), order_type, tif
    for name, value in fields.items():
        setattr(o, name, value)
    return o


def listed() -> Contract:
    """The instrument the bars above are served for (TEST.NASDAQ)."""
    return stock("TEST")


def statuses(app: IBApp, order_id: int) -> list[str]:
    return [a[1] for a in app.rec.named("orderStatus") if a[0] == order_id]


def wait_status(app: IBApp, order_id: int, status: str) -> tuple[Any, ...]:
    return app.rec.wait_for("orderStatus", lambda a: a[0] == order_id and a[1] == status)


def executions(app: IBApp, order_id: int) -> list[Any]:
    return [a[2] for a in app.rec.named("execDetails") if a[2].orderId == order_id]


def buy_ten_at_100(app: IBApp, order_id: int = 1) -> None:
    app.placeOrder(order_id, listed(), ticket("BUY", 10))
    wait_status(app, order_id, "Filled")


# ----------------------------------------------------------------------------- stops


def test_sell_stop_waits_presubmitted_then_fills_at_its_price_on_the_market_clock(sim: SimGateway, app: IBApp) -> None:
    # Arrange
    buy_ten_at_100(app)
    app.placeOrder(2, listed(), ticket("SELL", 10, "STP", auxPrice=99.5))
    wait_status(app, 2, "PreSubmitted")
    resting = sim.snapshot()

    # Act: 06-04 falls from 100 to 99 in the first third of the session.
    sim.advance()

    # Assert
    wait_status(app, 2, "Filled")
    assert resting["fills"][-1]["order_id"] == 1 and resting["open_orders"][0]["status"] == "PreSubmitted"
    assert statuses(app, 2) == ["PreSubmitted", "Submitted", "Filled"]
    (execution,) = executions(app, 2)
    assert (execution.side, execution.shares, execution.price) == ("SLD", Decimal(10), 99.5)
    # Halfway down the first third: 09:30 + 65 min New York = 14:35 UTC on the replayed day.
    assert execution.time == "20240604 14:35:00 UTC"
    assert sim.snapshot()["positions"] == {}


def test_buy_stop_gapped_through_fills_at_the_open(sim: SimGateway, app: IBApp) -> None:
    # Arrange: after 06-04 (close 101) a stop at 103.
    sim.advance()
    app.placeOrder(1, listed(), ticket("BUY", 5, "STP", auxPrice=103.0))
    wait_status(app, 1, "PreSubmitted")

    # Act: 06-05 opens at 104.
    sim.advance()

    # Assert
    wait_status(app, 1, "Filled")
    (execution,) = executions(app, 1)
    assert (execution.price, execution.time) == (104.0, "20240605 13:30:00 UTC")


def test_stop_limit_triggers_then_rests_as_a_limit_until_the_path_reaches_it(sim: SimGateway, app: IBApp) -> None:
    # Arrange
    sim.advance()
    app.placeOrder(1, listed(), ticket("BUY", 5, "STP LMT", auxPrice=103.0, lmtPrice=103.5))
    wait_status(app, 1, "PreSubmitted")

    # Act: 06-05 opens at 104 (triggered, above the limit), rises to 106, falls to 95.
    sim.advance()

    # Assert
    wait_status(app, 1, "Filled")
    assert statuses(app, 1) == ["PreSubmitted", "Submitted", "Filled"]
    (execution,) = executions(app, 1)
    assert execution.price == 103.5


@pytest.mark.parametrize(("trail", "fill_price"), [
    ({"auxPrice": 2.0}, 108.0),  # the stop follows the high of 110 by 2
    ({"trailingPercent": 2.0}, 107.8),  # 2 % of 110
])
def test_trailing_stop_follows_the_replayed_high(sim: SimGateway, app: IBApp, trail: dict[str, float],
                                                 fill_price: float) -> None:
    # Arrange: from 100 the stop starts at 98; 06-04 dips to 99, rallies to 110, closes 101.
    buy_ten_at_100(app)
    app.placeOrder(2, listed(), ticket("SELL", 10, "TRAIL", **trail))
    opened = app.rec.wait_for("openOrder", lambda a: a[0] == 2)

    # Act
    sim.advance()

    # Assert
    wait_status(app, 2, "Filled")
    assert opened[2].trailStopPrice == 98.0 and opened[3].status == "PreSubmitted"
    (execution,) = executions(app, 2)
    assert execution.price == fill_price


# ----------------------------------------------------------------------------- brackets and OCA


def _bracket(app: IBApp, stop: float) -> None:
    app.placeOrder(1, listed(), ticket("BUY", 10, "LMT", lmtPrice=99.5, transmit=False))
    app.placeOrder(2, listed(), ticket("SELL", 10, "LMT", lmtPrice=105.0, parentId=1, transmit=False))
    app.placeOrder(3, listed(), ticket("SELL", 10, "STP", auxPrice=stop, parentId=1, transmit=True))
    wait_status(app, 1, "Submitted")


def test_bracket_is_held_until_its_last_child_then_take_profit_fill_cancels_the_stop(
        sim: SimGateway, app: IBApp) -> None:
    # Arrange: entry 99.5, take profit 105, stop 98 (never reached on 06-04).
    _bracket(app, stop=98.0)
    live = sim.snapshot()

    # Act: 06-04 falls to 99 (entry fills at 99.5), rallies to 110 (take profit fills at 105).
    sim.advance()

    # Assert
    wait_status(app, 3, "Cancelled")
    assert statuses(app, 1) == ["Inactive", "Submitted", "Filled"]
    assert statuses(app, 2) == ["Inactive", "PreSubmitted", "Submitted", "Filled"]
    assert statuses(app, 3) == ["PreSubmitted", "Cancelled"]
    assert {o["order_id"]: o["status"] for o in live["open_orders"]} == {1: "Submitted", 2: "PreSubmitted",
                                                                         3: "PreSubmitted"}
    assert [e.price for e in (*executions(app, 1), *executions(app, 2))] == [99.5, 105.0]
    assert app.rec.wait_for("error", lambda a: a[0] == 3)[2] == 202
    assert {a[6] for a in app.rec.named("orderStatus") if a[0] in (2, 3)} == {1}  # parentId echoed
    assert {a[2].parentId for a in app.rec.named("openOrder") if a[0] in (2, 3)} == {1}
    assert sim.snapshot()["positions"] == {} and sim.snapshot()["open_orders"] == []
    assert [r["result"] for r in sim.ledger] == ["held (not transmitted)", "held (not transmitted)", "accepted"]


@pytest.mark.parametrize("server_version", [176, 200, 203, versions.DEFAULT_VERSION])
def test_bracket_and_what_if_travel_at_every_order_wire_version(sim_factory: Callable[..., SimGateway],
                                                                 tmp_path: Path, ib_app: App,
                                                                 server_version: int) -> None:
    # Arrange: text placeOrder/openOrder below 203, protobuf from it.
    sim = _sim_with_bars(sim_factory, tmp_path, server_version=server_version)
    app = ib_app(sim.port)
    app.wait_ready()

    # Act
    _bracket(app, stop=98.0)
    app.placeOrder(9, listed(), ticket("BUY", 10, whatIf=True))
    app.rec.wait_for("openOrder", lambda a: a[0] == 9)
    sim.advance()

    # Assert
    wait_status(app, 3, "Cancelled")
    state = app.rec.wait_for("openOrder", lambda a: a[0] == 9)[3]
    assert float(state.initMarginChange) == 1000.0 and state.commissionAndFees == 1.0
    assert statuses(app, 9) == [] and statuses(app, 1)[0] == "Inactive"
    assert [e.price for e in (*executions(app, 1), *executions(app, 2))] == [99.5, 105.0]
    assert {a[6] for a in app.rec.named("orderStatus") if a[0] in (2, 3)} == {1}
    assert sim.negotiated_versions == [server_version]


def test_bracket_stop_that_fills_first_cancels_the_take_profit(sim: SimGateway, app: IBApp) -> None:
    # Arrange: the stop at 99.2 is reached on the way down to 99, after the entry at 99.5.
    _bracket(app, stop=99.2)

    # Act
    sim.advance()

    # Assert
    wait_status(app, 2, "Cancelled")
    assert [e.price for e in executions(app, 3)] == [99.2]
    assert executions(app, 2) == []


def test_cancelling_a_bracket_parent_cancels_its_held_children(sim: SimGateway, app: IBApp) -> None:
    # Arrange
    _bracket(app, stop=98.0)

    # Act
    app.cancelOrder(1, _no_manual_time())

    # Assert
    wait_status(app, 3, "Cancelled")
    assert {a[0] for a in app.rec.named("orderStatus") if a[1] == "Cancelled"} == {1, 2, 3}
    assert sim.snapshot()["open_orders"] == []


@pytest.mark.parametrize(("oca_type", "first_qty", "second_final", "second_fills"), [
    # Cancel the others: two bids of 600, together more than the cash, but only one can fill,
    # so both are accepted; 99.5 is reached first and the 99.2 bid is cancelled.
    (1, 600, "Cancelled", []),
    # Reduce the others (no block): 300 at 99.5 leaves 300 of the 99.2 bid, filled further down.
    (3, 300, "Filled", [(Decimal(300), 99.2)]),
])
def test_oca_group_fill_cancels_or_reduces_the_other_order(sim: SimGateway, app: IBApp, oca_type: int,
                                                           first_qty: int, second_final: str,
                                                           second_fills: list[tuple[Decimal, float]]) -> None:
    # Arrange
    app.placeOrder(1, listed(), ticket("BUY", first_qty, "LMT", lmtPrice=99.5, ocaGroup="g", ocaType=oca_type))
    app.placeOrder(2, listed(), ticket("BUY", 600, "LMT", lmtPrice=99.2, ocaGroup="g", ocaType=oca_type))
    wait_status(app, 2, "Submitted")

    # Act: 06-04 passes 99.5, then 99.2 on the way down to 99.
    sim.advance()

    # Assert
    wait_status(app, 2, second_final)
    assert [e.price for e in executions(app, 1)] == [99.5]
    assert [(e.shares, e.price) for e in executions(app, 2)] == second_fills
    assert sim.snapshot()["positions"]["TEST.NASDAQ"]["quantity"] == "600"
    if second_final == "Cancelled":
        assert app.rec.wait_for("error", lambda a: a[0] == 2)[2] == 202
    else:
        assert app.rec.wait_for("openOrder", lambda a: a[0] == 2 and a[2].totalQuantity == Decimal(300))


def test_child_the_account_cannot_carry_becomes_inactive_when_its_parent_fills(sim: SimGateway, app: IBApp) -> None:
    # Arrange: the child would sell 20 of the 10 shares the parent buys (a cash account).
    app.placeOrder(1, listed(), ticket("BUY", 10, "LMT", lmtPrice=99.5, transmit=False))
    app.placeOrder(2, listed(), ticket("SELL", 20, "LMT", lmtPrice=105.0, parentId=1))
    wait_status(app, 2, "PreSubmitted")

    # Act
    sim.advance()

    # Assert: accepted, then rejected by IB once it would work.
    wait_status(app, 2, "Inactive")
    err = app.rec.wait_for("error", lambda a: a[0] == 2)
    assert err[2] == 201 and "short sale" in err[3]
    assert statuses(app, 1)[-1] == "Filled" and executions(app, 2) == []
    assert sim.snapshot()["open_orders"] == []


# ----------------------------------------------------------------------------- time in force


def test_ioc_fills_the_size_at_the_touch_and_cancels_the_rest(sim: SimGateway, app: IBApp) -> None:
    # Act
    app.placeOrder(1, listed(), ticket("BUY", 150, tif="IOC"))

    # Assert
    final = wait_status(app, 1, "Cancelled")
    (execution,) = executions(app, 1)
    assert (execution.shares, execution.price) == (Decimal(100), 100.0)
    assert (final[2], final[3]) == (Decimal(100), Decimal(50))  # filled, remaining
    assert sim.snapshot()["positions"]["TEST.NASDAQ"]["quantity"] == "100"
    assert sim.ledger[-1]["result"] == "partially filled, rest cancelled"


def test_market_on_close_waits_for_the_next_close_with_warning_399(sim: SimGateway, app: IBApp) -> None:
    # Arrange: placed after the 06-03 close.
    app.placeOrder(1, listed(), ticket("BUY", 10, "MOC", tif="DAY"))
    warning = app.rec.wait_for("error", lambda a: a[0] == 1)
    wait_status(app, 1, "Submitted")

    # Act
    sim.advance()

    # Assert
    wait_status(app, 1, "Filled")
    assert warning[2] == 399 and "2024-06-04 09:30:00 US/Eastern" in warning[3]
    (execution,) = executions(app, 1)
    assert (execution.price, execution.time) == (101.0, "20240604 20:00:00 UTC")


def test_limit_on_close_not_reached_is_cancelled_at_the_close(sim: SimGateway, app: IBApp) -> None:
    app.placeOrder(1, listed(), ticket("BUY", 10, "LOC", tif="DAY", lmtPrice=100.5))
    wait_status(app, 1, "Submitted")

    sim.advance()  # closes at 101

    wait_status(app, 1, "Cancelled")
    assert executions(app, 1) == []


@pytest.mark.parametrize(("limit", "filled"), [(None, True), (103.0, False)])
def test_opening_order_trades_in_the_next_opening_auction_or_not_at_all(sim: SimGateway, app: IBApp,
                                                                        limit: float | None, filled: bool) -> None:
    # Arrange: after the 06-04 close; 06-05 opens at 104.
    sim.advance()
    fields = {"lmtPrice": limit} if limit else {}
    app.placeOrder(1, listed(), ticket("BUY", 10, "LMT" if limit else "MKT", tif="OPG", **fields))
    wait_status(app, 1, "Submitted")

    # Act
    sim.advance()

    # Assert
    final = wait_status(app, 1, "Filled" if filled else "Cancelled")
    assert [(e.price, e.time) for e in executions(app, 1)] == ([(104.0, "20240605 13:30:00 UTC")] if filled else [])
    assert final[1] == ("Filled" if filled else "Cancelled")


def test_good_till_date_order_is_cancelled_when_the_market_clock_passes_it(sim: SimGateway, app: IBApp) -> None:
    # Arrange: 06-05 reaches 95.5 only at about 13:44 New York, after the order's noon.
    app.placeOrder(1, listed(), ticket("BUY", 10, "LMT", tif="GTD", lmtPrice=95.5,
                                              goodTillDate="20240605 12:00:00 US/Eastern"))
    wait_status(app, 1, "Submitted")

    # Act
    sim.advance()
    still_open = [o["order_id"] for o in sim.snapshot()["open_orders"]]
    sim.advance()

    # Assert
    wait_status(app, 1, "Cancelled")
    assert still_open == [1] and executions(app, 1) == []


def test_good_till_date_in_the_past_is_rejected(sim: SimGateway, app: IBApp) -> None:
    app.placeOrder(1, listed(), ticket("BUY", 10, "LMT", tif="GTD", lmtPrice=95.5,
                                              goodTillDate="20240603 12:00:00 US/Eastern"))

    err = app.rec.wait_for("error", lambda a: a[0] == 1)
    assert err[2] == 201 and "in the past" in err[3]


def test_day_limit_order_modified_to_a_stop_price_change_keeps_its_id(sim: SimGateway, app: IBApp) -> None:
    # Arrange: a stop far below, then moved up into 06-04's range.
    buy_ten_at_100(app)
    app.placeOrder(2, listed(), ticket("SELL", 10, "STP", auxPrice=90.0))
    wait_status(app, 2, "PreSubmitted")

    # Act
    app.placeOrder(2, listed(), ticket("SELL", 10, "STP", auxPrice=99.8))
    app.rec.wait_for("openOrder", lambda a: a[0] == 2 and a[2].auxPrice == 99.8)
    sim.advance()

    # Assert
    wait_status(app, 2, "Filled")
    assert [e.price for e in executions(app, 2)] == [99.8]
    assert [r["result"] for r in sim.ledger] == ["filled", "accepted", "modified"]


# ----------------------------------------------------------------------------- what-if


def test_what_if_order_answers_margin_and_commission_and_places_nothing(sim: SimGateway, app: IBApp) -> None:
    # Act
    app.placeOrder(1, listed(), ticket("BUY", 10, whatIf=True))

    # Assert
    _oid, _c, order, state = app.rec.wait_for("openOrder", lambda a: a[0] == 1)
    assert order.whatIf and state.status == "PreSubmitted"
    margin = [float(v) for v in (state.initMarginBefore, state.initMarginChange, state.initMarginAfter)]
    assert margin == [0.0, 1000.0, 1000.0]  # a cash account: the position's value
    assert [float(state.equityWithLoanBefore), float(state.equityWithLoanChange)] == [100_000.0, -1.0]
    assert state.commissionAndFees == 1.0 and state.commissionAndFeesCurrency == "USD"
    app.placeOrder(2, listed(), ticket("BUY", 1))  # a later real order: the what-if came first
    wait_status(app, 2, "Filled")
    assert statuses(app, 1) == [] and executions(app, 1) == []
    snap = sim.snapshot()
    assert [f["order_id"] for f in snap["fills"]] == [2] and snap["positions"]["TEST.NASDAQ"]["quantity"] == "1"
    what_if = sim.ledger[0]
    assert (what_if["kind"], what_if["result"]) == ("what_if", "what-if answered; nothing placed")
    assert [r["kind"] for r in sim.ledger] == ["what_if", "place"]


# ----------------------------------------------------------------------------- ids and rejects


def test_reused_order_id_gets_103_and_nothing_is_placed(sim: SimGateway, app: IBApp, ib_app: App) -> None:
    # Arrange
    app.placeOrder(10, listed(), ticket("BUY", 1))
    wait_status(app, 10, "Filled")
    app.placeOrder(11, listed(), ticket("BUY", 1, "LMT", lmtPrice=90.0))
    app.cancelOrder(11, _no_manual_time())
    wait_status(app, 11, "Cancelled")

    # Act: a lower id, the id of a cancelled order, and the same lower id from another client.
    app.placeOrder(9, listed(), ticket("BUY", 1))
    app.placeOrder(11, listed(), ticket("BUY", 1, "LMT", lmtPrice=90.0))
    other = ib_app(sim.port, 2)
    other.wait_ready()
    other.placeOrder(9, listed(), ticket("BUY", 1))

    # Assert
    wait_status(other, 9, "Filled")
    assert (app.rec.wait_for("error", lambda a: a[0] == 9)[2:4]) == (103, "Duplicate order id")
    assert app.rec.wait_for("error", lambda a: a[0] == 11 and a[2] != 202)[2] == 103
    assert statuses(app, 9) == []
    assert [f["order_id"] for f in sim.snapshot()["fills"]] == [10, 9]


def test_next_valid_id_after_an_ibc_restart_is_above_every_id_used(sim: SimGateway, ib_app: App) -> None:
    # Arrange: a filled order, a rejected one and a what-if, each consuming its id.
    app = ib_app(sim.port)
    app.wait_ready()
    app.placeOrder(5, listed(), ticket("BUY", 1))
    app.placeOrder(6, stock("NOPE"), ticket("BUY", 1))
    app.placeOrder(7, listed(), ticket("BUY", 1, whatIf=True))
    app.rec.wait_for("openOrder", lambda a: a[0] == 7)

    # Act
    sim.restart(0.2)
    assert sim.wait_for(lambda: sim.clients == [] and sim.is_listening, 10)
    again = ib_app(sim.port, 1)

    # Assert
    assert again.wait_ready() == 8


@pytest.mark.parametrize(("contract", "o", "code", "text"), [
    (stock("NOPE"), ticket("BUY", 1), 200, "No security definition has been found for the request"),
    (listed(), ticket("BUY", 0), 434, "The order size cannot be zero"),
    (listed(), ticket("BUY", 1, account="DU999"), 321,
     "Error validating request.-'bN' : cause - Invalid account code"),
    (listed(), ticket("BUY", 1, "VWAP"), 387, "Unsupported order type for this exchange and security type."),
    (listed(), ticket("BUY", 1, "LMT", lmtPrice=99.005), 110,
     "The price does not conform to the minimum price variation for this contract."),
    (listed(), ticket("BUY", 1, "STP", tif="IOC", auxPrice=101.0), 201,
     "Order rejected - reason:Time in force IOC is not valid for STP orders"),
])
def test_rejects_carry_ibs_code_and_text_and_place_nothing(sim: SimGateway, app: IBApp, contract: Contract,
                                                            o: Order, code: int, text: str) -> None:
    app.placeOrder(1, contract, o)

    err = app.rec.wait_for("error", lambda a: a[0] == 1)
    assert (err[2], err[3]) == (code, text)
    assert not app.rec.named("openOrder") and not app.rec.named("orderStatus")
    assert (sim.ledger[-1]["result"], sim.ledger[-1]["code"]) == ("rejected", code)
    assert sim.snapshot()["open_orders"] == [] and sim.snapshot()["cash"] == 100_000


# ----------------------------------------------------------------------------- the market clock


def test_executions_are_stamped_with_the_market_clock_also_when_requested_again(sim: SimGateway,
                                                                               app: IBApp) -> None:
    # Arrange: one fill at the 06-03 close, one at the 06-04 close.
    buy_ten_at_100(app, 1)
    sim.advance()
    app.placeOrder(2, listed(), ticket("BUY", 1))
    wait_status(app, 2, "Filled")

    # Act
    flt = ExecutionFilter()
    flt.time = "20240604-00:00:00"
    app.reqExecutions(7, flt)
    app.rec.wait_for("execDetailsEnd", lambda a: a[0] == 7)

    # Assert
    live = [a[2].time for a in app.rec.named("execDetails") if a[0] == -1]
    assert live == ["20240603 20:00:00 UTC", "20240604 20:00:00 UTC"]
    assert [(a[2].orderId, a[2].time) for a in app.rec.named("execDetails") if a[0] == 7] == [
        (2, "20240604 20:00:00 UTC")]


def _no_manual_time() -> Any:
    from ibapi.order_cancel import OrderCancel

    return OrderCancel()

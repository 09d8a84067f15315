"""The stock ibapi EClient against the simulator: connect, contracts, bars, orders, reconciliation."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from ibapi.contract import Contract
from ibapi.execution import ExecutionFilter
from ibapi.order import Order
from ibapi.order_cancel import OrderCancel
from ibsim_support import IBApp, nautilus_qqq, order, stock

from ats.ibsim import SimGateway, commission_for, versions

pytestmark = pytest.mark.timeout(60)
App = Callable[..., IBApp]


def summary(app: IBApp, req_id: int) -> dict[str, tuple[str, str]]:
    app.reqAccountSummary(req_id, "All", "NetLiquidation,TotalCashValue,BuyingPower,AvailableFunds,"
                          "FullAvailableFunds,FullInitMarginReq,FullMaintMarginReq,AccountType")
    app.rec.wait_for("accountSummaryEnd", lambda a: a[0] == req_id)
    return {tag: (value, cur) for rid, _acct, tag, value, cur in app.rec.named("accountSummary") if rid == req_id}


def test_eclient_connects_and_gets_accounts_and_next_id(sim_gateway: SimGateway, ib_app: App) -> None:
    app = ib_app(sim_gateway.port, 3)
    next_id = app.wait_ready()
    assert app.serverVersion() == versions.DEFAULT_VERSION
    assert app.rec.named("managedAccounts") == [("DU1234567",)]
    assert next_id == 1
    app.rec.wait_for("error", lambda a: a[2] == 2158)
    codes = {a[2] for a in app.rec.errors()}
    assert {2104, 2106, 2158} <= codes
    assert sim_gateway.wait_for(lambda: sim_gateway.clients == [3])


@pytest.mark.parametrize("contract_factory", [nautilus_qqq, lambda: stock("QQQ"),
                                              lambda: _by_con_id(320227571)])
def test_contract_details_for_qqq_come_once_then_end(sim_gateway: SimGateway, ib_app: App,
                                                      contract_factory: Callable[[], Contract]) -> None:
    app = ib_app(sim_gateway.port)
    app.wait_ready()
    app.reqContractDetails(7, contract_factory())
    app.rec.wait_for("contractDetailsEnd", lambda a: a[0] == 7)
    (details,) = [d for rid, d in app.rec.named("contractDetails") if rid == 7]
    assert (details.contract.conId, details.contract.symbol, details.contract.primaryExchange) == (
        320227571, "QQQ", "NASDAQ")


def _by_con_id(con_id: int) -> Contract:
    c = Contract()
    c.conId, c.exchange = con_id, "SMART"
    return c


def test_unknown_symbol_gets_error_200(sim_gateway: SimGateway, ib_app: App) -> None:
    app = ib_app(sim_gateway.port)
    app.wait_ready()
    app.reqContractDetails(8, stock("NOPE"))
    err = app.rec.wait_for("error", lambda a: a[0] == 8)
    assert err[2] == 200
    app.reqContractDetails(9, stock("QQQ", "EUR"))
    assert app.rec.wait_for("error", lambda a: a[0] == 9)[2] == 200
    assert not app.rec.named("contractDetails")


def test_second_csv_instrument_is_served(sim_factory: Callable[..., SimGateway], ib_app: App, tmp_path: Path) -> None:
    spy = tmp_path / "spy.csv"
    spy.write_text("date,open,high,low,close,volume,dividend\n2024-06-03,527.0,529.3,522.6,527.8,46835700,0\n"
                   "2024-06-04,526.5,529.2,524.9,528.4,34632700,0\n")
    sim = sim_factory(data={"SPY.ARCA": spy})
    app = ib_app(sim.port)
    app.wait_ready()
    c = Contract()
    c.secType, c.exchange, c.primaryExchange, c.localSymbol = "STK", "SMART", "ARCA", "SPY"
    app.reqContractDetails(4, c)
    app.rec.wait_for("contractDetailsEnd", lambda a: a[0] == 4)
    (rid, details), = app.rec.named("contractDetails")
    assert details.contract.symbol == "SPY" and details.contract.primaryExchange == "ARCA"
    assert sim.last_price("SPY.ARCA") == 527.8


def test_market_order_round_trip_updates_cash_and_position(sim_gateway: SimGateway, ib_app: App) -> None:
    sim = sim_gateway
    app = ib_app(sim.port)
    app.wait_ready()
    price = sim.last_price("QQQ.NASDAQ")
    app.placeOrder(101, nautilus_qqq(), order("BUY", 10, ref="my-ref:101"))
    report = app.rec.wait_for("commissionAndFeesReport")[0]

    names = [n for n, _ in app.rec.calls if n in ("execDetails", "openOrder", "orderStatus", "commissionAndFeesReport")]
    assert names == ["openOrder", "orderStatus", "execDetails", "openOrder", "orderStatus", "commissionAndFeesReport"]
    req_id, contract, execution = app.rec.named("execDetails")[0]
    assert (req_id, execution.side, execution.shares, execution.price) == (-1, "BOT", Decimal(10), price)
    assert execution.orderRef == "my-ref:101" and execution.permId > 0
    statuses = [a[1] for a in app.rec.named("orderStatus")]
    assert statuses == ["Submitted", "Filled"]
    assert app.rec.named("openOrder")[-1][3].status == "Filled"
    assert report.execId == execution.execId and report.commissionAndFees == 1.0 and report.currency == "USD"

    values = summary(app, 20)
    cash = 100_000 - 10 * price - 1.0
    assert float(values["TotalCashValue"][0]) == pytest.approx(cash)
    assert float(values["NetLiquidation"][0]) == pytest.approx(cash + 10 * price)
    assert float(values["FullInitMarginReq"][0]) == pytest.approx(10 * price)
    assert values["FullAvailableFunds"][1] == "USD" and values["AccountType"] == ("INDIVIDUAL", "")
    app.reqPositions()
    app.rec.wait_for("positionEnd")
    (account, pos_contract, qty, avg_cost), = app.rec.named("position")
    assert (account, pos_contract.conId, qty) == ("DU1234567", 320227571, Decimal(10))
    assert avg_cost == pytest.approx(price + 0.1)  # commission included, as IB reports it


def test_commission_follows_ib_fixed_tier() -> None:
    assert commission_for(Decimal(10), 450.0) == 1.0
    assert commission_for(Decimal(1000), 450.0) == 5.0
    assert commission_for(Decimal(10), 5.0) == 0.5  # capped at 1 % of the trade value


@pytest.mark.parametrize(("contract", "o", "why"), [
    (nautilus_qqq(), order("BUY", 1000), "insufficient cash"),
    (nautilus_qqq(), order("SELL", 1), "short sale"),
])
def test_unacceptable_orders_get_error_201(sim_gateway: SimGateway, ib_app: App, contract: Contract, o: Order,
                                           why: str) -> None:
    app = ib_app(sim_gateway.port)
    app.wait_ready()
    app.placeOrder(5, contract, o)
    err = app.rec.wait_for("error", lambda a: a[0] == 5)
    assert err[2] == 201 and why in err[3]
    assert not app.rec.named("openOrder")
    assert sim_gateway.ledger[-1]["result"] == "rejected"
    assert sim_gateway.snapshot()["cash"] == 100_000


def test_limit_order_rests_then_fills_when_a_later_bar_crosses(sim_gateway: SimGateway, ib_app: App) -> None:
    sim = sim_gateway
    qqq = sim.market.instruments["QQQ.NASDAQ"]
    app = ib_app(sim.port)
    app.wait_ready()
    today = sim.position_in_session.day
    lows = [qqq.bar_on(sim.market.calendar[d]).low for d in range(today + 1, today + 4)]
    limit = round(min(lows) + 0.01, 2)
    crossing_day = next(i for i, low in enumerate(lows, start=1) if low <= limit)
    assert limit < sim.last_price("QQQ.NASDAQ")
    app.placeOrder(11, nautilus_qqq(), order("BUY", 5, "LMT", limit, ref="lmt"))
    app.rec.wait_for("orderStatus", lambda a: a[1] == "Submitted")
    for _ in range(crossing_day - 1):
        sim.advance()
    assert sim.snapshot()["open_orders"], "not filled before a bar crossed the limit"
    sim.advance()
    execution = app.rec.wait_for("execDetails")[2]
    day_bar = qqq.bar_on(sim.current_date)
    assert execution.price == pytest.approx(min(day_bar.open, limit))
    app.rec.wait_for("orderStatus", lambda a: a[0] == 11 and a[1] == "Filled")


def test_cancel_sends_cancelled_status_and_error_202(sim_gateway: SimGateway, ib_app: App) -> None:
    app = ib_app(sim_gateway.port)
    app.wait_ready()
    app.placeOrder(21, nautilus_qqq(), order("BUY", 5, "LMT", 100.0, ref="c"))
    app.rec.wait_for("orderStatus", lambda a: a[1] == "Submitted")
    app.cancelOrder(21, OrderCancel())
    app.rec.wait_for("error", lambda a: a[0] == 21 and a[2] == 202)
    assert app.rec.named("orderStatus")[-1][:2] == (21, "Cancelled")
    app.cancelOrder(21, OrderCancel())
    assert app.rec.wait_for("error", lambda a: a[0] == 21 and a[2] == 10148)
    app.cancelOrder(99, OrderCancel())
    assert app.rec.wait_for("error", lambda a: a[0] == 99 and a[2] == 10147)
    kinds = [(e["kind"], e["order_id"], e["result"]) for e in sim_gateway.ledger]
    assert kinds[0] == ("place", 21, "accepted") and kinds[1] == ("cancel", 21, "cancelled")
    assert len(kinds) == 4


def test_day_order_expires_after_its_session(sim_gateway: SimGateway, ib_app: App) -> None:
    app = ib_app(sim_gateway.port)
    app.wait_ready()
    app.placeOrder(31, nautilus_qqq(), order("BUY", 1, "LMT", 100.0, tif="DAY"))
    app.rec.wait_for("orderStatus", lambda a: a[1] == "Submitted")
    sim_gateway.advance()  # the order was placed after the close: it lives through this session
    assert sim_gateway.snapshot()["open_orders"]
    sim_gateway.advance()
    app.rec.wait_for("orderStatus", lambda a: a[0] == 31 and a[1] == "Cancelled")
    assert not sim_gateway.snapshot()["open_orders"]


def test_next_valid_id_follows_the_highest_used_id(sim_gateway: SimGateway, ib_app: App) -> None:
    app = ib_app(sim_gateway.port)
    app.wait_ready()
    app.placeOrder(150, nautilus_qqq(), order("BUY", 1))
    app.rec.wait_for("commissionAndFeesReport")
    app.reqIds(-1)
    app.rec.wait_for("nextValidId", lambda a: a[0] == 151)


def test_duplicate_client_id_gets_326_and_is_closed(sim_gateway: SimGateway, ib_app: App) -> None:
    first = ib_app(sim_gateway.port, 5)
    first.wait_ready()
    second = ib_app(sim_gateway.port, 5)
    err = second.rec.wait_for("error", lambda a: a[2] == 326)
    assert err[0] == -1
    second.rec.wait_for("connectionClosed")
    assert not second.rec.named("nextValidId")
    assert sim_gateway.clients == [5]
    other = ib_app(sim_gateway.port, 6)
    other.wait_ready()
    assert sim_gateway.wait_for(lambda: sim_gateway.clients == [5, 6])


def test_reconnected_client_sees_open_orders_executions_and_positions(sim_gateway: SimGateway, ib_app: App) -> None:
    sim = sim_gateway
    app = ib_app(sim.port, 1)
    app.wait_ready()
    app.placeOrder(101, nautilus_qqq(), order("BUY", 10, ref="fill:101"))
    app.rec.wait_for("commissionAndFeesReport")
    app.placeOrder(102, nautilus_qqq(), order("BUY", 3, "LMT", 100.0, ref="rest:102"))
    perm_id = app.rec.wait_for("orderStatus", lambda a: a[0] == 102)[5]
    other = ib_app(sim.port, 2)
    other.wait_ready()
    other.placeOrder(500, nautilus_qqq(), order("BUY", 1, "LMT", 101.0, ref="other:500"))
    other.rec.wait_for("orderStatus", lambda a: a[0] == 500)
    app.close()
    assert sim.wait_for(lambda: sim.clients == [2])

    again = ib_app(sim.port, 1)
    assert again.wait_ready() == 501
    again.reqOpenOrders()
    again.rec.wait_for("openOrderEnd")
    (order_id, _c, o, state), = again.rec.named("openOrder")
    assert (order_id, o.permId, o.orderRef, o.account, state.status) == (102, perm_id, "rest:102", "DU1234567", "Submitted")
    again.reqAllOpenOrders()
    again.rec.wait_for("openOrderEnd", lambda a: len(again.rec.named("openOrderEnd")) == 2)
    assert sorted(a[0] for a in again.rec.named("openOrder")) == [102, 102, 500]

    flt = ExecutionFilter()
    flt.acctCode, flt.time = "DU1234567", "20000101-00:00:00"
    again.reqExecutions(77, flt)
    again.rec.wait_for("execDetailsEnd", lambda a: a[0] == 77)
    (req_id, _c, execution), = again.rec.named("execDetails")
    assert (req_id, execution.orderRef, execution.shares) == (77, "fill:101", Decimal(10))
    assert [r[0].execId for r in again.rec.named("commissionAndFeesReport")] == [execution.execId]
    again.reqPositions()
    again.rec.wait_for("positionEnd")
    assert [a[2] for a in again.rec.named("position")] == [Decimal(10)]


@pytest.mark.parametrize(("field", "value", "matches"), [
    ("time", "20000101-00:00:00", 1), ("time", "29990101-00:00:00", 0), ("side", "BUY", 1), ("side", "SELL", 0),
    ("symbol", "QQQ", 1), ("symbol", "SPY", 0), ("clientId", 1, 1), ("clientId", 9, 0),
    ("acctCode", "DU1234567", 1), ("acctCode", "DU999", 0), ("secType", "STK", 1), ("secType", "OPT", 0),
])
def test_execution_filter_fields_are_honoured(sim_gateway: SimGateway, ib_app: App, field: str, value: object,
                                              matches: int) -> None:
    app = ib_app(sim_gateway.port, 1)
    app.wait_ready()
    app.placeOrder(101, nautilus_qqq(), order("BUY", 2))
    app.rec.wait_for("commissionAndFeesReport")
    flt = ExecutionFilter()
    setattr(flt, field, value)
    app.reqExecutions(42, flt)
    app.rec.wait_for("execDetailsEnd", lambda a: a[0] == 42)
    assert len([a for a in app.rec.named("execDetails") if a[0] == 42]) == matches


def test_historical_bars_up_to_today_then_updates_as_the_clock_moves(sim_gateway: SimGateway, ib_app: App) -> None:
    sim = sim_gateway
    app = ib_app(sim.port)
    app.wait_ready()
    app.reqHistoricalData(60, nautilus_qqq(), "", "1 M", "1 day", "TRADES", 1, 2, True, [])
    app.rec.wait_for("historicalDataEnd", lambda a: a[0] == 60)
    bars = [b for rid, b in app.rec.named("historicalData") if rid == 60]
    assert bars[-1].date == "20240603" and bars[0].date > "20240501" and len(bars) > 15
    assert bars[-1].close == sim.last_price("QQQ.NASDAQ")
    sim.advance(2)
    app.rec.wait_for("historicalDataUpdate", lambda a: a[1].date == "20240605")
    dates = [b.date for _, b in app.rec.named("historicalDataUpdate")]
    assert dates[0] == "20240604" and dates[-1] == "20240605"
    update = app.rec.named("historicalDataUpdate")[0][1]
    day = sim.market.instruments["QQQ.NASDAQ"].bar_on(sim.market.calendar[sim.position_in_session.day - 1])
    assert (update.open, update.high, update.low, update.close) == (day.open, day.high, day.low, day.close)
    app.cancelHistoricalData(60)
    assert sim.wait_for(lambda: sim.bar_subscriptions == 0)


def test_historical_request_with_end_date_has_no_updates(sim_gateway: SimGateway, ib_app: App) -> None:
    app = ib_app(sim_gateway.port)
    app.wait_ready()
    app.reqHistoricalData(61, nautilus_qqq(), "20240531 23:59:59 UTC", "5 D", "1 day", "TRADES", 1, 2, False, [])
    app.rec.wait_for("historicalDataEnd", lambda a: a[0] == 61)
    assert [b.date for _, b in app.rec.named("historicalData")] == ["20240528", "20240529", "20240530", "20240531"]
    app.reqHistoricalData(62, nautilus_qqq(), "", "1 D", "1 week", "TRADES", 1, 2, False, [])
    assert app.rec.wait_for("error", lambda a: a[0] == 62)[2] == 162


def test_intraday_bars_are_cut_from_the_day_and_quotes_carry_no_volume(sim_gateway: SimGateway,
                                                                       ib_app: App) -> None:
    # Arrange
    app = ib_app(sim_gateway.port)
    app.wait_ready()
    day = sim_gateway.market.instruments["QQQ.NASDAQ"].bar_on(dt.date(2024, 5, 31))

    # Act: 30-minute trades and bid bars of 2024-05-31, dates as epoch seconds.
    app.reqHistoricalData(63, nautilus_qqq(), "20240531 23:59:59 UTC", "1 D", "30 mins", "TRADES", 1, 2, False, [])
    app.rec.wait_for("historicalDataEnd", lambda a: a[0] == 63)
    app.reqHistoricalData(64, nautilus_qqq(), "20240531 23:59:59 UTC", "1 D", "30 mins", "BID", 1, 2, False, [])
    app.rec.wait_for("historicalDataEnd", lambda a: a[0] == 64)
    app.reqHistoricalData(65, nautilus_qqq(), "", "1 D", "1 day", "OPTION_IMPLIED_VOLATILITY", 1, 1, False, [])
    error = app.rec.wait_for("error", lambda a: a[0] == 65)

    # Assert: 13 half hours from the open to the close, within the day's range; bids a cent lower.
    trades = [b for r, b in app.rec.named("historicalData") if r == 63]
    bids = [b for r, b in app.rec.named("historicalData") if r == 64]
    assert len(trades) == 13 and int(trades[0].date) == 1717162200  # 2024-05-31 09:30 New York
    assert (trades[0].open, trades[-1].close) == (day.open, day.close)
    assert min(b.low for b in trades) == day.low and max(b.high for b in trades) == day.high
    assert sum(int(b.volume) for b in trades) <= day.volume
    assert [round(b.close - 0.01, 2) for b in trades] == [b.close for b in bids]
    assert {int(b.volume) for b in bids} == {-1}
    assert error[2] == 162 and "OPTION_IMPLIED_VOLATILITY" in error[3]


def test_real_time_bars_follow_the_clock(sim_gateway: SimGateway, ib_app: App) -> None:
    sim = sim_gateway
    app = ib_app(sim.port)
    app.wait_ready()
    app.reqRealTimeBars(70, nautilus_qqq(), 5, "TRADES", True, [])
    app.reqCurrentTime()
    app.rec.wait_for("currentTime")  # the subscription was processed before this answer
    sim.advance()
    rid, epoch, o, h, l, c, *_ = app.rec.wait_for("realtimeBar")
    bar = sim.market.instruments["QQQ.NASDAQ"].bar_on(sim.current_date)
    assert rid == 70 and (o, h, l, c) == (bar.open, bar.high, bar.low, bar.close)
    assert epoch % 5 == 0


def test_accelerated_clock_replays_days_by_itself(sim_factory: Callable[..., SimGateway], ib_app: App) -> None:
    sim = sim_factory(clock=0.2)
    first = sim.current_date
    assert sim.wait_for(lambda: sim.current_date > first, 5)


def test_ledger_is_appended_to_a_jsonl_file(sim_factory: Callable[..., SimGateway], ib_app: App,
                                            tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    sim = sim_factory(ledger_path=path)
    app = ib_app(sim.port)
    app.wait_ready()
    app.placeOrder(101, nautilus_qqq(), order("BUY", 1, ref="x:101"))
    app.rec.wait_for("commissionAndFeesReport")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == sim.ledger
    assert rows[0]["order_ref"] == "x:101" and rows[0]["client_id"] == 1 and rows[0]["result"] == "filled"

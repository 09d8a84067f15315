"""Every server-side encoder decodes with the real ibapi Decoder at server version 200 (other
versions: test_ibsim_versions.py); requests parse as the real client writes them."""

from __future__ import annotations

import struct
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ibapi import comm
from ibapi.const import UNSET_DOUBLE
from ibapi.contract import Contract
from ibapi.order import Order
from ibapi.order_cancel import OrderCancel
from ibsim_support import decode_with_ibapi, written_by_eclient

from ats.ibsim import outgoing, wire
from ats.ibsim.market import contract_for

QQQ = contract_for("QQQ", "NASDAQ")


def _order(status: str = "Submitted", order_type: str = "LMT", limit: float | None = 400.5) -> outgoing.OrderView:
    return outgoing.OrderView(
        order_id=101, client_id=7, perm_id=900001, action="BUY", quantity=Decimal(10), order_type=order_type,
        limit_price=limit, aux_price=None, tif="GTC", account="DU1234567", order_ref="O-1:101", status=status,
    )


def _exec() -> outgoing.ExecView:
    return outgoing.ExecView(
        exec_id="0000e0d5.00000001.01.01", order_id=101, client_id=7, perm_id=900001,
        time="20250106 15:30:00 UTC", account="DU1234567", side="BOT", shares=Decimal(10), price=512.34,
        cum_qty=Decimal(10), avg_price=512.34, order_ref="O-1:101",
    )


BAR = outgoing.BarView(date="20240603", open=450.1, high=455.0, low=449.0, close=453.13, volume=1234567,
                   wap=451.81, count=12345)


def test_next_valid_id_decodes() -> None:
    rec, _ = decode_with_ibapi(outgoing.next_valid_id(101))
    assert rec.named("nextValidId") == [(101,)]


def test_managed_accounts_decodes() -> None:
    rec, _ = decode_with_ibapi(outgoing.managed_accounts(["DU1234567"]))
    assert rec.named("managedAccounts") == [("DU1234567",)]


def test_error_decodes_with_time() -> None:
    rec, n = decode_with_ibapi(outgoing.error(-1, 2104, "Market data farm connection is OK:usfarm", 1736175600000))
    assert n == 5
    assert rec.named("error") == [(-1, 1736175600000, 2104, "Market data farm connection is OK:usfarm", "")]


def test_current_time_decodes() -> None:
    rec, _ = decode_with_ibapi(outgoing.current_time(1736175600))
    assert rec.named("currentTime") == [(1736175600,)]


def test_market_data_type_decodes() -> None:
    rec, _ = decode_with_ibapi(outgoing.market_data_type(5, 1))
    assert rec.named("marketDataType") == [(5, 1)]


def test_account_summary_row_and_end_decode() -> None:
    rec, _ = decode_with_ibapi(outgoing.account_summary(9, "DU1234567", "NetLiquidation", "100000.00", "USD"))
    assert rec.named("accountSummary") == [(9, "DU1234567", "NetLiquidation", "100000.00", "USD")]
    rec, _ = decode_with_ibapi(outgoing.account_summary_end(9))
    assert rec.named("accountSummaryEnd") == [(9,)]


def test_contract_data_decodes_to_the_qqq_contract() -> None:
    rec, n = decode_with_ibapi(outgoing.contract_data(3, QQQ))
    assert n == 43  # the spec's count for QQQ with one ISIN secId
    (req_id, details), = rec.named("contractDetails")
    assert req_id == 3
    c = details.contract
    assert (c.conId, c.symbol, c.secType, c.exchange, c.primaryExchange, c.currency, c.localSymbol) == (
        320227571, "QQQ", "STK", "SMART", "NASDAQ", "USD", "QQQ")
    assert details.minTick == 0.01 and details.priceMagnifier == 1
    assert [(t.tag, t.value) for t in details.secIdList] == [("ISIN", "US46090E1038")]
    rec, _ = decode_with_ibapi(outgoing.contract_data_end(3))
    assert rec.named("contractDetailsEnd") == [(3,)]


def test_contract_data_without_isin_decodes() -> None:
    rec, _ = decode_with_ibapi(outgoing.contract_data(4, contract_for("XYZ", "ARCA")))
    (_, details), = rec.named("contractDetails")
    assert details.contract.primaryExchange == "ARCA" and not details.secIdList


def test_position_and_end_decode() -> None:
    rec, _ = decode_with_ibapi(outgoing.position("DU1234567", QQQ, Decimal(10), 512.84))
    (account, contract, qty, avg_cost), = rec.named("position")
    assert (account, contract.conId, qty, avg_cost) == ("DU1234567", 320227571, Decimal(10), 512.84)
    rec, _ = decode_with_ibapi(outgoing.position_end())
    assert rec.named("positionEnd") == [()]


@pytest.mark.parametrize("status", ["Submitted", "Filled", "Cancelled"])
def test_open_order_decodes_every_field(status: str) -> None:
    rec, n = decode_with_ibapi(outgoing.open_order(_order(status), QQQ))
    assert n == 147  # the spec's count for a plain order
    (order_id, contract, order, state), = rec.named("openOrder")
    assert order_id == 101 and contract.conId == 320227571 and contract.localSymbol == "QQQ"
    assert (order.action, order.totalQuantity, order.orderType, order.lmtPrice, order.tif) == (
        "BUY", Decimal(10), "LMT", 400.5, "GTC")
    assert (order.orderRef, order.clientId, order.permId, order.account) == ("O-1:101", 7, 900001, "DU1234567")
    assert order.auxPrice == UNSET_DOUBLE
    assert state.status == status


def test_open_order_for_market_order_leaves_prices_unset() -> None:
    rec, _ = decode_with_ibapi(outgoing.open_order(_order("Submitted", "MKT", None), QQQ))
    (_, _, order, _), = rec.named("openOrder")
    assert order.lmtPrice == UNSET_DOUBLE and order.auxPrice == UNSET_DOUBLE


def test_order_status_decodes() -> None:
    rec, _ = decode_with_ibapi(outgoing.order_status(101, "Filled", Decimal(10), Decimal(0), 512.34, 900001, 512.34, 7))
    assert rec.named("orderStatus") == [
        (101, "Filled", Decimal(10), Decimal(0), 512.34, 900001, 0, 512.34, 7, "", 0.0)]


def test_open_order_end_decodes() -> None:
    rec, _ = decode_with_ibapi(outgoing.open_order_end())
    assert rec.named("openOrderEnd") == [()]


@pytest.mark.parametrize("req_id", [-1, 10004])
def test_execution_decodes_with_req_id(req_id: int) -> None:
    rec, _ = decode_with_ibapi(outgoing.execution(req_id, _exec(), QQQ))
    (got_req, contract, execution), = rec.named("execDetails")
    assert got_req == req_id and contract.conId == 320227571
    assert (execution.execId, execution.side, execution.shares, execution.price, execution.permId) == (
        "0000e0d5.00000001.01.01", "BOT", Decimal(10), 512.34, 900001)
    assert (execution.orderRef, execution.acctNumber, execution.time, execution.clientId) == (
        "O-1:101", "DU1234567", "20250106 15:30:00 UTC", 7)


def test_execution_end_decodes() -> None:
    rec, _ = decode_with_ibapi(outgoing.execution_end(10004))
    assert rec.named("execDetailsEnd") == [(10004,)]


def test_commission_report_decodes() -> None:
    rec, _ = decode_with_ibapi(outgoing.commission_report("0000e0d5.00000001.01.01", 1.0, "USD", None))
    (report,), = rec.named("commissionAndFeesReport")
    assert (report.execId, report.commissionAndFees, report.currency) == ("0000e0d5.00000001.01.01", 1.0, "USD")
    assert report.realizedPNL == UNSET_DOUBLE


def test_historical_data_and_end_decode() -> None:
    rec, _ = decode_with_ibapi(outgoing.historical_data(6, [BAR, BAR]))
    bars = rec.named("historicalData")
    assert len(bars) == 2 and bars[0][0] == 6
    bar = bars[0][1]
    assert (bar.date, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.barCount) == (
        "20240603", 450.1, 455.0, 449.0, 453.13, Decimal(1234567), 12345)
    rec, _ = decode_with_ibapi(outgoing.historical_data_end(6, "20240101 00:00:00 UTC", "20240603 23:59:59 UTC"))
    assert rec.named("historicalDataEnd") == [(6, "20240101 00:00:00 UTC", "20240603 23:59:59 UTC")]


def test_historical_data_update_keeps_ohlc_apart() -> None:
    rec, _ = decode_with_ibapi(outgoing.historical_data_update(6, BAR))
    (req_id, bar), = rec.named("historicalDataUpdate")
    assert req_id == 6
    assert (bar.date, bar.open, bar.high, bar.low, bar.close, bar.volume) == (
        "20240603", 450.1, 455.0, 449.0, 453.13, Decimal(1234567))


def test_real_time_bar_decodes() -> None:
    rec, _ = decode_with_ibapi(outgoing.real_time_bar(7, 1717435795, BAR))
    assert rec.named("realtimeBar") == [
        (7, 1717435795, 450.1, 455.0, 449.0, 453.13, Decimal(1234567), Decimal("451.81"), 12345)]


def test_tick_messages_decode() -> None:
    rec, _ = decode_with_ibapi(outgoing.tick_price(8, 4, 453.13, Decimal(100)))
    assert rec.named("tickPrice")[0][:3] == (8, 4, 453.13)
    assert rec.named("tickSize") == [(8, 5, Decimal(100))]
    rec, _ = decode_with_ibapi(outgoing.tick_size(8, 5, Decimal(300)))
    assert rec.named("tickSize") == [(8, 5, Decimal(300))]
    rec, _ = decode_with_ibapi(outgoing.tick_snapshot_end(8))
    assert rec.named("tickSnapshotEnd") == [(8,)]


def test_handshake_reply_is_one_frame_of_two_fields() -> None:
    data = outgoing.handshake_reply(200, "20250106 15:00:00 UTC")
    size, payload, rest = comm.read_msg(data)
    assert rest == b"" and comm.read_fields(payload) == (b"200", b"20250106 15:00:00 UTC")


@settings(max_examples=60, deadline=None)
@given(
    ref=st.text(alphabet=st.characters(codec="ascii", exclude_characters="\0\\"), max_size=40),
    qty=st.integers(min_value=1, max_value=10**6),
    price=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999"), places=2),
)
def test_open_order_round_trips_any_ascii_order_ref(ref: str, qty: int, price: Decimal) -> None:
    view = outgoing.OrderView(order_id=5, client_id=1, perm_id=1, action="SELL", quantity=Decimal(qty),
                          order_type="LMT", limit_price=float(price), aux_price=None, tif="DAY",
                          account="DU1", order_ref=ref, status="Submitted")
    rec, _ = decode_with_ibapi(outgoing.open_order(view, QQQ))
    (_, _, order, _), = rec.named("openOrder")
    assert order.orderRef == ref and order.totalQuantity == Decimal(qty) and order.lmtPrice == float(price)


def _client_fields(call) -> list[str]:
    """Encode one request with the real EClient at server version 200; return its fields."""
    return [f.decode() for f in comm.read_fields(written_by_eclient(call, 200))]


def test_place_order_indices_match_the_real_client() -> None:
    contract = Contract()
    contract.secType, contract.exchange, contract.primaryExchange, contract.localSymbol = "STK", "SMART", "NASDAQ", "QQQ"
    order = Order()
    order.action, order.totalQuantity, order.orderType, order.lmtPrice = "BUY", Decimal(10), "LMT", 400.5
    order.tif, order.orderRef, order.account = "GTC", "O-1:101", "DU1"
    fields = _client_fields(lambda c: c.placeOrder(101, contract, order))
    f = wire.Fields(fields[1:], 200)
    assert f.int() == 101
    f.skip(14)
    assert (f.str(), f.decimal(), f.str(), f.float(), f.float(), f.str()) == ("BUY", Decimal(10), "LMT", 400.5, None, "GTC")
    f.skip()
    assert f.str() == "DU1"
    f.skip(2)
    assert f.str() == "O-1:101"


def test_cancel_order_has_no_version_field() -> None:
    fields = _client_fields(lambda c: c.cancelOrder(102, OrderCancel()))
    assert fields[:2] == ["4", "102"] and len(fields) == 5


def test_request_fields_parse_unset_forms() -> None:
    f = wire.Fields(["", "1.7976931348623157e+308", "2147483647", "", "12"], 200)
    assert f.float() is None and f.float() is None and f.decimal() is None and f.int(default=-5) == -5
    assert f.int() == 12
    with pytest.raises(wire.WireError):
        f.str()


def test_messages_refuse_to_exceed_the_maximum_length() -> None:
    with pytest.raises(wire.WireError):
        outgoing.error(1, 200, "x" * (wire.MAX_MSG_LEN + 1), 0).encode(200)


def test_frames_have_a_big_endian_length_prefix_and_text_ids_below_201() -> None:
    data = outgoing.next_valid_id(101).encode(200)
    assert struct.unpack("!I", data[:4])[0] == len(data) - 4 and data[4:] == b"9\x001\x00101\x00"

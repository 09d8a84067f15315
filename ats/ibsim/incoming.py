"""Client → server requests, read at the version the client negotiated, text or protobuf.

:func:`read_request` splits one frame into its message id and body: decimal-text ids below
server version 201, 4-byte binary ids from 201, and a protobuf body when the id is above 200.
:func:`decode` turns the body into a plain ``dict`` per request kind — the same keys from the
text layout (whose field branches follow ``ibapi/client.py`` at that version) and from the
``ibapi.protobuf`` request — so the handlers never see the difference.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ibapi import server_versions as sv
from ibapi.message import OUT

from ats.ibsim import versions
from ats.ibsim.wire import BadRequest, Fields, WireError, split_fields

if TYPE_CHECKING:
    from google.protobuf.message import Message
    from ibapi.protobuf.AccountSummaryRequest_pb2 import AccountSummaryRequest
    from ibapi.protobuf.AccountUpdatesMultiRequest_pb2 import AccountUpdatesMultiRequest
    from ibapi.protobuf.CancelOrderRequest_pb2 import CancelOrderRequest
    from ibapi.protobuf.Contract_pb2 import Contract
    from ibapi.protobuf.ContractDataRequest_pb2 import ContractDataRequest
    from ibapi.protobuf.ExecutionRequest_pb2 import ExecutionRequest
    from ibapi.protobuf.HeadTimestampRequest_pb2 import HeadTimestampRequest
    from ibapi.protobuf.HistoricalDataRequest_pb2 import HistoricalDataRequest
    from ibapi.protobuf.HistoricalTicksRequest_pb2 import HistoricalTicksRequest
    from ibapi.protobuf.MarketDataRequest_pb2 import MarketDataRequest
    from ibapi.protobuf.PlaceOrderRequest_pb2 import PlaceOrderRequest
    from ibapi.protobuf.RealTimeBarsRequest_pb2 import RealTimeBarsRequest
    from ibapi.protobuf.SecDefOptParamsRequest_pb2 import SecDefOptParamsRequest
    from ibapi.protobuf.StartApiRequest_pb2 import StartApiRequest
    from ibapi.protobuf.TickByTickRequest_pb2 import TickByTickRequest

Request = dict[str, Any]

# The protobuf request message of each client message id (``ibapi.protobuf.<Name>_pb2``).
PROTO_REQUESTS: dict[int, str] = {
    OUT.START_API: "StartApiRequest",
    OUT.REQ_IDS: "IdsRequest",
    OUT.REQ_CURRENT_TIME: "CurrentTimeRequest",
    OUT.REQ_CURRENT_TIME_IN_MILLIS: "CurrentTimeInMillisRequest",
    OUT.REQ_MANAGED_ACCTS: "ManagedAccountsRequest",
    OUT.REQ_MARKET_DATA_TYPE: "MarketDataTypeRequest",
    OUT.REQ_CONTRACT_DATA: "ContractDataRequest",
    OUT.REQ_ACCOUNT_SUMMARY: "AccountSummaryRequest",
    OUT.CANCEL_ACCOUNT_SUMMARY: "CancelAccountSummary",
    OUT.REQ_POSITIONS: "PositionsRequest",
    OUT.CANCEL_POSITIONS: "CancelPositions",
    OUT.REQ_OPEN_ORDERS: "OpenOrdersRequest",
    OUT.REQ_ALL_OPEN_ORDERS: "AllOpenOrdersRequest",
    OUT.REQ_AUTO_OPEN_ORDERS: "AutoOpenOrdersRequest",
    OUT.REQ_COMPLETED_ORDERS: "CompletedOrdersRequest",
    OUT.REQ_EXECUTIONS: "ExecutionRequest",
    OUT.REQ_HISTORICAL_DATA: "HistoricalDataRequest",
    OUT.CANCEL_HISTORICAL_DATA: "CancelHistoricalData",
    OUT.REQ_REAL_TIME_BARS: "RealTimeBarsRequest",
    OUT.CANCEL_REAL_TIME_BARS: "CancelRealTimeBars",
    OUT.REQ_MKT_DATA: "MarketDataRequest",
    OUT.CANCEL_MKT_DATA: "CancelMarketData",
    OUT.PLACE_ORDER: "PlaceOrderRequest",
    OUT.CANCEL_ORDER: "CancelOrderRequest",
    OUT.REQ_GLOBAL_CANCEL: "GlobalCancelRequest",
    OUT.REQ_ACCT_DATA: "AccountDataRequest",
    OUT.REQ_ACCOUNT_UPDATES_MULTI: "AccountUpdatesMultiRequest",
    OUT.CANCEL_ACCOUNT_UPDATES_MULTI: "CancelAccountUpdatesMulti",
    OUT.REQ_PNL: "PnLRequest",
    OUT.CANCEL_PNL: "CancelPnL",
    OUT.REQ_PNL_SINGLE: "PnLSingleRequest",
    OUT.CANCEL_PNL_SINGLE: "CancelPnLSingle",
    OUT.REQ_HEAD_TIMESTAMP: "HeadTimestampRequest",
    OUT.CANCEL_HEAD_TIMESTAMP: "CancelHeadTimestamp",
    OUT.REQ_MATCHING_SYMBOLS: "MatchingSymbolsRequest",
    OUT.REQ_SEC_DEF_OPT_PARAMS: "SecDefOptParamsRequest",
    OUT.REQ_TICK_BY_TICK_DATA: "TickByTickRequest",
    OUT.CANCEL_TICK_BY_TICK_DATA: "CancelTickByTick",
    OUT.REQ_HISTORICAL_TICKS: "HistoricalTicksRequest",
}

_PROTO_CLASSES: dict[str, type[Message]] = {}


def _proto_class(name: str) -> type[Message]:
    cls = _PROTO_CLASSES.get(name)
    if cls is None:
        import importlib

        cls = _PROTO_CLASSES[name] = getattr(importlib.import_module(f"ibapi.protobuf.{name}_pb2"), name)
    return cls


def read_request(payload: bytes, version: int) -> tuple[int, Fields | Message | None]:
    """``(message id, body)``: the body a :class:`Fields` reader (text) or a parsed protobuf
    request.  :class:`WireError` for a frame that does not follow the protocol."""
    if versions.binary_ids(version):
        if len(payload) < 4:
            raise WireError(f"a message of {len(payload)} bytes has no 4-byte id")
        (msg_id,) = struct.unpack("!I", payload[:4])
        body = payload[4:]
        if msg_id > versions.PROTOBUF_MSG_ID:
            msg_id -= versions.PROTOBUF_MSG_ID
            name = PROTO_REQUESTS.get(msg_id)
            if name is None:
                return msg_id, None  # a protobuf request the simulator does not know: answered as unknown
            message = _proto_class(name)()
            try:
                message.ParseFromString(body)
            except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
                raise BadRequest(f"bad protobuf body for message {msg_id}: {exc}") from exc
            return msg_id, message
        return msg_id, Fields(split_fields(body) if body else [], version)
    values = split_fields(payload)
    try:
        msg_id = int(values[0])
    except (ValueError, IndexError) as exc:
        raise WireError(f"bad message id {values[:1]!r}") from exc
    return msg_id, Fields(values[1:], version)


def decode(msg_id: int, body: Fields | Message | None) -> Request:
    """The request as a dict (keys per kind, see the decoders below)."""
    text, proto = _DECODERS.get(msg_id, (_nothing, _nothing))
    return text(body) if isinstance(body, Fields) else proto(body)


def _nothing(_body: Fields | Message | None) -> Request:
    return {}


# ----------------------------------------------------------------------------- contracts

def _contract_text(f: Fields, *, con_id: bool = True) -> Request:
    """conId, symbol, secType, lastTradeDateOrContractMonth, strike, right, multiplier, exchange,
    primaryExchange, currency, localSymbol, tradingClass."""
    cid = f.int() if con_id else 0
    symbol, sec_type = f.str(), f.str()
    f.skip(4)  # lastTradeDateOrContractMonth, strike, right, multiplier
    exchange, primary, currency, local, _trading_class = f.str(), f.str(), f.str(), f.str(), f.str()
    return {"con_id": cid, "symbol": symbol, "sec_type": sec_type, "exchange": exchange,
            "primary_exchange": primary, "currency": currency, "local_symbol": local}


def _contract_proto(c: Contract) -> Request:
    return {"con_id": c.conId, "symbol": c.symbol, "sec_type": c.secType, "exchange": c.exchange,
            "primary_exchange": c.primaryExch, "currency": c.currency, "local_symbol": c.localSymbol}


# ----------------------------------------------------------------------------- session

def _start_api_text(f: Fields) -> Request:
    f.skip()  # version
    return {"client_id": f.int()}


def _start_api_proto(p: StartApiRequest) -> Request:
    return {"client_id": p.clientId}


def _market_data_type_text(f: Fields) -> Request:
    f.skip()
    return {"type": f.int()}


def _req_id_only_text(f: Fields) -> Request:
    f.skip()  # version
    return {"req_id": f.int()}


def _req_id_only_proto(p: Message) -> Request:
    return {"req_id": p.reqId}


# ----------------------------------------------------------------------------- data

def _contract_data_text(f: Fields) -> Request:
    f.skip()  # version
    req_id = f.int()
    return {"req_id": req_id, "contract": _contract_text(f)}


def _contract_data_proto(p: ContractDataRequest) -> Request:
    return {"req_id": p.reqId, "contract": _contract_proto(p.contract)}


def _account_summary_text(f: Fields) -> Request:
    f.skip()
    req_id = f.int()
    f.str()  # group
    return {"req_id": req_id, "tags": f.str()}


def _account_summary_proto(p: AccountSummaryRequest) -> Request:
    return {"req_id": p.reqId, "tags": p.tags}


def _executions_text(f: Fields) -> Request:
    f.skip()
    req_id = f.int()
    flt = {"client_id": f.int(), "acct_code": f.str(), "time": f.str(), "symbol": f.str(),
           "sec_type": f.str(), "exchange": f.str(), "side": f.str()}
    return {"req_id": req_id, "filter": flt}


def _executions_proto(p: ExecutionRequest) -> Request:
    e = p.executionFilter
    flt = {"client_id": e.clientId if e.HasField("clientId") else 0, "acct_code": e.acctCode, "time": e.time,
           "symbol": e.symbol, "sec_type": e.secType, "exchange": e.exchange, "side": e.side}
    return {"req_id": p.reqId, "filter": flt}


def _historical_data_text(f: Fields) -> Request:
    synthetic = f.version >= sv.MIN_SERVER_VER_SYNT_REALTIME_BARS
    if not synthetic:
        f.skip()  # version
    req_id = f.int()
    contract = _contract_text(f)
    f.skip()  # includeExpired
    end, bar_size, duration = f.str(), f.str(), f.str()
    use_rth = f.bool()
    what = f.str()
    format_date = f.int(default=1)
    keep = f.bool() if synthetic else False
    return {"req_id": req_id, "contract": contract, "end": end, "bar_size": bar_size, "duration": duration,
            "use_rth": use_rth, "what_to_show": what, "format_date": format_date, "keep_up_to_date": keep}


def _historical_data_proto(p: HistoricalDataRequest) -> Request:
    return {"req_id": p.reqId, "contract": _contract_proto(p.contract), "end": p.endDateTime,
            "bar_size": p.barSizeSetting, "duration": p.duration, "use_rth": p.useRTH,
            "what_to_show": p.whatToShow, "format_date": p.formatDate or 1, "keep_up_to_date": p.keepUpToDate}


def _realtime_bars_text(f: Fields) -> Request:
    f.skip()
    req_id = f.int()
    contract = _contract_text(f)
    return {"req_id": req_id, "contract": contract, "bar_size": f.int(), "what_to_show": f.str()}


def _realtime_bars_proto(p: RealTimeBarsRequest) -> Request:
    return {"req_id": p.reqId, "contract": _contract_proto(p.contract), "bar_size": p.barSize,
            "what_to_show": p.whatToShow}


def _mkt_data_text(f: Fields) -> Request:
    f.skip()
    req_id = f.int()
    contract = _contract_text(f)
    if contract["sec_type"].upper() == "BAG":
        for _ in range(f.int()):
            f.skip(4)
    if f.bool():  # deltaNeutralContract present
        f.skip(3)
    ticks = f.str()
    return {"req_id": req_id, "contract": contract, "generic_ticks": ticks, "snapshot": f.bool()}


def _mkt_data_proto(p: MarketDataRequest) -> Request:
    return {"req_id": p.reqId, "contract": _contract_proto(p.contract), "generic_ticks": p.genericTickList,
            "snapshot": p.snapshot}


# ----------------------------------------------------------------------------- orders

def _place_order_text(f: Fields) -> Request:
    """OUT 3 as ``ibapi.client.EClient.placeOrder`` writes it at ``f.version`` (single-leg)."""
    v = f.version
    if v < sv.MIN_SERVER_VER_ORDER_CONTAINER:
        f.skip()  # version
    req: Request = {"order_id": f.int()}
    req.update(_contract_text(f))
    f.skip(2)  # secIdType, secId
    req["action"] = f.str().upper()
    req["quantity"] = f.decimal()
    req["order_type"] = f.str().upper()
    req["limit_price"] = f.float()
    req["aux_price"] = f.float()
    req["tif"] = f.str().upper() or "DAY"  # IB treats an empty time in force as DAY
    req["oca_group"] = f.str()
    req["account"] = f.str()
    f.str()  # openClose
    f.str()  # origin
    req["order_ref"] = f.str()
    req["transmit"] = f.bool()
    req["parent_id"] = f.int()
    f.skip(4)  # blockOrder, sweepToFill, displaySize, triggerMethod
    req["outside_rth"] = f.bool()
    f.skip()  # hidden
    if req["sec_type"].upper() == "BAG":
        raise WireError("combo (BAG) orders are not supported by the simulator")
    f.skip(2)  # sharesAllocation, discretionaryAmt
    f.str()  # goodAfterTime
    req["good_till_date"] = f.str()
    f.skip(3)  # faGroup, faMethod, faPercentage
    if v < sv.MIN_SERVER_VER_FA_PROFILE_DESUPPORT:
        f.skip()  # faProfile
    if v >= sv.MIN_SERVER_VER_MODELS_SUPPORT:
        f.skip()  # modelCode
    f.skip(3)  # shortSaleSlot, designatedLocation, exemptCode
    req["oca_type"] = f.int()
    f.skip(8)  # rule80A, settlingFirm, allOrNone, minQty, percentOffset, eTradeOnly, firmQuoteOnly, nbboPriceCap
    f.skip(7)  # auctionStrategy, startingPrice, stockRefPrice, delta, stockRangeLower/Upper, overridePct
    f.skip(2)  # volatility, volatilityType
    if f.str():  # deltaNeutralOrderType
        f.skip(9)  # its aux price, conId/settling/clearing (4), openClose/shortSale/slot/location (4)
    else:
        f.skip()  # deltaNeutralAuxPrice
    f.skip(2)  # continuousUpdate, referencePriceType
    req["trail_stop_price"] = f.float()
    req["trailing_percent"] = f.float()
    f.skip(2)  # scaleInitLevelSize, scaleSubsLevelSize
    increment = f.float()
    if increment is not None and increment > 0:
        f.skip(7)
    f.skip(3)  # scaleTable, activeStartTime, activeStopTime
    if f.str():  # hedgeType
        f.skip()  # hedgeParam
    f.skip(4)  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
    if f.bool():  # deltaNeutralContract
        f.skip(3)
    if f.str():  # algoStrategy
        f.skip(2 * f.int())
    f.skip()  # algoId
    req["what_if"] = f.bool()
    return req


def _place_order_proto(p: PlaceOrderRequest) -> Request:
    o, c = p.order, p.contract
    req: Request = {"order_id": p.orderId}
    req.update(_contract_proto(c))
    req.update({
        "action": o.action.upper(), "quantity": _proto_decimal(o.totalQuantity) if o.HasField("totalQuantity") else None,
        "order_type": o.orderType.upper(),
        "limit_price": o.lmtPrice if o.HasField("lmtPrice") else None,
        "aux_price": o.auxPrice if o.HasField("auxPrice") else None,
        "tif": o.tif.upper() or "DAY", "oca_group": o.ocaGroup, "account": o.account, "order_ref": o.orderRef,
        # ibapi writes only true booleans (client_utils.createOrderProto): absent transmit is False
        "transmit": o.transmit, "parent_id": o.parentId,
        "outside_rth": o.outsideRth, "good_till_date": o.goodTillDate, "oca_type": o.ocaType,
        "trail_stop_price": o.trailStopPrice if o.HasField("trailStopPrice") else None,
        "trailing_percent": o.trailingPercent if o.HasField("trailingPercent") else None,
        "what_if": o.whatIf,
    })
    return req


def _proto_decimal(text: str) -> Decimal | None:
    return Fields([text], versions.DEFAULT_VERSION).decimal()


def _cancel_order_text(f: Fields) -> Request:
    if f.version < sv.MIN_SERVER_VER_CME_TAGGING_FIELDS:
        f.skip()  # version
    order_id = f.int()
    manual = f.str() if f.version >= sv.MIN_SERVER_VER_MANUAL_ORDER_TIME else ""
    return {"order_id": order_id, "manual_order_cancel_time": manual}


def _cancel_order_proto(p: CancelOrderRequest) -> Request:
    return {"order_id": p.orderId, "manual_order_cancel_time": p.orderCancel.manualOrderCancelTime}


# ----------------------------------------------------------------------------- account and reference data

def _account_updates_text(f: Fields) -> Request:
    f.skip()
    subscribe = f.bool()
    return {"subscribe": subscribe, "account": f.str()}


def _account_updates_multi_text(f: Fields) -> Request:
    f.skip()
    req_id, account, model = f.int(), f.str(), f.str()
    return {"req_id": req_id, "account": account, "model_code": model, "ledger_and_nlv": f.bool()}


def _account_updates_multi_proto(p: AccountUpdatesMultiRequest) -> Request:
    return {"req_id": p.reqId, "account": p.account, "model_code": p.modelCode, "ledger_and_nlv": p.ledgerAndNLV}


def _pnl_text(f: Fields) -> Request:
    return {"req_id": f.int(), "account": f.str(), "model_code": f.str()}


def _pnl_single_text(f: Fields) -> Request:
    return {**_pnl_text(f), "con_id": f.int()}


def _bare_req_id_text(f: Fields) -> Request:
    return {"req_id": f.int()}


def _head_timestamp_text(f: Fields) -> Request:
    req_id = f.int()
    contract = _contract_text(f)
    f.skip()  # includeExpired
    use_rth = f.bool()
    return {"req_id": req_id, "contract": contract, "use_rth": use_rth, "what_to_show": f.str()}


def _head_timestamp_proto(p: HeadTimestampRequest) -> Request:
    return {"req_id": p.reqId, "contract": _contract_proto(p.contract), "use_rth": p.useRTH,
            "what_to_show": p.whatToShow}


def _sec_def_opt_params_text(f: Fields) -> Request:
    req_id, symbol, exchange, sec_type = f.int(), f.str(), f.str(), f.str()
    return {"req_id": req_id, "symbol": symbol, "fut_fop_exchange": exchange, "sec_type": sec_type,
            "con_id": f.int()}


def _sec_def_opt_params_proto(p: SecDefOptParamsRequest) -> Request:
    return {"req_id": p.reqId, "symbol": p.underlyingSymbol, "fut_fop_exchange": p.futFopExchange,
            "sec_type": p.underlyingSecType, "con_id": p.underlyingConId}


def _tick_by_tick_text(f: Fields) -> Request:
    req_id = f.int()
    contract = _contract_text(f)
    tick_type = f.str()
    count = f.int() if f.version >= sv.MIN_SERVER_VER_TICK_BY_TICK_IGNORE_SIZE else 0
    return {"req_id": req_id, "contract": contract, "tick_type": tick_type, "number_of_ticks": count}


def _tick_by_tick_proto(p: TickByTickRequest) -> Request:
    return {"req_id": p.reqId, "contract": _contract_proto(p.contract), "tick_type": p.tickType,
            "number_of_ticks": p.numberOfTicks}


def _historical_ticks_text(f: Fields) -> Request:
    req_id = f.int()
    contract = _contract_text(f)
    f.skip()  # includeExpired
    start, end, count, what = f.str(), f.str(), f.int(), f.str()
    return {"req_id": req_id, "contract": contract, "start": start, "end": end, "number_of_ticks": count,
            "what_to_show": what, "use_rth": f.bool()}


def _historical_ticks_proto(p: HistoricalTicksRequest) -> Request:
    return {"req_id": p.reqId, "contract": _contract_proto(p.contract), "start": p.startDateTime,
            "end": p.endDateTime, "number_of_ticks": p.numberOfTicks, "what_to_show": p.whatToShow,
            "use_rth": p.useRTH}


_DECODERS: dict[int, tuple[Callable[[Fields], Request], Callable[[Message], Request]]] = {
    OUT.START_API: (_start_api_text, _start_api_proto),
    OUT.REQ_MARKET_DATA_TYPE: (_market_data_type_text, lambda p: {"type": p.marketDataType}),
    OUT.REQ_CONTRACT_DATA: (_contract_data_text, _contract_data_proto),
    OUT.REQ_ACCOUNT_SUMMARY: (_account_summary_text, _account_summary_proto),
    OUT.CANCEL_ACCOUNT_SUMMARY: (_req_id_only_text, _req_id_only_proto),
    OUT.REQ_EXECUTIONS: (_executions_text, _executions_proto),
    OUT.REQ_HISTORICAL_DATA: (_historical_data_text, _historical_data_proto),
    OUT.CANCEL_HISTORICAL_DATA: (_req_id_only_text, _req_id_only_proto),
    OUT.REQ_REAL_TIME_BARS: (_realtime_bars_text, _realtime_bars_proto),
    OUT.CANCEL_REAL_TIME_BARS: (_req_id_only_text, _req_id_only_proto),
    OUT.REQ_MKT_DATA: (_mkt_data_text, _mkt_data_proto),
    OUT.CANCEL_MKT_DATA: (_req_id_only_text, _req_id_only_proto),
    OUT.PLACE_ORDER: (_place_order_text, _place_order_proto),
    OUT.CANCEL_ORDER: (_cancel_order_text, _cancel_order_proto),
    OUT.REQ_ACCT_DATA: (_account_updates_text, lambda p: {"subscribe": p.subscribe, "account": p.acctCode}),
    OUT.REQ_ACCOUNT_UPDATES_MULTI: (_account_updates_multi_text, _account_updates_multi_proto),
    OUT.CANCEL_ACCOUNT_UPDATES_MULTI: (_req_id_only_text, _req_id_only_proto),
    OUT.REQ_COMPLETED_ORDERS: (lambda f: {"api_only": f.bool()}, lambda p: {"api_only": p.apiOnly}),
    OUT.REQ_PNL: (_pnl_text, lambda p: {"req_id": p.reqId, "account": p.account, "model_code": p.modelCode}),
    OUT.CANCEL_PNL: (_bare_req_id_text, _req_id_only_proto),
    OUT.REQ_PNL_SINGLE: (_pnl_single_text, lambda p: {"req_id": p.reqId, "account": p.account,
                                                      "model_code": p.modelCode, "con_id": p.conId}),
    OUT.CANCEL_PNL_SINGLE: (_bare_req_id_text, _req_id_only_proto),
    OUT.REQ_HEAD_TIMESTAMP: (_head_timestamp_text, _head_timestamp_proto),
    OUT.CANCEL_HEAD_TIMESTAMP: (_bare_req_id_text, _req_id_only_proto),
    OUT.REQ_MATCHING_SYMBOLS: (lambda f: {"req_id": f.int(), "pattern": f.str()},
                               lambda p: {"req_id": p.reqId, "pattern": p.pattern}),
    OUT.REQ_SEC_DEF_OPT_PARAMS: (_sec_def_opt_params_text, _sec_def_opt_params_proto),
    OUT.REQ_TICK_BY_TICK_DATA: (_tick_by_tick_text, _tick_by_tick_proto),
    OUT.CANCEL_TICK_BY_TICK_DATA: (_bare_req_id_text, _req_id_only_proto),
    OUT.REQ_HISTORICAL_TICKS: (_historical_ticks_text, _historical_ticks_proto),
}

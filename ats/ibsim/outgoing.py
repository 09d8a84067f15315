"""Server → client messages, encoded at the version each client negotiated.

Every encoder returns an :class:`OutMsg`: the message's values, encoded only when sent, at the
session's version — decimal-text ids below 201, 4-byte binary ids from 201, and a protobuf body
from the version :mod:`ats.ibsim.versions` names for that message.  The text layouts follow the
field branches of ``ibapi/decoder.py`` and ``ibapi/orderdecoder.py`` for every version from 100
(tests decode each encoder with the stock ``Decoder`` at each version and require every field to
be consumed); the protobuf bodies use the ``ibapi.protobuf`` schemas.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ibapi import server_versions as sv
from ibapi.message import IN

from ats.ibsim import versions
from ats.ibsim.wire import MAX_MSG_LEN, UNSET_DOUBLE, ContractSpec, WireError, field

if TYPE_CHECKING:
    from google.protobuf.message import Message

OPEN_ORDER_MSG_VERSION = 34  # below ORDER_CONTAINER (145) openOrder carries a version; 34 is the last


class OutMsg:
    """One server message: values now, bytes at the version of the session it is sent to."""

    __slots__ = ("msg_id", "_text", "_proto", "_encoded")

    def __init__(self, msg_id: int, text: Callable[[int], list[Any]], proto: Callable[[], Message] | None = None) -> None:
        self.msg_id = msg_id
        self._text = text
        self._proto = proto
        self._encoded: dict[int, bytes] = {}

    def encode(self, version: int) -> bytes:
        cached = self._encoded.get(version)
        if cached is None:
            cached = self._encoded[version] = self._encode(version)
        return cached

    def _encode(self, version: int) -> bytes:
        if self._proto is not None and versions.answer_is_protobuf(self.msg_id, version):
            payload = struct.pack("!I", self.msg_id + versions.PROTOBUF_MSG_ID) + self._proto().SerializeToString()
        else:
            body = "".join(field(v) + "\0" for v in self._text(version)).encode("ascii")
            if versions.binary_ids(version):
                payload = struct.pack("!I", self.msg_id) + body
            else:
                payload = (str(self.msg_id) + "\0").encode("ascii") + body
        if len(payload) > MAX_MSG_LEN:
            raise WireError(f"message too long: {len(payload)} bytes")
        return struct.pack("!I", len(payload)) + payload

    def __repr__(self) -> str:
        return f"OutMsg({self.msg_id})"


def handshake_reply(version: int, connection_time: str) -> bytes:
    """The one framed message answering the ``API\\0`` handshake: server version + time."""
    payload = f"{version}\0{field(connection_time)}\0".encode("ascii")
    return struct.pack("!I", len(payload)) + payload


def _fixed(*values: object) -> Callable[[int], list[object]]:
    listed = list(values)
    return lambda _version: listed


def _pb(name: str) -> type[Message]:
    """The ``ibapi.protobuf`` message class ``name`` (imported once)."""
    cls = _PB_CLASSES.get(name)
    if cls is None:
        import importlib

        cls = _PB_CLASSES[name] = getattr(importlib.import_module(f"ibapi.protobuf.{name}_pb2"), name)
    return cls


_PB_CLASSES: dict[str, type[Message]] = {}


def _set(message: Message, **values: object) -> Message:
    """Set the fields that have a value (``None`` stays unset, as IB leaves them)."""
    for key, value in values.items():
        if value is not None:
            setattr(message, key, value)
    return message


def _dec(value: Decimal | int | None) -> str | None:
    return None if value is None else field(Decimal(value))


def _contract_pb(c: ContractSpec, *, primary: bool = True) -> Message:
    return _set(_pb("Contract")(), conId=c.con_id, symbol=c.symbol, secType=c.sec_type, exchange=c.exchange,
                primaryExch=c.primary_exchange if primary else None, currency=c.currency, localSymbol=c.local,
                tradingClass=c.trading_class or None)


# ----------------------------------------------------------------------------- session

def next_valid_id(order_id: int) -> OutMsg:
    return OutMsg(IN.NEXT_VALID_ID, _fixed(1, order_id), lambda: _pb("NextValidId")(orderId=order_id))


def managed_accounts(accounts: Iterable[str]) -> OutMsg:
    listed = ",".join(accounts)
    return OutMsg(IN.MANAGED_ACCTS, _fixed(1, listed), lambda: _pb("ManagedAccounts")(accountsList=listed))


def error(req_id: int, code: int, text: str, time_ms: int, advanced_json: str = "") -> OutMsg:
    def text_fields(v: int) -> list[Any]:
        values: list[Any] = [] if v >= sv.MIN_SERVER_VER_ERROR_TIME else [2]
        values += [req_id, code, text]
        if v >= sv.MIN_SERVER_VER_ADVANCED_ORDER_REJECT:
            values.append(advanced_json)
        if v >= sv.MIN_SERVER_VER_ERROR_TIME:
            values.append(time_ms)
        return values

    return OutMsg(IN.ERR_MSG, text_fields, lambda: _set(
        _pb("ErrorMessage")(), id=req_id, errorCode=code, errorMsg=text, errorTime=time_ms,
        advancedOrderRejectJson=advanced_json or None))


def current_time(epoch_seconds: int) -> OutMsg:
    return OutMsg(IN.CURRENT_TIME, _fixed(1, epoch_seconds), lambda: _pb("CurrentTime")(currentTime=epoch_seconds))


def current_time_in_millis(epoch_ms: int) -> OutMsg:
    return OutMsg(IN.CURRENT_TIME_IN_MILLIS, _fixed(epoch_ms),
                  lambda: _pb("CurrentTimeInMillis")(currentTimeInMillis=epoch_ms))


def market_data_type(req_id: int, data_type: int) -> OutMsg:
    return OutMsg(IN.MARKET_DATA_TYPE, _fixed(1, req_id, data_type),
                  lambda: _pb("MarketDataType")(reqId=req_id, marketDataType=data_type))


# ----------------------------------------------------------------------------- account

def account_summary(req_id: int, account: str, tag: str, value: str, currency: str) -> OutMsg:
    return OutMsg(IN.ACCOUNT_SUMMARY, _fixed(1, req_id, account, tag, value, currency), lambda: _set(
        _pb("AccountSummary")(), reqId=req_id, account=account, tag=tag, value=value, currency=currency or None))


def account_summary_end(req_id: int) -> OutMsg:
    return OutMsg(IN.ACCOUNT_SUMMARY_END, _fixed(1, req_id), lambda: _pb("AccountSummaryEnd")(reqId=req_id))


def position(account: str, c: ContractSpec, quantity: Decimal, avg_cost: float) -> OutMsg:
    values = [3, account, c.con_id, c.symbol, c.sec_type, "", 0.0, "", "", c.exchange, c.currency, c.local,
              c.trading_class, quantity, avg_cost]
    return OutMsg(IN.POSITION_DATA, _fixed(*values), lambda: _pb("Position")(
        account=account, contract=_contract_pb(c, primary=False), position=_dec(quantity), avgCost=avg_cost))


def position_end() -> OutMsg:
    return OutMsg(IN.POSITION_END, _fixed(1), lambda: _pb("PositionEnd")())


# ----------------------------------------------------------------------------- contracts

ORDER_TYPES = "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AVGCOST,BASKET,DAY,GTC,GTD,IOC,LMT,LOC,MKT,MOC,OPG,STP,STPLMT,TRAIL"


def contract_data(req_id: int, c: ContractSpec) -> OutMsg:
    market_name = c.trading_class or "NMS"
    valid_exchanges = f"SMART,{c.primary_exchange}"

    def text_fields(v: int) -> list[Any]:
        values: list[Any] = [] if v >= sv.MIN_SERVER_VER_SIZE_RULES else [8]
        values += [req_id, c.symbol, c.sec_type, ""]  # lastTradeDateOrContractMonth
        if v >= sv.MIN_SERVER_VER_LAST_TRADE_DATE:
            values.append("")  # lastTradeDate
        values += [0.0, "", c.exchange, c.currency, c.local, market_name, c.trading_class, c.con_id, c.min_tick]
        if sv.MIN_SERVER_VER_MD_SIZE_MULTIPLIER <= v < sv.MIN_SERVER_VER_SIZE_RULES:
            values.append(1)  # mdSizeMultiplier
        values += ["", ORDER_TYPES, valid_exchanges, 1, 0, c.long_name or c.symbol, c.primary_exchange]
        values += ["", "", "", "", c.time_zone_id, "", ""]  # contractMonth .. liquidHours
        values += ["", ""]  # evRule, evMultiplier
        values += [1, "ISIN", c.isin] if c.isin else [0]
        if v >= sv.MIN_SERVER_VER_AGG_GROUP:
            values.append(1)
        if v >= sv.MIN_SERVER_VER_UNDERLYING_INFO:
            values += ["", ""]
        if v >= sv.MIN_SERVER_VER_MARKET_RULES:
            values.append("26,26")
        if v >= sv.MIN_SERVER_VER_REAL_EXPIRATION_DATE:
            values.append("")
        if v >= sv.MIN_SERVER_VER_STOCK_TYPE:
            values.append(c.stock_type)
        if sv.MIN_SERVER_VER_FRACTIONAL_SIZE_SUPPORT <= v < sv.MIN_SERVER_VER_SIZE_RULES:
            values.append("0.0001")  # sizeMinTick
        if v >= sv.MIN_SERVER_VER_SIZE_RULES:
            values += ["0.0001", "0.0001", "100"]
        if v >= sv.MIN_SERVER_VER_INELIGIBILITY_REASONS:
            values.append(0)
        return values

    def proto() -> Message:
        details = _set(_pb("ContractDetails")(), marketName=market_name, minTick=field(c.min_tick),
                       orderTypes=ORDER_TYPES, validExchanges=valid_exchanges, priceMagnifier=1, underConId=0,
                       longName=c.long_name or c.symbol, timeZoneId=c.time_zone_id, aggGroup=1,
                       marketRuleIds="26,26", stockType=c.stock_type, minSize="0.0001", sizeIncrement="0.0001",
                       suggestedSizeIncrement="100")
        if c.isin:
            details.secIdList["ISIN"] = c.isin
        return _pb("ContractData")(reqId=req_id, contract=_contract_pb(c), contractDetails=details)

    return OutMsg(IN.CONTRACT_DATA, text_fields, proto)


def contract_data_end(req_id: int) -> OutMsg:
    return OutMsg(IN.CONTRACT_DATA_END, _fixed(1, req_id), lambda: _pb("ContractDataEnd")(reqId=req_id))


# ----------------------------------------------------------------------------- orders

@dataclass(frozen=True, slots=True)
class OrderView:
    """The order fields an openOrder message carries."""

    order_id: int
    client_id: int
    perm_id: int
    action: str
    quantity: Decimal
    order_type: str
    limit_price: float | None
    aux_price: float | None
    tif: str
    account: str
    order_ref: str
    status: str
    outside_rth: bool = False
    parent_id: int = 0
    oca_group: str = ""
    oca_type: int = 0
    good_till_date: str = ""
    trail_stop_price: float | None = None
    trailing_percent: float | None = None
    transmit: bool = True
    what_if: bool = False
    # whatIf answers: margin figures (text, as IB sends them) and the commission estimate.
    init_margin: tuple[str, str, str] = ("", "", "")  # before, change, after
    maint_margin: tuple[str, str, str] = ("", "", "")
    equity_with_loan: tuple[str, str, str] = ("", "", "")
    commission: float | None = None
    warning_text: str = ""


def _contract_short(c: ContractSpec) -> list[Any]:
    """conId, symbol, secType, ltd, strike, right, multiplier, exchange, currency, localSymbol, tradingClass."""
    return [c.con_id, c.symbol, c.sec_type, "", 0.0, "", "", c.exchange, c.currency, c.local, c.trading_class]


def _open_order_text(o: OrderView, c: ContractSpec, v: int) -> list[Any]:
    values: list[Any] = [] if v >= sv.MIN_SERVER_VER_ORDER_CONTAINER else [OPEN_ORDER_MSG_VERSION]
    values += [o.order_id, *_contract_short(c)]
    values += [o.action, o.quantity, o.order_type, o.limit_price, o.aux_price, o.tif]
    values += [o.oca_group, o.account, "", 0, o.order_ref, o.client_id, o.perm_id]  # ocaGroup..permId
    values += [o.outside_rth, False, 0.0, ""]  # outsideRth, hidden, discretionaryAmt, goodAfterTime
    values += [""]  # sharesAllocation (deprecated)
    values += ["", "", ""]  # faGroup, faMethod, faPercentage
    if v < sv.MIN_SERVER_VER_FA_PROFILE_DESUPPORT:
        values.append("")  # faProfile
    if v >= sv.MIN_SERVER_VER_MODELS_SUPPORT:
        values.append("")  # modelCode
    values += [o.good_till_date, "", None, ""]  # goodTillDate, rule80A, percentOffset, settlingFirm
    values += [0, "", -1]  # shortSaleSlot, designatedLocation, exemptCode
    values += [0]  # auctionStrategy
    values += [None, None, None]  # startingPrice, stockRefPrice, delta
    values += [None, None]  # stockRangeLower, stockRangeUpper
    values += [None, False, False, False, None]  # displaySize, blockOrder, sweepToFill, allOrNone, minQty
    values += [o.oca_type, False, False, None]  # ocaType, eTradeOnly, firmQuoteOnly, nbboPriceCap
    values += [o.parent_id, 0]  # parentId, triggerMethod
    values += [None, 0, "", None, False, 0]  # volatility..referencePriceType (no delta-neutral extras)
    values += [o.trail_stop_price, o.trailing_percent]
    values += [None, None]  # basisPoints, basisPointsType
    values += ["", 0, 0]  # comboLegsDescrip, comboLegsCount, orderComboLegsCount
    values += [0]  # smartComboRoutingParamsCount
    values += [None, None, None]  # scaleInitLevelSize, scaleSubsLevelSize, scalePriceIncrement
    values += [""]  # hedgeType
    values += [False]  # optOutSmartRouting
    values += [o.account, ""]  # clearingAccount, clearingIntent
    values += [False]  # notHeld
    values += [False]  # deltaNeutralContractPresent
    values += [""]  # algoStrategy
    values += [False]  # solicited
    values += [o.what_if, o.status]
    if v >= sv.MIN_SERVER_VER_WHAT_IF_EXT_FIELDS:
        values += [o.init_margin[0], o.maint_margin[0], o.equity_with_loan[0],
                   o.init_margin[1], o.maint_margin[1], o.equity_with_loan[1]]
    values += [o.init_margin[2], o.maint_margin[2], o.equity_with_loan[2]]
    values += [o.commission, None, None, "USD" if o.commission is not None else ""]
    if v >= sv.MIN_SERVER_VER_FULL_ORDER_PREVIEW_FIELDS:
        values += [""]  # marginCurrency
        values += [None] * 9  # *OutsideRTH
        values += ["", "", 0]  # suggestedSize, rejectReason, orderAllocationsCount
    values += [o.warning_text]
    values += [False, False]  # randomizeSize, randomizePrice
    if v >= sv.MIN_SERVER_VER_PEGGED_TO_BENCHMARK:
        values += [0]  # conditionsCount
        # adjusted order params; trailStopPrice is read again here and wins
        values += ["", None, o.trail_stop_price, None, None, None, None, 0]
    if v >= sv.MIN_SERVER_VER_SOFT_DOLLAR_TIER:
        values += ["", "", ""]
    if v >= sv.MIN_SERVER_VER_CASH_QTY:
        values += [None]
    if v >= sv.MIN_SERVER_VER_AUTO_PRICE_FOR_HEDGE:
        values += [False]  # dontUseAutoPriceForHedge
    if v >= sv.MIN_SERVER_VER_ORDER_CONTAINER:
        values += [False]  # isOmsContainer
    if v >= sv.MIN_SERVER_VER_D_PEG_ORDERS:
        values += [False]  # discretionaryUpToLimitPrice
    if v >= sv.MIN_SERVER_VER_PRICE_MGMT_ALGO:
        values += [False]  # usePriceMgmtAlgo
    if v >= sv.MIN_SERVER_VER_DURATION:
        values += [None]
    if v >= sv.MIN_SERVER_VER_POST_TO_ATS:
        values += [None]
    if v >= sv.MIN_SERVER_VER_AUTO_CANCEL_PARENT:
        values += [False]
    if v >= sv.MIN_SERVER_VER_PEGBEST_PEGMID_OFFSETS:
        values += [None, None, None, None, None]  # minTradeQty .. midOffsetAtHalf
    if v >= sv.MIN_SERVER_VER_CUSTOMER_ACCOUNT:
        values += [""]
    if v >= sv.MIN_SERVER_VER_PROFESSIONAL_CUSTOMER:
        values += [False]
    if v >= sv.MIN_SERVER_VER_BOND_ACCRUED_INTEREST:
        values += [""]
    if v >= sv.MIN_SERVER_VER_INCLUDE_OVERNIGHT:
        values += [False]
    if v >= sv.MIN_SERVER_VER_CME_TAGGING_FIELDS_IN_OPEN_ORDER:
        values += ["", None]  # extOperator, manualOrderIndicator
    if v >= sv.MIN_SERVER_VER_SUBMITTER:
        values += [""]
    if v >= sv.MIN_SERVER_VER_IMBALANCE_ONLY:
        values += [False]
    return values


def _margin(text: str) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def open_order(o: OrderView, c: ContractSpec) -> OutMsg:
    """IN 5 openOrder for a single-leg stock order (bracket children carry their parentId)."""
    def proto() -> Message:
        order = _set(_pb("Order")(), clientId=o.client_id, orderId=o.order_id, permId=o.perm_id,
                     parentId=o.parent_id or None, action=o.action, totalQuantity=_dec(o.quantity),
                     orderType=o.order_type, lmtPrice=o.limit_price, auxPrice=o.aux_price, tif=o.tif,
                     account=o.account, orderRef=o.order_ref or None, outsideRth=o.outside_rth,
                     ocaGroup=o.oca_group or None, ocaType=o.oca_type or None,
                     goodTillDate=o.good_till_date or None, trailStopPrice=o.trail_stop_price,
                     trailingPercent=o.trailing_percent, transmit=o.transmit, whatIf=o.what_if,
                     clearingAccount=o.account)
        state = _set(_pb("OrderState")(), status=o.status,
                     initMarginBefore=_margin(o.init_margin[0]), initMarginChange=_margin(o.init_margin[1]),
                     initMarginAfter=_margin(o.init_margin[2]), maintMarginBefore=_margin(o.maint_margin[0]),
                     maintMarginChange=_margin(o.maint_margin[1]), maintMarginAfter=_margin(o.maint_margin[2]),
                     equityWithLoanBefore=_margin(o.equity_with_loan[0]),
                     equityWithLoanChange=_margin(o.equity_with_loan[1]),
                     equityWithLoanAfter=_margin(o.equity_with_loan[2]), commissionAndFees=o.commission,
                     commissionAndFeesCurrency="USD" if o.commission is not None else None,
                     warningText=o.warning_text or None)
        return _pb("OpenOrder")(orderId=o.order_id, contract=_contract_pb(c, primary=False), order=order,
                                orderState=state)

    return OutMsg(IN.OPEN_ORDER, lambda v: _open_order_text(o, c, v), proto)


def order_status(order_id: int, status: str, filled: Decimal, remaining: Decimal, avg_fill_price: float,
                 perm_id: int, last_fill_price: float, client_id: int, why_held: str = "",
                 parent_id: int = 0) -> OutMsg:
    """IN 3 orderStatus (a version field below MARKET_CAP_PRICE, mktCapPrice from it)."""
    def text_fields(v: int) -> list[Any]:
        values: list[Any] = [] if v >= sv.MIN_SERVER_VER_MARKET_CAP_PRICE else [6]
        values += [order_id, status, filled, remaining, avg_fill_price, perm_id, parent_id, last_fill_price,
                   client_id, why_held]
        if v >= sv.MIN_SERVER_VER_MARKET_CAP_PRICE:
            values.append(0.0)
        return values

    return OutMsg(IN.ORDER_STATUS, text_fields, lambda: _set(
        _pb("OrderStatus")(), orderId=order_id, status=status, filled=_dec(filled), remaining=_dec(remaining),
        avgFillPrice=avg_fill_price, permId=perm_id, parentId=parent_id, lastFillPrice=last_fill_price,
        clientId=client_id, whyHeld=why_held or None, mktCapPrice=0.0))


def open_order_end() -> OutMsg:
    return OutMsg(IN.OPEN_ORDER_END, _fixed(1), lambda: _pb("OpenOrdersEnd")())


# ----------------------------------------------------------------------------- executions

@dataclass(frozen=True, slots=True)
class ExecView:
    """The fields of one execution (fill)."""

    exec_id: str
    order_id: int
    client_id: int
    perm_id: int
    time: str  # "YYYYMMDD HH:MM:SS UTC"
    account: str
    side: str  # "BOT" / "SLD"
    shares: Decimal
    price: float
    cum_qty: Decimal
    avg_price: float
    order_ref: str


def execution(req_id: int, e: ExecView, c: ContractSpec) -> OutMsg:
    """IN 11 execDetails; ``req_id`` -1 for live fills.  A version field (10) below LAST_LIQUIDITY."""
    def text_fields(v: int) -> list[Any]:
        values: list[Any] = [] if v >= sv.MIN_SERVER_VER_LAST_LIQUIDITY else [10]
        values += [req_id, e.order_id, *_contract_short(c)]
        values += [e.exec_id, e.time, e.account, c.primary_exchange, e.side, e.shares, e.price, e.perm_id,
                   e.client_id, 0, e.cum_qty, e.avg_price, e.order_ref, "", ""]  # .. evRule, evMultiplier
        if v >= sv.MIN_SERVER_VER_MODELS_SUPPORT:
            values.append("")  # modelCode
        if v >= sv.MIN_SERVER_VER_LAST_LIQUIDITY:
            values.append(1)  # lastLiquidity (1 = added)
        if v >= sv.MIN_SERVER_VER_PENDING_PRICE_REVISION:
            values.append(False)
        if v >= sv.MIN_SERVER_VER_SUBMITTER:
            values.append("")
        return values

    def proto() -> Message:
        execution_pb = _set(_pb("Execution")(), orderId=e.order_id, execId=e.exec_id, time=e.time,
                            acctNumber=e.account, exchange=c.primary_exchange, side=e.side, shares=_dec(e.shares),
                            price=e.price, permId=e.perm_id, clientId=e.client_id, isLiquidation=False,
                            cumQty=_dec(e.cum_qty), avgPrice=e.avg_price, orderRef=e.order_ref or None,
                            lastLiquidity=1)
        return _pb("ExecutionDetails")(reqId=req_id, contract=_contract_pb(c, primary=False), execution=execution_pb)

    return OutMsg(IN.EXECUTION_DATA, text_fields, proto)


def execution_end(req_id: int) -> OutMsg:
    return OutMsg(IN.EXECUTION_DATA_END, _fixed(1, req_id), lambda: _pb("ExecutionDetailsEnd")(reqId=req_id))


def commission_report(exec_id: str, commission: float, currency: str, realized_pnl: float | None) -> OutMsg:
    pnl = UNSET_DOUBLE if realized_pnl is None else realized_pnl
    return OutMsg(IN.COMMISSION_AND_FEES_REPORT, _fixed(1, exec_id, commission, currency, pnl, UNSET_DOUBLE, ""),
                  lambda: _set(_pb("CommissionAndFeesReport")(), execId=exec_id, commissionAndFees=commission,
                               currency=currency, realizedPNL=pnl))


# ----------------------------------------------------------------------------- bars and ticks

@dataclass(frozen=True, slots=True)
class BarView:
    """One OHLCV bar as sent on the wire; ``date`` is ``YYYYMMDD`` (daily) or epoch seconds."""

    date: str
    open: float
    high: float
    low: float
    close: float
    volume: int
    wap: float
    count: int


def _bar_pb(b: BarView) -> Message:
    return _pb("HistoricalDataBar")(date=b.date, open=b.open, high=b.high, low=b.low, close=b.close,
                                    volume=field(b.volume), WAP=field(b.wap), barCount=b.count)


def historical_data(req_id: int, bars: list[BarView], start: str = "", end: str = "") -> OutMsg:
    """IN 17.  Below HISTORICAL_DATA_END (196) it carries the start/end itself (and is the end);
    from 196 :func:`historical_data_end` follows.  Below SYNT_REALTIME_BARS a version field and a
    per-bar ``hasGaps``."""
    def text_fields(v: int) -> list[Any]:
        old = v < sv.MIN_SERVER_VER_SYNT_REALTIME_BARS
        values: list[Any] = [3] if old else []
        values.append(req_id)
        if v < sv.MIN_SERVER_VER_HISTORICAL_DATA_END:
            values += [start, end]
        values.append(len(bars))
        for b in bars:
            values += [b.date, b.open, b.high, b.low, b.close, b.volume, b.wap]
            if old:
                values.append("false")  # hasGaps
            values.append(b.count)
        return values

    return OutMsg(IN.HISTORICAL_DATA, text_fields,
                  lambda: _pb("HistoricalData")(reqId=req_id, historicalDataBars=[_bar_pb(b) for b in bars]))


def historical_data_end(req_id: int, start: str, end: str) -> OutMsg:
    """IN 108, from server version 196 only (below, :func:`historical_data` carries the end)."""
    return OutMsg(IN.HISTORICAL_DATA_END, _fixed(req_id, start, end),
                  lambda: _pb("HistoricalDataEnd")(reqId=req_id, startDateStr=start, endDateStr=end))


def historical_data_update(req_id: int, b: BarView) -> OutMsg:
    """IN 90: note the order open, CLOSE, HIGH, LOW, wap, volume."""
    return OutMsg(IN.HISTORICAL_DATA_UPDATE,
                  _fixed(req_id, b.count, b.date, b.open, b.close, b.high, b.low, b.wap, b.volume),
                  lambda: _pb("HistoricalDataUpdate")(reqId=req_id, historicalDataBar=_bar_pb(b)))


def real_time_bar(req_id: int, epoch: int, b: BarView) -> OutMsg:
    return OutMsg(IN.REAL_TIME_BARS, _fixed(3, req_id, epoch, b.open, b.high, b.low, b.close, b.volume, b.wap, b.count),
                  lambda: _pb("RealTimeBarTick")(reqId=req_id, time=epoch, open=b.open, high=b.high, low=b.low,
                                                 close=b.close, volume=field(b.volume), WAP=field(b.wap),
                                                 count=b.count))


def tick_price(req_id: int, tick_type: int, price: float, size: Decimal | str, attr_mask: int = 0) -> OutMsg:
    return OutMsg(IN.TICK_PRICE, _fixed(6, req_id, tick_type, price, size, attr_mask),
                  lambda: _pb("TickPrice")(reqId=req_id, tickType=tick_type, price=price, size=field(size),
                                           attrMask=attr_mask))


def tick_size(req_id: int, tick_type: int, size: Decimal | str) -> OutMsg:
    return OutMsg(IN.TICK_SIZE, _fixed(6, req_id, tick_type, size),
                  lambda: _pb("TickSize")(reqId=req_id, tickType=tick_type, size=field(size)))


def tick_snapshot_end(req_id: int) -> OutMsg:
    return OutMsg(IN.TICK_SNAPSHOT_END, _fixed(1, req_id), lambda: _pb("TickSnapshotEnd")(reqId=req_id))


# ----------------------------------------------------------------------------- account updates

def account_value(key: str, value: str, currency: str, account: str) -> OutMsg:
    return OutMsg(IN.ACCT_VALUE, _fixed(2, key, value, currency, account), lambda: _set(
        _pb("AccountValue")(), key=key, value=value, currency=currency or None, accountName=account))


def portfolio_value(c: ContractSpec, quantity: Decimal, market_price: float, market_value: float,
                    average_cost: float, unrealized_pnl: float, realized_pnl: float, account: str) -> OutMsg:
    values = [8, c.con_id, c.symbol, c.sec_type, "", 0.0, "", "", c.primary_exchange, c.currency, c.local,
              c.trading_class, quantity, market_price, market_value, average_cost, unrealized_pnl, realized_pnl,
              account]
    return OutMsg(IN.PORTFOLIO_VALUE, _fixed(*values), lambda: _pb("PortfolioValue")(
        contract=_contract_pb(c), position=_dec(quantity), marketPrice=market_price, marketValue=market_value,
        averageCost=average_cost, unrealizedPNL=unrealized_pnl, realizedPNL=realized_pnl, accountName=account))


def account_update_time(hh_mm: str) -> OutMsg:
    return OutMsg(IN.ACCT_UPDATE_TIME, _fixed(1, hh_mm), lambda: _pb("AccountUpdateTime")(timeStamp=hh_mm))


def account_download_end(account: str) -> OutMsg:
    return OutMsg(IN.ACCT_DOWNLOAD_END, _fixed(1, account), lambda: _pb("AccountDataEnd")(accountName=account))


def account_update_multi(req_id: int, account: str, model_code: str, key: str, value: str, currency: str) -> OutMsg:
    return OutMsg(IN.ACCOUNT_UPDATE_MULTI, _fixed(1, req_id, account, model_code, key, value, currency),
                  lambda: _set(_pb("AccountUpdateMulti")(), reqId=req_id, account=account,
                               modelCode=model_code or None, key=key, value=value, currency=currency or None))


def account_update_multi_end(req_id: int) -> OutMsg:
    return OutMsg(IN.ACCOUNT_UPDATE_MULTI_END, _fixed(1, req_id),
                  lambda: _pb("AccountUpdateMultiEnd")(reqId=req_id))


def pnl(req_id: int, daily: float, unrealized: float, realized: float) -> OutMsg:
    def text_fields(v: int) -> list[Any]:
        values: list[Any] = [req_id, daily]
        if v >= sv.MIN_SERVER_VER_UNREALIZED_PNL:
            values.append(unrealized)
        if v >= sv.MIN_SERVER_VER_REALIZED_PNL:
            values.append(realized)
        return values

    return OutMsg(IN.PNL, text_fields, lambda: _pb("PnL")(reqId=req_id, dailyPnL=daily, unrealizedPnL=unrealized,
                                                          realizedPnL=realized))


def pnl_single(req_id: int, quantity: Decimal, daily: float, unrealized: float, realized: float,
               value: float) -> OutMsg:
    def text_fields(v: int) -> list[Any]:
        values: list[Any] = [req_id, quantity, daily]
        if v >= sv.MIN_SERVER_VER_UNREALIZED_PNL:
            values.append(unrealized)
        if v >= sv.MIN_SERVER_VER_REALIZED_PNL:
            values.append(realized)
        return [*values, value]

    return OutMsg(IN.PNL_SINGLE, text_fields, lambda: _pb("PnLSingle")(
        reqId=req_id, position=_dec(quantity), dailyPnL=daily, unrealizedPnL=unrealized, realizedPnL=realized,
        value=value))


def completed_order(o: OrderView, c: ContractSpec, filled: Decimal, completed_time: str,
                    completed_status: str) -> OutMsg:
    """IN 101 completedOrder: the order fields in the completed-order layout (no order id)."""
    def text_fields(v: int) -> list[Any]:
        values: list[Any] = [*_contract_short(c)]
        values += [o.action, o.quantity, o.order_type, o.limit_price, o.aux_price, o.tif, o.oca_group, o.account,
                   "", 0, o.order_ref, o.perm_id, o.outside_rth, False, 0.0, ""]  # .. hidden, discretion, goodAfter
        values += ["", "", ""]  # faGroup, faMethod, faPercentage
        if v < sv.MIN_SERVER_VER_FA_PROFILE_DESUPPORT:
            values.append("")
        if v >= sv.MIN_SERVER_VER_MODELS_SUPPORT:
            values.append("")
        values += [o.good_till_date, "", None, ""]  # goodTillDate, rule80A, percentOffset, settlingFirm
        values += [0, "", -1]  # shortSaleSlot, designatedLocation, exemptCode
        values += [None, None, None, None, None]  # startingPrice, stockRefPrice, delta, stockRangeLower/Upper
        values += [None, False, False, None, o.oca_type, 0]  # displaySize .. ocaType, triggerMethod
        values += [None, 0, "", None, False, 0]  # volatility .. referencePriceType
        values += [o.trail_stop_price, o.trailing_percent]
        values += ["", 0, 0, 0]  # comboLegsDescrip, comboLegsCount, orderComboLegsCount, smartComboRoutingCount
        values += [None, None, None]  # scaleInitLevelSize, scaleSubsLevelSize, scalePriceIncrement
        values += [""]  # hedgeType
        values += [o.account, "", False, False, "", False]  # clearing (2), notHeld, deltaNeutral, algo, solicited
        values += [o.status, False, False]  # orderStatus, randomizeSize, randomizePrice
        if v >= sv.MIN_SERVER_VER_PEGGED_TO_BENCHMARK:
            values.append(0)  # conditionsCount
        values += [o.trail_stop_price, None]  # trailStopPrice, lmtPriceOffset
        if v >= sv.MIN_SERVER_VER_CASH_QTY:
            values.append(None)
        if v >= sv.MIN_SERVER_VER_AUTO_PRICE_FOR_HEDGE:
            values.append(False)
        if v >= sv.MIN_SERVER_VER_ORDER_CONTAINER:
            values.append(False)
        values += ["", filled, 0, False, "", False, 0, 0]
        values += [completed_time, completed_status]  # autoCancelDate .. parentPermId above
        if v >= sv.MIN_SERVER_VER_PEGBEST_PEGMID_OFFSETS:
            values += [None, None, None, None, None]
        if v >= sv.MIN_SERVER_VER_CUSTOMER_ACCOUNT:
            values.append("")
        if v >= sv.MIN_SERVER_VER_PROFESSIONAL_CUSTOMER:
            values.append(False)
        if v >= sv.MIN_SERVER_VER_SUBMITTER:
            values.append("")
        return values

    def proto() -> Message:
        order = _set(_pb("Order")(), permId=o.perm_id, action=o.action, totalQuantity=_dec(o.quantity),
                     orderType=o.order_type, lmtPrice=o.limit_price, auxPrice=o.aux_price, tif=o.tif,
                     account=o.account, orderRef=o.order_ref or None, outsideRth=o.outside_rth,
                     ocaGroup=o.oca_group or None, goodTillDate=o.good_till_date or None,
                     filledQuantity=_dec(filled), clearingAccount=o.account)
        state = _set(_pb("OrderState")(), status=o.status, completedTime=completed_time or None,
                     completedStatus=completed_status or None)
        return _pb("CompletedOrder")(contract=_contract_pb(c, primary=False), order=order, orderState=state)

    return OutMsg(IN.COMPLETED_ORDER, text_fields, proto)


def completed_orders_end() -> OutMsg:
    return OutMsg(IN.COMPLETED_ORDERS_END, _fixed(), lambda: _pb("CompletedOrdersEnd")())


# ----------------------------------------------------------------------------- reference data and ticks

def head_timestamp(req_id: int, timestamp: str) -> OutMsg:
    return OutMsg(IN.HEAD_TIMESTAMP, _fixed(req_id, timestamp),
                  lambda: _pb("HeadTimestamp")(reqId=req_id, headTimestamp=timestamp))


def symbol_samples(req_id: int, contracts: list[ContractSpec]) -> OutMsg:
    def text_fields(v: int) -> list[Any]:
        values: list[Any] = [req_id, len(contracts)]
        for c in contracts:
            values += [c.con_id, c.symbol, c.sec_type, c.primary_exchange, c.currency, 0]  # no derivatives
            if v >= sv.MIN_SERVER_VER_BOND_ISSUERID:
                values += [c.long_name or c.symbol, ""]  # description, issuerId
        return values

    def proto() -> Message:
        descriptions = [_pb("ContractDescription")(contract=_set(_contract_pb(c), description=c.long_name or c.symbol))
                        for c in contracts]
        return _pb("SymbolSamples")(reqId=req_id, contractDescriptions=descriptions)

    return OutMsg(IN.SYMBOL_SAMPLES, text_fields, proto)


def sec_def_opt_params_end(req_id: int) -> OutMsg:
    return OutMsg(IN.SECURITY_DEFINITION_OPTION_PARAMETER_END, _fixed(req_id),
                  lambda: _pb("SecDefOptParameterEnd")(reqId=req_id))


@dataclass(frozen=True, slots=True)
class TickView:
    """One trade tick (``last``) or quote (``bid``/``ask``) at Unix second ``time``."""

    time: int
    price: float
    size: Decimal
    bid: float = 0.0
    ask: float = 0.0
    bid_size: Decimal = Decimal(0)
    ask_size: Decimal = Decimal(0)


def historical_ticks_last(req_id: int, ticks: list[TickView], done: bool = True) -> OutMsg:
    def text_fields(_v: int) -> list[Any]:
        values: list[Any] = [req_id, len(ticks)]
        for t in ticks:
            values += [t.time, 0, t.price, t.size, "NASDAQ", ""]
        return [*values, done]

    return OutMsg(IN.HISTORICAL_TICKS_LAST, text_fields, lambda: _pb("HistoricalTicksLast")(
        reqId=req_id, isDone=done, historicalTicksLast=[
            _pb("HistoricalTickLast")(time=t.time, price=t.price, size=field(t.size), exchange="NASDAQ")
            for t in ticks]))


def historical_ticks_bid_ask(req_id: int, ticks: list[TickView], done: bool = True) -> OutMsg:
    def text_fields(_v: int) -> list[Any]:
        values: list[Any] = [req_id, len(ticks)]
        for t in ticks:
            values += [t.time, 0, t.bid, t.ask, t.bid_size, t.ask_size]
        return [*values, done]

    return OutMsg(IN.HISTORICAL_TICKS_BID_ASK, text_fields, lambda: _pb("HistoricalTicksBidAsk")(
        reqId=req_id, isDone=done, historicalTicksBidAsk=[
            _pb("HistoricalTickBidAsk")(time=t.time, priceBid=t.bid, priceAsk=t.ask, sizeBid=field(t.bid_size),
                                        sizeAsk=field(t.ask_size)) for t in ticks]))


def historical_ticks_midpoint(req_id: int, ticks: list[TickView], done: bool = True) -> OutMsg:
    def text_fields(_v: int) -> list[Any]:
        values: list[Any] = [req_id, len(ticks)]
        for t in ticks:
            values += [t.time, 0, t.price, t.size]
        return [*values, done]

    return OutMsg(IN.HISTORICAL_TICKS, text_fields, lambda: _pb("HistoricalTicks")(
        reqId=req_id, isDone=done, historicalTicks=[
            _pb("HistoricalTick")(time=t.time, price=t.price, size=field(t.size)) for t in ticks]))


TICK_BY_TICK_TYPES = {"Last": 1, "AllLast": 2, "BidAsk": 3, "MidPoint": 4}


def tick_by_tick(req_id: int, tick_type: int, t: TickView) -> OutMsg:
    """IN 99: type 1/2 a trade, 3 a quote, 4 a midpoint."""
    def text_fields(_v: int) -> list[Any]:
        if tick_type in (1, 2):
            return [req_id, tick_type, t.time, t.price, t.size, 0, "NASDAQ", ""]
        if tick_type == 3:
            return [req_id, tick_type, t.time, t.bid, t.ask, t.bid_size, t.ask_size, 0]
        return [req_id, tick_type, t.time, t.price]

    def proto() -> Message:
        message = _pb("TickByTickData")(reqId=req_id, tickType=tick_type)
        if tick_type in (1, 2):
            message.historicalTickLast.CopyFrom(_pb("HistoricalTickLast")(
                time=t.time, price=t.price, size=field(t.size), exchange="NASDAQ"))
        elif tick_type == 3:
            message.historicalTickBidAsk.CopyFrom(_pb("HistoricalTickBidAsk")(
                time=t.time, priceBid=t.bid, priceAsk=t.ask, sizeBid=field(t.bid_size), sizeAsk=field(t.ask_size)))
        else:
            message.historicalTickMidPoint.CopyFrom(_pb("HistoricalTick")(time=t.time, price=t.price))
        return message

    return OutMsg(IN.TICK_BY_TICK, text_fields, proto)

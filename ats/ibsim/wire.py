"""TWS API wire format at server version 200: framing, field parsing, server-side encoders.

Every message is ``uint32 big-endian length`` + payload; the payload is ASCII fields each
terminated by ``\\0``; field 0 is the message id as decimal text (server version < 201, so no
binary ids and no protobuf).  The encoders below build the *server → client* messages the
Nautilus IB adapter and the stock ``ibapi`` client need, in the exact field order the real
``ibapi.decoder.Decoder`` reads at server version 200 (tests decode every one of them with it
and require every field to be consumed).

Values are given as Python values; :func:`field` turns them into wire text: ``None`` is an
empty field ("unset"), ``bool`` is ``0``/``1``, floats use their shortest repr.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

SERVER_VERSION = 200
MIN_CLIENT_VERSION = 100
MAX_MSG_LEN = 0xFFFFFF
API_PREFIX = b"API\0"
UNSET_INTEGER = 2**31 - 1
UNSET_DOUBLE = 1.7976931348623157e308


class IN:
    """Server → client message ids used by the simulator."""

    TICK_PRICE = 1
    TICK_SIZE = 2
    ORDER_STATUS = 3
    ERR_MSG = 4
    OPEN_ORDER = 5
    NEXT_VALID_ID = 9
    CONTRACT_DATA = 10
    EXECUTION_DATA = 11
    MANAGED_ACCTS = 15
    HISTORICAL_DATA = 17
    CURRENT_TIME = 49
    REAL_TIME_BARS = 50
    TICK_SNAPSHOT_END = 57
    CONTRACT_DATA_END = 52
    OPEN_ORDER_END = 53
    EXECUTION_DATA_END = 55
    MARKET_DATA_TYPE = 58
    COMMISSION_REPORT = 59
    POSITION_DATA = 61
    POSITION_END = 62
    ACCOUNT_SUMMARY = 63
    ACCOUNT_SUMMARY_END = 64
    HISTORICAL_DATA_UPDATE = 90
    HISTORICAL_DATA_END = 108


class OUT:
    """Client → server message ids the simulator understands."""

    REQ_MKT_DATA = 1
    CANCEL_MKT_DATA = 2
    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REQ_OPEN_ORDERS = 5
    REQ_ACCT_DATA = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DATA = 9
    REQ_ALL_OPEN_ORDERS = 16
    REQ_MANAGED_ACCTS = 17
    REQ_HISTORICAL_DATA = 20
    CANCEL_HISTORICAL_DATA = 25
    REQ_CURRENT_TIME = 49
    REQ_REAL_TIME_BARS = 50
    CANCEL_REAL_TIME_BARS = 51
    REQ_GLOBAL_CANCEL = 58
    REQ_MARKET_DATA_TYPE = 59
    REQ_POSITIONS = 61
    REQ_ACCOUNT_SUMMARY = 62
    CANCEL_ACCOUNT_SUMMARY = 63
    CANCEL_POSITIONS = 64
    START_API = 71


class WireError(ValueError):
    """A frame or field that does not follow the protocol."""


# ----------------------------------------------------------------------------- fields


def field(value: Any) -> str:
    """One value as wire text (without the terminator)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(value)
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return str(value.quantize(Decimal(1)))
        return format(value.normalize(), "f")
    text = str(value)
    # ASCII only, no terminators, no backslashes (the decoder applies unicode-escape).
    return text.replace("\0", "").replace("\\", "/").encode("ascii", "replace").decode("ascii")


def frame(msg_id: int, *values: Any) -> bytes:
    """A complete framed message: length prefix, msg id, fields."""
    payload = "".join(field(v) + "\0" for v in (msg_id, *values)).encode("ascii")
    if len(payload) > MAX_MSG_LEN:
        raise WireError(f"message too long: {len(payload)} bytes")
    return struct.pack("!I", len(payload)) + payload


def handshake_reply(connection_time: str) -> bytes:
    """The one framed message answering the ``API\\0`` handshake: server version + time."""
    payload = f"{SERVER_VERSION}\0{field(connection_time)}\0".encode("ascii")
    return struct.pack("!I", len(payload)) + payload


def split_fields(payload: bytes) -> list[str]:
    """Split a frame payload into text fields; the payload must end with a terminator."""
    if not payload.endswith(b"\0"):
        raise WireError("payload does not end with a field terminator")
    try:
        text = payload.decode("ascii")
    except UnicodeDecodeError:
        text = payload.decode("latin-1")
    return text.split("\0")[:-1]


def parse_client_versions(text: str) -> tuple[int, int]:
    """Parse the client's ``v<min>..<max>[ options]`` string."""
    spec = text.split(" ", 1)[0]
    if not spec.startswith("v"):
        raise WireError(f"bad version string {text!r}")
    parts = spec[1:].split("..")
    try:
        low = int(parts[0])
        high = int(parts[1]) if len(parts) > 1 else low
    except (ValueError, IndexError) as exc:
        raise WireError(f"bad version string {text!r}") from exc
    return low, high


class Fields:
    """Sequential reader over a request's text fields (msg id already removed)."""

    def __init__(self, values: list[str]) -> None:
        self._values = values
        self._pos = 0

    def __len__(self) -> int:
        return len(self._values)

    def str(self) -> str:
        if self._pos >= len(self._values):
            raise WireError("request has too few fields")
        value = self._values[self._pos]
        self._pos += 1
        return value

    def int(self, default: int = 0) -> int:
        text = self.str()
        if text == "":
            return default
        try:
            return int(text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError as exc:
                raise WireError(f"not an integer: {text!r}") from exc
            if not as_float.is_integer():
                raise WireError(f"not an integer: {text!r}") from None
            return int(as_float)

    def float(self) -> float | None:
        """A double; ``None`` when unset (empty or the UNSET_DOUBLE literal)."""
        text = self.str()
        if text == "":
            return None
        try:
            value = float(text)
        except ValueError as exc:
            raise WireError(f"not a number: {text!r}") from exc
        if value >= UNSET_DOUBLE or math.isnan(value):
            return None
        return value

    def decimal(self) -> Decimal | None:
        text = self.str()
        if text == "" or text in ("2147483647", "9223372036854775807"):
            return None
        try:
            value = Decimal(text)
        except ArithmeticError as exc:
            raise WireError(f"not a decimal: {text!r}") from exc
        if not value.is_finite() or value >= Decimal(UNSET_DOUBLE):
            return None
        return value

    def bool(self) -> bool:
        return self.int() != 0

    def skip(self, count: int = 1) -> None:
        for _ in range(count):
            self.str()


# ----------------------------------------------------------------------------- contracts


@dataclass(frozen=True, slots=True)
class ContractSpec:
    """What the simulator knows about one tradable stock."""

    con_id: int
    symbol: str
    primary_exchange: str
    currency: str = "USD"
    exchange: str = "SMART"
    sec_type: str = "STK"
    local_symbol: str = ""
    trading_class: str = ""
    long_name: str = ""
    min_tick: float = 0.01
    isin: str = ""
    stock_type: str = "COMMON"
    time_zone_id: str = "US/Eastern"

    @property
    def local(self) -> str:
        return self.local_symbol or self.symbol

    @property
    def instrument_id(self) -> str:
        return f"{self.symbol}.{self.primary_exchange}"


def _contract_short(c: ContractSpec) -> list[Any]:
    """conId, symbol, secType, ltd, strike, right, multiplier, exchange, currency, localSymbol, tradingClass."""
    return [c.con_id, c.symbol, c.sec_type, "", 0.0, "", "", c.exchange, c.currency, c.local, c.trading_class]


# ----------------------------------------------------------------------------- encoders


def next_valid_id(order_id: int) -> bytes:
    return frame(IN.NEXT_VALID_ID, 1, order_id)


def managed_accounts(accounts: Iterable[str]) -> bytes:
    return frame(IN.MANAGED_ACCTS, 1, ",".join(accounts))


def error(req_id: int, code: int, text: str, time_ms: int, advanced_json: str = "") -> bytes:
    return frame(IN.ERR_MSG, req_id, code, text, advanced_json, time_ms)


def current_time(epoch_seconds: int) -> bytes:
    return frame(IN.CURRENT_TIME, 1, epoch_seconds)


def market_data_type(req_id: int, data_type: int) -> bytes:
    return frame(IN.MARKET_DATA_TYPE, 1, req_id, data_type)


def account_summary(req_id: int, account: str, tag: str, value: str, currency: str) -> bytes:
    return frame(IN.ACCOUNT_SUMMARY, 1, req_id, account, tag, value, currency)


def account_summary_end(req_id: int) -> bytes:
    return frame(IN.ACCOUNT_SUMMARY_END, 1, req_id)


def contract_data(req_id: int, c: ContractSpec) -> bytes:
    sec_ids: list[Any] = [1, "ISIN", c.isin] if c.isin else [0]
    return frame(
        IN.CONTRACT_DATA,
        req_id,
        c.symbol,
        c.sec_type,
        "",  # lastTradeDateOrContractMonth
        "",  # lastTradeDate
        0.0,  # strike
        "",  # right
        c.exchange,
        c.currency,
        c.local,
        c.trading_class or "NMS",  # marketName
        c.trading_class,
        c.con_id,
        c.min_tick,
        "",  # multiplier
        "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AVGCOST,BASKET,DAY,GTC,LMT,MKT,STP,STPLMT,TRAIL",
        f"SMART,{c.primary_exchange}",
        1,  # priceMagnifier
        0,  # underConId
        c.long_name or c.symbol,
        c.primary_exchange,
        "",  # contractMonth
        "",  # industry
        "",  # category
        "",  # subcategory
        c.time_zone_id,
        "",  # tradingHours
        "",  # liquidHours
        "",  # evRule
        "",  # evMultiplier
        *sec_ids,
        1,  # aggGroup
        "",  # underSymbol
        "",  # underSecType
        "26,26",  # marketRuleIds
        "",  # realExpirationDate
        c.stock_type,
        "0.0001",  # minSize
        "0.0001",  # sizeIncrement
        "100",  # suggestedSizeIncrement
        0,  # ineligibilityReasonCount
    )


def contract_data_end(req_id: int) -> bytes:
    return frame(IN.CONTRACT_DATA_END, 1, req_id)


def position(account: str, c: ContractSpec, quantity: Decimal, avg_cost: float) -> bytes:
    return frame(
        IN.POSITION_DATA,
        3,
        account,
        c.con_id,
        c.symbol,
        c.sec_type,
        "",
        0.0,
        "",
        "",
        c.exchange,
        c.currency,
        c.local,
        c.trading_class,
        quantity,
        avg_cost,
    )


def position_end() -> bytes:
    return frame(IN.POSITION_END, 1)


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


def open_order(o: OrderView, c: ContractSpec) -> bytes:
    """IN 5 openOrder at SV 200 (no version field), for a plain single-leg order."""
    values: list[Any] = [o.order_id, *_contract_short(c)]
    values += [o.action, o.quantity, o.order_type, o.limit_price, o.aux_price, o.tif]
    values += ["", o.account, "", 0, o.order_ref, o.client_id, o.perm_id]  # ocaGroup..permId
    values += [o.outside_rth, False, 0.0, ""]  # outsideRth, hidden, discretionaryAmt, goodAfterTime
    values += [""]  # sharesAllocation (deprecated)
    values += ["", "", ""]  # faGroup, faMethod, faPercentage
    values += [""]  # modelCode
    values += ["", "", None, ""]  # goodTillDate, rule80A, percentOffset, settlingFirm
    values += [0, "", -1]  # shortSaleSlot, designatedLocation, exemptCode
    values += [0]  # auctionStrategy
    values += [None, None, None]  # startingPrice, stockRefPrice, delta
    values += [None, None]  # stockRangeLower, stockRangeUpper
    values += [None, False, False, False, None]  # displaySize, blockOrder, sweepToFill, allOrNone, minQty
    values += [0, False, False, None]  # ocaType, eTradeOnly, firmQuoteOnly, nbboPriceCap
    values += [0, 0]  # parentId, triggerMethod
    values += [None, 0, "", None, False, 0]  # volatility..referencePriceType (no delta-neutral extras)
    values += [None, None]  # trailStopPrice, trailingPercent
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
    values += [False, o.status]  # whatIf, orderState.status
    values += [""] * 9  # margin before/change/after
    values += [None, None, None, ""]  # commission, min, max, commission currency
    values += [""]  # marginCurrency
    values += [None] * 9  # *OutsideRTH
    values += ["", "", 0, ""]  # suggestedSize, rejectReason, orderAllocationsCount, warningText
    values += [False, False]  # randomizeSize, randomizePrice
    values += [0]  # conditionsCount
    values += ["", None, None, None, None, None, None, 0]  # adjusted order params
    values += ["", "", ""]  # softDollarTier name, value, displayName
    values += [None]  # cashQty
    values += [False, False, False, False]  # dontUseAutoPriceForHedge, isOmsContainer, discUpToLimit, priceMgmtAlgo
    values += [None, None]  # duration, postToAts
    values += [False]  # autoCancelParent
    values += [None, None, None, None, None]  # minTradeQty .. midOffsetAtHalf
    values += ["", False, "", False]  # customerAccount, professionalCustomer, bondAccruedInterest, includeOvernight
    values += ["", None]  # extOperator, manualOrderIndicator
    values += [""]  # submitter
    values += [False]  # imbalanceOnly
    return frame(IN.OPEN_ORDER, *values)


def order_status(
    order_id: int,
    status: str,
    filled: Decimal,
    remaining: Decimal,
    avg_fill_price: float,
    perm_id: int,
    last_fill_price: float,
    client_id: int,
    why_held: str = "",
) -> bytes:
    """IN 3 orderStatus at SV 200 (no version field)."""
    return frame(
        IN.ORDER_STATUS,
        order_id,
        status,
        filled,
        remaining,
        avg_fill_price,
        perm_id,
        0,  # parentId
        last_fill_price,
        client_id,
        why_held,
        0.0,  # mktCapPrice
    )


def open_order_end() -> bytes:
    return frame(IN.OPEN_ORDER_END, 1)


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


def execution(req_id: int, e: ExecView, c: ContractSpec) -> bytes:
    """IN 11 execDetails at SV 200 (no version field); ``req_id`` -1 for live fills."""
    return frame(
        IN.EXECUTION_DATA,
        req_id,
        e.order_id,
        *_contract_short(c),
        e.exec_id,
        e.time,
        e.account,
        c.primary_exchange,  # execution exchange
        e.side,
        e.shares,
        e.price,
        e.perm_id,
        e.client_id,
        0,  # liquidation
        e.cum_qty,
        e.avg_price,
        e.order_ref,
        "",  # evRule
        "",  # evMultiplier
        "",  # modelCode
        1,  # lastLiquidity (1 = added)
        False,  # pendingPriceRevision
        "",  # submitter
    )


def execution_end(req_id: int) -> bytes:
    return frame(IN.EXECUTION_DATA_END, 1, req_id)


def commission_report(exec_id: str, commission: float, currency: str, realized_pnl: float | None) -> bytes:
    pnl = UNSET_DOUBLE if realized_pnl is None else realized_pnl
    return frame(IN.COMMISSION_REPORT, 1, exec_id, commission, currency, pnl, UNSET_DOUBLE, "")


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


def historical_data(req_id: int, bars: list[BarView]) -> bytes:
    """IN 17 at SV >= 196: reqId, count, then 8 fields per bar (no start/end)."""
    values: list[Any] = [req_id, len(bars)]
    for b in bars:
        values += [b.date, b.open, b.high, b.low, b.close, b.volume, b.wap, b.count]
    return frame(IN.HISTORICAL_DATA, *values)


def historical_data_end(req_id: int, start: str, end: str) -> bytes:
    return frame(IN.HISTORICAL_DATA_END, req_id, start, end)


def historical_data_update(req_id: int, b: BarView) -> bytes:
    """IN 90: note the order open, CLOSE, HIGH, LOW, wap, volume."""
    return frame(IN.HISTORICAL_DATA_UPDATE, req_id, b.count, b.date, b.open, b.close, b.high, b.low, b.wap, b.volume)


def real_time_bar(req_id: int, epoch: int, b: BarView) -> bytes:
    return frame(IN.REAL_TIME_BARS, 3, req_id, epoch, b.open, b.high, b.low, b.close, b.volume, b.wap, b.count)


def tick_price(req_id: int, tick_type: int, price: float, size: Decimal, attr_mask: int = 0) -> bytes:
    return frame(IN.TICK_PRICE, 6, req_id, tick_type, price, size, attr_mask)


def tick_size(req_id: int, tick_type: int, size: Decimal) -> bytes:
    return frame(IN.TICK_SIZE, 6, req_id, tick_type, size)


def tick_snapshot_end(req_id: int) -> bytes:
    return frame(IN.TICK_SNAPSHOT_END, 1, req_id)

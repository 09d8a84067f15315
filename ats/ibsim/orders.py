"""Order requests as the simulator reads them, and IB's checks on them.

:class:`PlaceRequest` is a placeOrder (text or protobuf, decoded by :mod:`ats.ibsim.incoming`);
:func:`validate` makes the checks IB makes on any placeOrder and raises :class:`Rejected` with IB's
error code and text (200 unknown contract, 321 account, 434 zero size, 387 order type, 110 price
increment, 201 otherwise).  What the accepted order then does is :mod:`ats.ibsim.state`'s part.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal

from ats.ibsim import book
from ats.ibsim.book import OrderTerms, SimOrder
from ats.ibsim.market import Instrument, Market


@dataclass(kw_only=True)
class PlaceRequest(OrderTerms):
    """A placeOrder as the simulator reads it (OUT 3, text or protobuf): the contract and the terms."""

    order_id: int
    con_id: int
    symbol: str
    sec_type: str
    exchange: str
    primary_exchange: str
    currency: str
    local_symbol: str
    transmit: bool = True
    trail_stop_price: float | None = None
    what_if: bool = False


class Rejected(Exception):
    """An order the simulator refuses; carries the IB error code and text."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def validate(req: PlaceRequest, market: Market, account: str, now: dt.datetime) -> tuple[Instrument, Decimal]:
    """The checks IB makes on any placeOrder, with IB's codes and texts (``now``: the market time)."""
    instrument = None
    if req.sec_type.upper() in ("STK", ""):
        instrument = market.find(
            con_id=req.con_id, symbol=req.symbol, local_symbol=req.local_symbol, currency=req.currency,
            primary_exchange=req.primary_exchange, sec_type=req.sec_type,
        )
    if instrument is None:
        raise Rejected(200, "No security definition has been found for the request")
    if req.account and req.account != account:
        raise Rejected(321, "Error validating request.-'bN' : cause - Invalid account code")
    if req.action not in ("BUY", "SELL"):
        raise Rejected(201, f"Order rejected - reason:Invalid action {req.action!r}")
    qty = req.quantity
    if qty is None or (qty.is_finite() and qty == 0):
        raise Rejected(434, "The order size cannot be zero")
    if not qty.is_finite() or qty < 0:
        raise Rejected(201, f"Order rejected - reason:Invalid order size {qty}")
    if req.order_type not in book.ORDER_TYPES:
        raise Rejected(387, "Unsupported order type for this exchange and security type.")
    if req.tif not in book.TIFS:
        raise Rejected(201, f"Order rejected - reason:Invalid time in force {req.tif!r}")
    if req.order_type in book.LIMIT_TYPES:
        check_price(req.limit_price, instrument, "limit price")
    if req.order_type in ("STP", "STP LMT"):
        check_price(req.aux_price, instrument, "stop price")
    if req.order_type == "TRAIL":
        amount, percent = req.aux_price or 0.0, req.trailing_percent or 0.0
        if not (math.isfinite(amount) and math.isfinite(percent)) or (amount <= 0) == (percent <= 0):
            raise Rejected(201, "Order rejected - reason:A trailing stop order needs either a trailing "
                                "amount (auxPrice) or a trailing percent, and not both")
    if req.tif == "OPG" and req.order_type not in ("MKT", "LMT"):
        raise Rejected(201, f"Order rejected - reason:Time in force OPG is not valid for {req.order_type} orders")
    if req.tif in ("IOC", "FOK") and (req.order_type in book.STOP_TYPES or req.order_type in book.AUCTION_TYPES):
        raise Rejected(201, f"Order rejected - reason:Time in force {req.tif} is not valid for "
                            f"{req.order_type} orders")
    if req.tif == "GTD":
        good_till(req.good_till_date, now)
    return instrument, qty

def check_price(price: float | None, instrument: Instrument, what: str) -> None:
    if price is None or not math.isfinite(price) or price <= 0:
        raise Rejected(201, f"Order rejected - reason:The order needs a positive {what}")
    ticks = price / instrument.contract.min_tick
    if abs(ticks - round(ticks)) > 1e-6:
        raise Rejected(110, "The price does not conform to the minimum price variation for this contract.")

def good_till(text: str, now: dt.datetime) -> dt.datetime:
    """The time a GTD order's ``goodTillDate`` names, refused if unreadable or not after ``now``."""
    try:
        moment = book.parse_good_till(text)
    except ValueError:
        raise Rejected(201, f"Order rejected - reason:Invalid good till date {text!r}: expected "
                            "YYYYMMDD HH:MM:SS [time zone]") from None
    if moment <= now:
        raise Rejected(201, f"Order rejected - reason:Good till date {text} is in the past")
    return moment


def ledger_result(order: SimOrder) -> str:
    """The ledger's word for what became of a new order by the end of its request."""
    if not order.transmitted:
        return "held (not transmitted)"
    if order.status == "Cancelled" and order.filled:
        return "partially filled, rest cancelled"
    return {"Filled": "filled", "Cancelled": "cancelled", "Inactive": "inactive"}.get(order.status, "accepted")

"""The simulator's order book: the orders it holds and when the replayed price path fills them.

An order is matched against the intraday path of the day's bar (:meth:`DailyBar.price_at`:
open → nearer extreme → other extreme → close, linear in thirds of the session), from the point
it became active (placed, transmitted, or released by its parent's fill) on:

=============  =================================================================================
``MKT``        fills at once at the last price (``OPG``: at the next open)
``LMT``        fills where the path reaches the limit (at the limit, or at a better price the path
               already stood at when the order became active, e.g. an opening gap)
``STP``        ``PreSubmitted`` until the path reaches ``auxPrice``, then a market order: fills at
               the stop price, or at the gap price when the path jumped through it
``STP LMT``    as ``STP``, then a limit order at ``lmtPrice`` from the trigger point on
``TRAIL``      a stop that follows the best price since it became active by ``auxPrice`` (an
               amount) or ``trailingPercent``; ``trailStopPrice`` is the starting stop
``MOC``        fills at the close of the first session that closes after it was placed
``LOC``        as ``MOC`` if the close is at or better than the limit, else cancelled at the close
=============  =================================================================================

``OPG`` (market/limit on open) fills at the next open, or is cancelled there when the open is
worse than its limit; ``GTD`` orders are cancelled when the market clock passes
``goodTillDate``.  :func:`next_event` answers, for one working order and one stretch of the
path, the first thing that happens to it; the state applies the earliest event of all orders
of the instrument and asks again, so fills, triggers, bracket releases and OCA cancels happen in
the order the path makes them happen.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import pairwise
from typing import NamedTuple
from zoneinfo import ZoneInfo

from ats.ibsim import outgoing
from ats.ibsim.market import SESSION_SECONDS, DailyBar, Instrument, Position, session_epoch

ORDER_TYPES = ("MKT", "LMT", "STP", "STP LMT", "TRAIL", "MOC", "LOC")
TIFS = ("DAY", "GTC", "IOC", "FOK", "OPG", "GTD")
STOP_TYPES = ("STP", "STP LMT", "TRAIL")
AUCTION_TYPES = ("MOC", "LOC")
LIMIT_TYPES = ("LMT", "STP LMT", "LOC")
# The size quoted at the touch (the bid/ask size reqMktData shows): what an IOC or FOK order
# can take "now"; other orders fill in full (the replay has no depth).
TOUCH_SIZE = Decimal(100)
_EPS = 1e-9
_NEW_YORK = ZoneInfo("America/New_York")


@dataclass(kw_only=True)
class OrderTerms:
    """What a client asks of an order: the placeOrder fields the simulator acts on."""

    action: str
    quantity: Decimal | None
    order_type: str
    limit_price: float | None
    aux_price: float | None
    tif: str
    account: str
    order_ref: str
    outside_rth: bool
    parent_id: int = 0
    oca_group: str = ""
    oca_type: int = 0
    good_till_date: str = ""
    trailing_percent: float | None = None


@dataclass(kw_only=True)
class SimOrder(OrderTerms):
    """An order the simulator accepted (``transmitted`` False: held as IB holds an order placed
    with ``transmit=False``, status ``Inactive``, until it or a later child of its bracket is
    transmitted)."""

    order_id: int
    client_id: int
    perm_id: int
    instrument: Instrument
    quantity: Decimal
    placed_at: Position
    expires_after_day: int
    good_till: dt.datetime | None = None
    trail_stop: float | None = None
    transmitted: bool = True
    triggered: bool = False
    active_from: Position = field(default=Position(0, 0.0))
    status: str = "Submitted"
    filled: Decimal = Decimal(0)
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    @property
    def is_open(self) -> bool:
        """Working, held, or not yet transmitted: an order IB lists as open."""
        return self.status in ("PreSubmitted", "Submitted") or (self.status == "Inactive" and not self.transmitted)

    @property
    def is_stop(self) -> bool:
        return self.order_type in STOP_TYPES and not self.triggered

    @property
    def auction(self) -> bool:
        """Waits for an auction: the close (MOC/LOC) or the open (OPG)."""
        return self.order_type in AUCTION_TYPES or self.tif == "OPG"

    def view(self, what_if: outgoing.OrderView | None = None) -> outgoing.OrderView:
        return outgoing.OrderView(
            order_id=self.order_id, client_id=self.client_id, perm_id=self.perm_id, action=self.action,
            quantity=self.quantity, order_type=self.order_type,
            limit_price=self.limit_price if self.order_type in LIMIT_TYPES else None,
            aux_price=self.aux_price if self.order_type in STOP_TYPES else None,
            tif=self.tif, account=self.account, order_ref=self.order_ref, status=self.status,
            outside_rth=self.outside_rth, parent_id=self.parent_id, oca_group=self.oca_group,
            oca_type=self.oca_type, good_till_date=self.good_till_date,
            trail_stop_price=self.trail_stop if self.order_type == "TRAIL" else None,
            trailing_percent=self.trailing_percent if self.order_type == "TRAIL" else None,
            transmit=self.transmitted,
        )


class Event(NamedTuple):
    """What the path does to an order: ``fill`` (at ``price``), ``trigger`` (a stop reached),
    ``expire`` (GTD passed) or ``miss`` (an auction it did not take part in)."""

    fraction: float
    kind: str
    price: float


_EVENT_RANK = {"fill": 0, "trigger": 0, "miss": 1, "expire": 2}


def event_key(event: Event, order: SimOrder) -> tuple[float, int, int]:
    """Earliest first; at one instant fills before misses and expiries, then by order id."""
    return event.fraction, _EVENT_RANK[event.kind], order.order_id


# ----------------------------------------------------------------------------- prices

def marketable(order: SimOrder, price: float) -> bool:
    """Would a limit order (or an order without a limit: always) trade at ``price``?"""
    if order.order_type not in LIMIT_TYPES:
        return True
    assert order.limit_price is not None
    if order.action == "BUY":
        return price <= order.limit_price + _EPS
    return price >= order.limit_price - _EPS


def stop_level(order: SimOrder) -> float:
    """The price that triggers a stop order now."""
    if order.order_type == "TRAIL":
        assert order.trail_stop is not None
        return order.trail_stop
    assert order.aux_price is not None
    return order.aux_price


def stop_reached(order: SimOrder, price: float) -> bool:
    level = stop_level(order)
    return price >= level - _EPS if order.action == "BUY" else price <= level + _EPS


def trail_amount(order: SimOrder, price: float) -> float:
    """The trailing distance at ``price``: ``auxPrice``, or ``trailingPercent`` of the price."""
    if order.aux_price is not None and order.aux_price > 0:
        return order.aux_price
    assert order.trailing_percent is not None
    return price * order.trailing_percent / 100.0


def initial_trail_stop(order: SimOrder, last: float) -> float:
    """``trailStopPrice`` if the client gave one, else the last price moved away by the trail."""
    amount = trail_amount(order, last)
    return round(last - amount if order.action == "SELL" else last + amount, 2)


def limit_price_for_funds(order: SimOrder, last: float) -> float:
    """The price a BUY may cost at most (for the cash check and the cash held back)."""
    if order.order_type in LIMIT_TYPES and order.limit_price is not None:
        return order.limit_price
    if order.order_type == "STP" and order.aux_price is not None:
        return max(order.aux_price, last)
    if order.order_type == "TRAIL" and order.trail_stop is not None:
        return max(order.trail_stop, last)
    return last


def parse_good_till(text: str) -> dt.datetime:
    """``goodTillDate``: ``YYYYMMDD HH:MM:SS [zone]`` (no zone: US/Eastern, the exchange's) or
    ``YYYYMMDD-HH:MM:SS`` (UTC); raises ValueError."""
    text = text.strip()
    if len(text) >= 17 and text[8] == "-":
        return dt.datetime.strptime(text[:17], "%Y%m%d-%H:%M:%S").replace(tzinfo=dt.UTC)
    stamp, _, zone_name = text[:17], text[17:18], text[18:].strip()
    moment = dt.datetime.strptime(stamp, "%Y%m%d %H:%M:%S")
    if not zone_name:
        zone: dt.tzinfo = _NEW_YORK
    elif zone_name.upper() in ("UTC", "GMT"):
        zone = dt.UTC
    else:
        try:
            zone = ZoneInfo(zone_name)
        except Exception as exc:  # noqa: BLE001 - ZoneInfo raises several kinds
            raise ValueError(f"unknown time zone {zone_name!r}") from exc
    return moment.replace(tzinfo=zone)


def market_time(day: dt.date, fraction: float) -> dt.datetime:
    """The market clock at ``fraction`` of ``day``'s session, in UTC."""
    return dt.datetime.fromtimestamp(session_epoch(day, fraction), dt.UTC)


def fraction_of(day: dt.date, moment: dt.datetime) -> float:
    """Where ``moment`` falls in ``day``'s session (unclamped: < 0 before the open, > 1 after)."""
    return (moment.timestamp() - session_epoch(day, 0.0)) / SESSION_SECONDS


# ----------------------------------------------------------------------------- the path

def path_points(bar: DailyBar, start: float, end: float) -> list[tuple[float, float]]:
    """The vertices (fraction, price) of the intraday path from ``start`` to ``end``, in time order."""
    points = [(start, bar.price_at(start))]
    points += [(k / 3, bar.price_at(k / 3)) for k in (1, 2) if start < k / 3 < end]
    if end > start:
        points.append((end, bar.price_at(end)))
    return points


def first_reach(points: list[tuple[float, float]], level: float, up: bool) -> tuple[float, float] | None:
    """The first (fraction, price) where the path stands at or beyond ``level`` (above it when
    ``up``).  If it already does at its first point, that point's price (a gap through the
    level trades at the gap price); else the crossing, at ``level``."""
    f0, p0 = points[0]
    if (p0 >= level - _EPS) if up else (p0 <= level + _EPS):
        return f0, p0
    for (fa, pa), (fb, pb) in pairwise(points):
        if (pb >= level - _EPS) if up else (pb <= level + _EPS):
            share = 1.0 if pb == pa else min(max((level - pa) / (pb - pa), 0.0), 1.0)
            return fa + (fb - fa) * share, level
    return None


def trail_walk(order: SimOrder, points: list[tuple[float, float]]) -> tuple[tuple[float, float] | None, float]:
    """Walk a trailing stop along the path: (trigger fraction and price or None, the stop after)."""
    assert order.trail_stop is not None
    stop = order.trail_stop
    sell = order.action == "SELL"
    f0, p0 = points[0]
    if (p0 <= stop + _EPS) if sell else (p0 >= stop - _EPS):
        return (f0, p0), stop
    for (fa, pa), (fb, pb) in pairwise(points):
        favourable = pb > pa if sell else pb < pa
        if favourable:
            # The stop follows the price: it never reaches it while the price moves this way.
            follow = pb - trail_amount(order, pb) if sell else pb + trail_amount(order, pb)
            stop = max(stop, follow) if sell else min(stop, follow)
        elif (pb <= stop + _EPS) if sell else (pb >= stop - _EPS):
            share = 1.0 if pb == pa else min(max((stop - pa) / (pb - pa), 0.0), 1.0)
            return (fa + (fb - fa) * share, stop), stop
    return None, round(stop, 2)


def next_event(order: SimOrder, bar: DailyBar, day: int, date: dt.date, f0: float, f1: float,
               opening: bool) -> Event | None:
    """The first thing the path of ``day`` between ``f0`` and ``f1`` does to a working order.

    ``opening``: the stretch starts at the day's open (the opening auction happens in it).
    """
    start, at_open = f0, opening
    if order.active_from.day == day and order.active_from.fraction > f0:
        start, at_open = order.active_from.fraction, False
    elif order.active_from.day > day:
        return None
    expiry = _expiry_event(order, date, start, f1)
    event = _trade_event(order, bar, day, start, f1, at_open)
    if event is None or (expiry is not None and event_key(expiry, order) < event_key(event, order)):
        return expiry
    return event


def _expiry_event(order: SimOrder, date: dt.date, start: float, f1: float) -> Event | None:
    if order.tif != "GTD" or order.good_till is None:
        return None
    at = fraction_of(date, order.good_till)
    if at >= f1:
        return None
    return Event(max(at, start), "expire", 0.0)


def _trade_event(order: SimOrder, bar: DailyBar, day: int, start: float, f1: float, at_open: bool) -> Event | None:
    if order.tif == "OPG":
        # The opening auction of a session that opened after the order arrived.
        if not at_open or order.active_from >= Position(day, 0.0):
            return None
        return Event(0.0, "fill" if marketable(order, bar.open) else "miss", bar.open)
    if order.order_type in AUCTION_TYPES:
        if f1 < 1.0 or order.active_from >= Position(day, 1.0):
            return None
        return Event(1.0, "fill" if marketable(order, bar.close) else "miss", bar.close)
    if start >= f1 and not at_open:
        return None
    points = path_points(bar, start, f1)
    if order.is_stop:
        if order.order_type == "TRAIL":
            hit, _stop = trail_walk(order, points)
        else:
            hit = first_reach(points, stop_level(order), up=order.action == "BUY")
        return None if hit is None else Event(hit[0], "trigger", hit[1])
    if order.order_type in LIMIT_TYPES:
        assert order.limit_price is not None
        hit = first_reach(points, order.limit_price, up=order.action == "SELL")
        return None if hit is None else Event(hit[0], "fill", hit[1])
    return Event(start, "fill", points[0][1])  # a market order released mid-path

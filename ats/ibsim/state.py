"""The simulated account's orders: placed, modified, funded, filled and cancelled, across TCP sessions.

Everything a restarted client must see again lives in :class:`GatewayState`, not in a socket
session: open orders (with their permIds), and through its :class:`~ats.ibsim.account.CashAccount`
executions with their commission reports, positions and cash.  Orders are handled as IB handles
them (order types, time in force, brackets, OCA groups, what-if, per-client ids and IB's reject
codes, see :mod:`ats.ibsim.orders`); a cash account's funds: a BUY that costs more than the
available cash, or a SELL of more than the position, is rejected with error 201.  When the
replayed price path fills them is :mod:`ats.ibsim.book`'s part.  Executions carry the market
clock's time (the replayed day and time of day), as the bars do.

Methods run on the server's event loop thread and return :class:`Outbound` messages, i.e.
``(client_id, message)`` pairs the server delivers to the sessions of that client id.  Every
order request is also written to the :class:`~ats.ibsim.ledger.OrderLedger`, readable from other
threads.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from ats.ibsim import book, outgoing
from ats.ibsim.account import CashAccount, PositionState, commission_for
from ats.ibsim.book import SimOrder
from ats.ibsim.ledger import OrderLedger
from ats.ibsim.market import Instrument, Market, Position
from ats.ibsim.orders import PlaceRequest, Rejected, good_till, ledger_result, validate

__all__ = ["GatewayState", "Outbound"]


log = logging.getLogger("ats.ibsim")

class Outbound(NamedTuple):
    """One message for the sessions of ``client_id``."""

    client_id: int
    data: outgoing.OutMsg


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _millis() -> int:
    return int(_now().timestamp() * 1000)



class GatewayState:
    """Orders, permIds and order ids; the cash account and the order ledger they act on."""

    def __init__(
        self,
        market: Market,
        account: str,
        cash: float,
        last_price: Callable[[Instrument], float],
        position: Callable[[], Position],
        ledger_path: Path | None = None,
        perm_id_base: int = 900_000,
    ) -> None:
        self.market = market
        self.cash_account = CashAccount(market, account, cash, last_price)
        self.order_ledger = OrderLedger(ledger_path)
        self._last_price = last_price
        self._position = position
        self.orders: dict[tuple[int, int], SimOrder] = {}
        self._next_perm_id = perm_id_base + 1
        self.max_order_id = 0  # the highest order id any client used (nextValidId follows it)
        self._max_id_by_client: dict[int, int] = {}
        self.holding_fills = False  # fault: accepted orders stay Submitted until release_fills()

    # ------------------------------------------------------------------ ids

    def next_valid_id(self) -> int:
        return self.max_order_id + 1

    def _new_perm_id(self) -> int:
        perm_id = self._next_perm_id
        self._next_perm_id += 1
        return perm_id

    # ------------------------------------------------------------------ placing

    def place(self, client_id: int, req: PlaceRequest) -> list[Outbound]:
        """Handle OUT 3: accept (hold, work or fill), modify, answer a what-if, or reject."""
        at = self._position()
        entry: dict[str, Any] = {
            "kind": "what_if" if req.what_if else "place", "time": _now().isoformat(),
            "market_time": self._market_time(at).isoformat(), "client_id": client_id, "order_id": req.order_id,
            "con_id": req.con_id, "symbol": req.symbol or req.local_symbol, "sec_type": req.sec_type,
            "exchange": req.exchange, "primary_exchange": req.primary_exchange, "action": req.action,
            "quantity": str(req.quantity) if req.quantity is not None else None,
            "order_type": req.order_type, "limit_price": req.limit_price, "aux_price": req.aux_price,
            "tif": req.tif, "account": req.account, "order_ref": req.order_ref,
        }
        entry.update({name: value for name, value in (
            ("parent_id", req.parent_id), ("oca_group", req.oca_group), ("oca_type", req.oca_type),
            ("good_till_date", req.good_till_date), ("trail_stop_price", req.trail_stop_price),
            ("trailing_percent", req.trailing_percent), ("outside_rth", req.outside_rth)) if value})
        if not req.transmit:
            entry["transmit"] = False
        out: list[Outbound] = []
        try:
            existing = self.orders.get((client_id, req.order_id))
            if req.what_if:
                out += self._what_if(client_id, req, entry)
            elif existing is not None:
                out += self._modify(existing, req)
                entry["result"] = "modified"
                entry["perm_id"] = existing.perm_id
            else:
                order = self._accept(client_id, req)
                entry["perm_id"] = order.perm_id
                out += self._warnings(order)
                out += self._announce(order)
                if order.transmitted:
                    out += self._go_live(order)
                entry["result"] = ledger_result(order)
        except Rejected as exc:
            entry["result"] = "rejected"
            entry["code"] = exc.code
            entry["reason"] = exc.text
            if (client_id, req.order_id) not in self.orders:
                self._use_id(client_id, req.order_id)
            out.append(Outbound(client_id, outgoing.error(req.order_id, exc.code, exc.text, _millis())))
            log.info("order %s from client %s rejected (%s): %s", req.order_id, client_id, exc.code, exc.text)
        self.order_ledger.record(entry)
        return out

    def _check_new_id(self, client_id: int, order_id: int) -> None:
        """IB's order ids grow per client: an id at or below one this client used is refused."""
        if order_id <= 0 or order_id <= self._max_id_by_client.get(client_id, 0):
            raise Rejected(103, "Duplicate order id")

    def _use_id(self, client_id: int, order_id: int) -> None:
        self._max_id_by_client[client_id] = max(self._max_id_by_client.get(client_id, 0), order_id)
        self.max_order_id = max(self.max_order_id, order_id)

    def _validate(self, req: PlaceRequest) -> tuple[Instrument, Decimal]:
        return validate(req, self.market, self.cash_account.account, self._market_now())

    def _parent_of(self, order: SimOrder) -> SimOrder | None:
        return self.orders.get((order.client_id, order.parent_id)) if order.parent_id else None

    def _children_of(self, order: SimOrder) -> list[SimOrder]:
        return [o for o in self.orders.values()
                if o.parent_id == order.order_id and o.client_id == order.client_id and o is not order]

    def _waiting_for_parent(self, order: SimOrder) -> bool:
        parent = self._parent_of(order)
        return parent is not None and parent.status != "Filled"

    def _working(self, order: SimOrder) -> bool:
        """Open, transmitted and not held by an unfilled parent: the path can fill it."""
        return order.is_open and order.transmitted and not self._waiting_for_parent(order)

    def _status_for(self, order: SimOrder) -> str:
        """IB's status for an open order: Inactive until transmitted, PreSubmitted while held by
        its parent or while a stop waits for its trigger, Submitted when working."""
        if not order.transmitted:
            return "Inactive"
        if self._waiting_for_parent(order) or order.is_stop:
            return "PreSubmitted"
        return "Submitted"

    def _accept(self, client_id: int, req: PlaceRequest) -> SimOrder:
        self._check_new_id(client_id, req.order_id)
        instrument, qty = self._validate(req)
        at = self._position()
        parent = self.orders.get((client_id, req.parent_id)) if req.parent_id else None
        if req.parent_id and (parent is None or not parent.is_open):
            raise Rejected(201, f"Order rejected - reason:Parent order {req.parent_id} is not an open order")
        # An OPG order waits for the next open; a DAY order placed after the close (fraction 1.0)
        # lives through the next session.
        expiry = at.day + 1 if req.tif == "OPG" or at.fraction >= 1.0 else at.day
        order = SimOrder(
            order_id=req.order_id, client_id=client_id, perm_id=0, instrument=instrument,
            action=req.action, quantity=qty, order_type=req.order_type,
            limit_price=req.limit_price if req.order_type in book.LIMIT_TYPES else None,
            aux_price=req.aux_price if req.order_type in book.STOP_TYPES and req.aux_price else None,
            tif=req.tif, account=req.account or self.cash_account.account, order_ref=req.order_ref,
            outside_rth=req.outside_rth, placed_at=at, expires_after_day=expiry, parent_id=req.parent_id,
            oca_group=req.oca_group, oca_type=req.oca_type,
            good_till_date=req.good_till_date if req.tif == "GTD" else "",
            good_till=good_till(req.good_till_date, self._market_now()) if req.tif == "GTD" else None,
            trailing_percent=req.trailing_percent if req.order_type == "TRAIL" and not req.aux_price else None,
            trail_stop=req.trail_stop_price if req.order_type == "TRAIL" and req.trail_stop_price else None,
            transmitted=req.transmit, active_from=at,
        )
        if order.transmitted and not self._waiting_for_parent(order):
            self._arm(order)
            self._check_funds(order)
        order.perm_id = self._new_perm_id()
        order.status = self._status_for(order)
        self.orders[(client_id, order.order_id)] = order
        self._use_id(client_id, order.order_id)
        log.info(
            "order %s accepted from client %s: %s %s %s %s %s%s%s (permId %s, ref %s, %s)",
            order.order_id, client_id, order.action, order.quantity, order.instrument.contract.instrument_id,
            order.order_type, order.tif, f" lmt {order.limit_price}" if order.limit_price else "",
            f" aux {order.aux_price}" if order.aux_price else "", order.perm_id, order.order_ref, order.status,
        )
        return order

    def _warnings(self, order: SimOrder) -> list[Outbound]:
        """IB's warnings for an accepted order: 2109 (outsideRth ignored), 399 (held to a later session)."""
        out: list[Outbound] = []
        at = order.placed_at
        if order.outside_rth and (order.order_type in ("MKT", "MOC", "LOC") or order.tif == "OPG"):
            out.append(Outbound(order.client_id, outgoing.error(
                order.order_id, 2109, "Order Event Warning: Attribute 'Outside Regular Trading Hours' is ignored "
                "based on the order type and destination. PlaceOrder is now being processed.", _millis())))
        later = (order.tif == "OPG" and at.fraction > 0.0) or (order.order_type in book.AUCTION_TYPES and at.fraction >= 1.0)
        if later:
            calendar = self.market.calendar
            next_day = calendar[at.day + 1] if at.day + 1 < len(calendar) else calendar[at.day] + dt.timedelta(days=1)
            c = order.instrument.contract
            out.append(Outbound(order.client_id, outgoing.error(
                order.order_id, 399,
                f"Order Message:\n{order.action} {order.quantity} {c.symbol} {c.exchange}\nWarning: your order will "
                f"not be placed at the exchange until {next_day:%Y-%m-%d} 09:30:00 US/Eastern", _millis())))
        return out

    def _arm(self, order: SimOrder, at: Position | None = None, price: float | None = None) -> None:
        """The order follows the path from ``at`` (default now) on; a trailing stop starts from
        ``price`` (default the last price) unless the client gave its trailStopPrice."""
        order.active_from = at or self._position()
        if order.order_type == "TRAIL" and order.trail_stop is None:
            last = price if price is not None else self._last_price(order.instrument)
            order.trail_stop = book.initial_trail_stop(order, last)

    def _go_live(self, order: SimOrder) -> list[Outbound]:
        """``order`` was transmitted: transmit its bracket's held parent and siblings with it (IB
        transmits a whole bracket with its last child), then let each work."""
        group = [order]
        parent = self._parent_of(order)
        if parent is not None:
            group = [o for o in (parent, *self._children_of(parent)) if o is order or not o.transmitted]
            group.sort(key=lambda o: o is not parent)
        out: list[Outbound] = []
        for member in group:
            was = member.status
            member.transmitted = True
            if member.is_open and not self._waiting_for_parent(member):
                try:
                    self._check_funds(member)
                except Rejected as exc:
                    out += self._inactivate(member, exc)
                    continue
            self._arm(member)
            member.status = self._status_for(member)
            if member.status != was:
                out += self._announce(member)
        for member in group:
            out += self._try_fill_now(member)
        return out

    def _inactivate(self, order: SimOrder, exc: Rejected) -> list[Outbound]:
        """IB rejects an order it had accepted: status Inactive and the reject's error."""
        order.status = "Inactive"
        order.transmitted = True
        log.info("order %s inactive: %s", order.order_id, exc.text)
        return [Outbound(order.client_id, outgoing.error(order.order_id, exc.code, exc.text, _millis())),
                *self._announce(order), *self._cancel_children(order)]

    def _what_if(self, client_id: int, req: PlaceRequest, entry: dict[str, Any]) -> list[Outbound]:
        """A what-if order: the margin and commission it would cost; nothing placed, nothing held."""
        self._check_new_id(client_id, req.order_id)
        instrument, qty = self._validate(req)
        self._use_id(client_id, req.order_id)
        at = self._position()
        order = SimOrder(
            order_id=req.order_id, client_id=client_id, perm_id=0, instrument=instrument, action=req.action,
            quantity=qty, order_type=req.order_type, limit_price=req.limit_price, aux_price=req.aux_price,
            tif=req.tif, account=req.account or self.cash_account.account, order_ref=req.order_ref, outside_rth=req.outside_rth,
            placed_at=at, expires_after_day=at.day, parent_id=req.parent_id, oca_group=req.oca_group,
            oca_type=req.oca_type, good_till_date=req.good_till_date, trailing_percent=req.trailing_percent,
            trail_stop=req.trail_stop_price, status="PreSubmitted",
        )
        last = self._last_price(instrument)
        price = book.limit_price_for_funds(order, last)
        commission = commission_for(qty, price)
        # A cash account: the initial and maintenance margin are the value of the positions.
        held = self.cash_account.positions.get(instrument.contract.con_id, PositionState()).quantity
        change = float(qty) * price if req.action == "BUY" else -float(min(qty, max(held, Decimal(0)))) * price
        gross = self.cash_account.position_value()
        net = float(self.cash_account.summary_values()["NetLiquidation"][0])
        margin = (f"{gross:.2f}", f"{change:.2f}", f"{gross + change:.2f}")
        equity = (f"{net:.2f}", f"{-commission:.2f}", f"{net - commission:.2f}")
        warning = ""
        try:
            self._check_funds(order)
        except Rejected as exc:
            warning = exc.text.removeprefix("Order rejected - reason:")
        view = dataclasses.replace(order.view(), what_if=True, init_margin=margin, maint_margin=margin,
                                   equity_with_loan=equity, commission=commission, warning_text=warning)
        entry["result"] = "what-if answered; nothing placed"
        entry.update(init_margin=margin, equity_with_loan=equity, commission=commission)
        if warning:
            entry["warning"] = warning
        log.info("what-if order %s from client %s: margin change %s, commission %.2f (not placed)",
                 req.order_id, client_id, margin[1], commission)
        return [Outbound(client_id, outgoing.open_order(view, instrument.contract))]

    def _modify(self, order: SimOrder, req: PlaceRequest) -> list[Outbound]:
        if order.status == "Filled":
            raise Rejected(104, "Can't modify a filled order.")
        if not order.is_open:
            raise Rejected(103, "Duplicate order id")
        instrument, qty = self._validate(req)
        if instrument is not order.instrument or req.action != order.action or req.order_type != order.order_type:
            raise Rejected(105, "Order being modified does not match original order.")
        if qty < order.filled:
            raise Rejected(201, "Order rejected - reason:The new quantity is below the filled quantity")
        saved = dict(vars(order))
        order.quantity, order.tif, order.order_ref = qty, req.tif, req.order_ref or order.order_ref
        order.limit_price = req.limit_price if order.order_type in book.LIMIT_TYPES else None
        order.aux_price = req.aux_price if order.order_type in book.STOP_TYPES and req.aux_price else None
        order.outside_rth = req.outside_rth
        if order.order_type == "TRAIL":
            order.trailing_percent = req.trailing_percent if not req.aux_price else None
            if req.trail_stop_price:
                order.trail_stop = req.trail_stop_price
        if req.tif == "GTD":
            order.good_till, order.good_till_date = good_till(req.good_till_date, self._market_now()), req.good_till_date
        if self._working(order):
            try:
                self._check_funds(order)
            except Rejected:
                vars(order).update(saved)
                raise
        log.info("order %s modified: qty %s lmt %s aux %s tif %s", order.order_id, qty, order.limit_price,
                 order.aux_price, order.tif)
        if req.transmit and not order.transmitted:
            return self._announce(order) + self._go_live(order)
        return self._announce(order) + self._try_fill_now(order)

    def _announce(self, order: SimOrder) -> list[Outbound]:
        c = order.instrument.contract
        return [
            Outbound(order.client_id, outgoing.open_order(order.view(), c)),
            Outbound(order.client_id, self._status_msg(order)),
        ]

    def _status_msg(self, order: SimOrder) -> outgoing.OutMsg:
        return outgoing.order_status(
            order.order_id, order.status, order.filled, order.remaining, order.avg_fill_price,
            order.perm_id, order.last_fill_price, order.client_id, parent_id=order.parent_id,
        )

    # ------------------------------------------------------------------ funds

    def _group(self, order: SimOrder) -> tuple[Any, ...]:
        """Orders of one OCA group (or the children of one bracket) can fill only once between them."""
        if order.oca_group:
            return ("oca", order.account, order.oca_group)
        if order.parent_id:
            return ("bracket", order.client_id, order.parent_id)
        return ("order", order.client_id, order.order_id)

    def _committed(self, action: str, instrument: Instrument | None, skip: tuple[Any, ...] | None) -> dict[tuple[Any, ...], float]:
        """Per OCA group, the most the working orders of ``action`` can take: shares (SELL) or cash (BUY)."""
        groups: dict[tuple[Any, ...], float] = {}
        for o in self.orders.values():
            if o.action != action or not self._working(o) or (instrument is not None and o.instrument is not instrument):
                continue
            key = self._group(o)
            if key == skip:
                continue
            if action == "SELL":
                amount = float(o.remaining)
            else:
                price = book.limit_price_for_funds(o, self._last_price(o.instrument))
                amount = float(o.remaining) * price + commission_for(o.remaining, price)
            groups[key] = max(groups.get(key, 0.0), amount)
        return groups

    def reserved_cash(self) -> float:
        """Cash held back for working BUY orders (limit price × remaining, plus commission; once per OCA group)."""
        return round(sum(self._committed("BUY", None, None).values()), 2)

    def _check_funds(self, order: SimOrder) -> None:
        """A cash account: a BUY needs the cash not held back for other BUYs, a SELL the shares
        not promised to other SELLs.  Orders of ``order``'s own OCA group do not count."""
        skip = self._group(order)
        qty = order.remaining
        if order.action == "BUY":
            price = book.limit_price_for_funds(order, self._last_price(order.instrument))
            cost = float(qty) * price + commission_for(qty, price)
            available = round(self.cash_account.cash - sum(self._committed("BUY", None, skip).values()), 2)
            if cost > available + 1e-9:
                raise Rejected(
                    201,
                    f"Order rejected - reason:insufficient cash in cash account: order needs {cost:.2f} USD, "
                    f"available {available:.2f} USD",
                )
        else:
            held = self.cash_account.positions.get(order.instrument.contract.con_id, PositionState()).quantity
            pending = Decimal(str(sum(self._committed("SELL", order.instrument, skip).values())))
            if qty + pending > held:
                raise Rejected(
                    201,
                    f"Order rejected - reason:short sale not allowed in a cash account: selling {qty}, "
                    f"position {held}, already selling {pending.normalize()}",
                )

    # ------------------------------------------------------------------ filling

    def _market_time(self, at: Position) -> dt.datetime:
        return book.market_time(self.market.calendar[at.day], at.fraction)

    def _market_now(self) -> dt.datetime:
        return self._market_time(self._position())

    def _try_fill_now(self, order: SimOrder) -> list[Outbound]:
        """Work ``order`` at the price now: trigger a stop, fill what is marketable (IOC/FOK: at
        most the size at the touch, the rest cancelled)."""
        if self.holding_fills or not self._working(order):
            return []  # the hold_fills fault keeps it resting as accepted (see release_fills)
        if order.auction:
            return []  # waits for its auction
        at = self._position()
        last = self._last_price(order.instrument)
        out: list[Outbound] = []
        if order.is_stop:
            if order.order_type == "TRAIL" and order.trail_stop is None:
                self._arm(order)
            if not book.stop_reached(order, last):
                return out
            out += self._trigger(order, at)
        if book.marketable(order, last):
            qty = order.remaining
            if order.tif in ("IOC", "FOK"):
                qty = min(qty, book.TOUCH_SIZE) if order.tif == "IOC" or qty <= book.TOUCH_SIZE else Decimal(0)
            if qty > 0:
                out += self._fill(order, qty, last, at, now=True)
        if order.is_open and order.tif in ("IOC", "FOK"):
            out += self._cancel(order, f"{order.tif}: {order.remaining} not available at the touch")
        return out

    def _trigger(self, order: SimOrder, at: Position) -> list[Outbound]:
        order.triggered = True
        order.active_from = at
        order.status = self._status_for(order)
        log.info("order %s: %s triggered at %s", order.order_id, order.order_type, self._market_time(at))
        return [Outbound(order.client_id, self._status_msg(order))]

    def _fill(self, order: SimOrder, shares: Decimal, price: float, at: Position, now: bool) -> list[Outbound]:
        """Execute ``shares`` at ``price`` at market position ``at``; then the OCA group and the
        bracket children react (``now``: at the price now, else the path walk picks them up)."""
        price = round(price, 2)
        commission = commission_for(shares, price)
        realized = self.cash_account.settle(order, shares, price, commission)
        total_before = float(order.filled) * order.avg_fill_price
        order.filled += shares
        order.avg_fill_price = round((total_before + float(shares) * price) / float(order.filled), 6)
        order.last_fill_price = price
        if order.remaining <= 0:
            order.status = "Filled"
        fill = self.cash_account.record_fill(order, shares, price, self._market_time(at), commission, realized)
        log.info(
            "order %s filled: %s %s %s @ %.2f at %s (commission %.2f, cash %.2f)",
            order.order_id, order.action, shares, order.instrument.contract.instrument_id, price, fill.time,
            commission, self.cash_account.cash,
        )
        c = order.instrument.contract
        out = [
            Outbound(order.client_id, outgoing.execution(-1, fill.view(), c)),
            Outbound(order.client_id, outgoing.open_order(order.view(), c)),
            Outbound(order.client_id, self._status_msg(order)),
            Outbound(order.client_id, outgoing.commission_report(fill.exec_id, commission, c.currency, realized)),
        ]
        out += self._oca_fill(order, shares)
        if order.status == "Filled":
            out += self._release_children(order, at, price, now)
        return out

    def _oca_fill(self, order: SimOrder, shares: Decimal) -> list[Outbound]:
        """One member of an OCA group (or a bracket child) filled: ocaType 1 (and bracket
        siblings) cancel the others, ocaType 2/3 reduce them by the shares filled."""
        key = self._group(order)
        if key[0] == "order":
            return []
        out: list[Outbound] = []
        for other in list(self.orders.values()):
            if other is order or not other.is_open or self._group(other) != key:
                continue
            if key[0] == "oca" and order.oca_type in (2, 3):
                other.quantity -= min(shares, other.remaining)
                if other.remaining > 0:
                    out += self._announce(other)
                    continue
            out += self._cancel(other, f"OCA group {order.oca_group or order.parent_id}: order {order.order_id} filled")
        return out

    def _release_children(self, parent: SimOrder, at: Position, price: float, now: bool) -> list[Outbound]:
        """The parent filled: its held children start working from this point of the path."""
        out: list[Outbound] = []
        for child in self._children_of(parent):
            if not child.is_open or not child.transmitted:
                continue
            try:
                self._check_funds(child)
            except Rejected as exc:
                out += self._inactivate(child, exc)
                continue
            self._arm(child, at, price)
            status = self._status_for(child)
            if status != child.status:
                child.status = status
                out += self._announce(child)
            if now:
                out += self._try_fill_now(child)
        return out

    def match_segment(self, instrument: Instrument, day: int, f0: float, f1: float, opening: bool) -> list[Outbound]:
        """Let the price path of ``day`` between ``f0`` and ``f1`` act on the working orders of
        ``instrument``, earliest event first (see :mod:`ats.ibsim.book`).

        ``opening``: the segment starts at the day's open (a jump from the previous close): the
        opening auction fills OPG orders, and an order the open already crossed fills at the open.
        """
        date = self.market.calendar[day]
        bar = instrument.bar_on(date)
        if bar is None or self.holding_fills:
            return []
        out: list[Outbound] = []
        while True:
            best: tuple[book.Event, SimOrder] | None = None
            for order in self.orders.values():
                if order.instrument is not instrument or not self._working(order):
                    continue
                event = book.next_event(order, bar, day, date, f0, f1, opening)
                if event is not None and (best is None or book.event_key(event, order) < book.event_key(*best)):
                    best = (event, order)
            if best is None:
                break
            out += self._apply(best[1], best[0], Position(day, best[0].fraction))
        for order in self.orders.values():
            if order.instrument is instrument and order.order_type == "TRAIL" and order.is_stop and self._working(order):
                start = order.active_from.fraction if order.active_from.day == day else f0
                if start < f1:
                    _hit, order.trail_stop = book.trail_walk(order, book.path_points(bar, max(start, f0), f1))
        return out

    def _apply(self, order: SimOrder, event: book.Event, at: Position) -> list[Outbound]:
        if event.kind == "expire":
            return self._cancel(order, f"good till date {order.good_till_date} passed", with_error=False)
        if event.kind == "miss":
            return self._cancel(order, "the auction price did not reach the limit")
        out: list[Outbound] = []
        if event.kind == "trigger":
            out += self._trigger(order, at)
            if order.order_type == "STP LMT":
                return out  # a limit order from here on: the walk goes on
        return out + self._fill(order, order.remaining, event.price, at, now=False)

    def release_fills(self) -> list[Outbound]:
        """End :attr:`holding_fills`: every open order fills now as if it had just arrived.

        Market orders fill at the last price, marketable limit orders at the last price; the
        others keep resting.  The messages go to the order's client id (dropped if it is gone:
        a restarted client learns of the fills through reconciliation).
        """
        self.holding_fills = False
        out: list[Outbound] = []
        for order in list(self.orders.values()):
            if order.is_open:
                out += self._try_fill_now(order)
        return out

    def expire_day_orders(self, completed_day: int) -> list[Outbound]:
        """Cancel DAY orders whose session ended with ``completed_day`` and GTD orders whose
        time passed by its close (those the path did not already expire)."""
        close = self._market_time(Position(completed_day, 1.0))
        out: list[Outbound] = []
        for order in list(self.orders.values()):
            if not order.is_open:
                continue
            if order.tif == "DAY" and order.expires_after_day <= completed_day:
                out += self._cancel(order, "day order expired", with_error=False)
            elif order.tif == "GTD" and order.good_till is not None and order.good_till < close:
                out += self._cancel(order, f"good till date {order.good_till_date} passed", with_error=False)
        return out

    # ------------------------------------------------------------------ cancelling

    def cancel(self, client_id: int, order_id: int, fields: dict[str, Any] | None = None) -> list[Outbound]:
        """Handle OUT 4: Cancelled + error 202, or error 10147/10148."""
        entry: dict[str, Any] = {
            "kind": "cancel", "time": _now().isoformat(),
            "market_time": self._market_time(self._position()).isoformat(), "client_id": client_id,
            "order_id": order_id, **(fields or {}),
        }
        order = self.orders.get((client_id, order_id))
        if order is None and client_id == 0:
            order = next((o for o in self.orders.values() if o.order_id == order_id), None)
        if order is None:
            entry["result"] = "unknown order"
            out = [Outbound(client_id, outgoing.error(
                order_id, 10147, f"OrderId {order_id} that needs to be cancelled is not found.", _millis()))]
        elif not order.is_open:
            entry["result"] = f"not cancellable: {order.status}"
            out = [Outbound(client_id, outgoing.error(
                order_id, 10148,
                f"OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {order.status}.",
                _millis()))]
        else:
            entry["result"] = "cancelled"
            entry["perm_id"] = order.perm_id
            entry["order_ref"] = order.order_ref
            out = self._cancel(order, "cancel requested")
        self.order_ledger.record(entry)
        return out

    def global_cancel(self, client_id: int) -> list[Outbound]:
        self.order_ledger.record({"kind": "global_cancel", "time": _now().isoformat(), "client_id": client_id,
                      "result": "cancelled"})
        out: list[Outbound] = []
        for order in list(self.orders.values()):
            if order.is_open:
                out += self._cancel(order, "global cancel")
        return out

    def _cancel(self, order: SimOrder, why: str, with_error: bool = True) -> list[Outbound]:
        order.status = "Cancelled"
        log.info("order %s cancelled (%s)", order.order_id, why)
        out = [Outbound(order.client_id, self._status_msg(order))]
        if with_error:
            out.append(Outbound(order.client_id, outgoing.error(order.order_id, 202, "Order Canceled - reason:", _millis())))
        return out + self._cancel_children(order)

    def _cancel_children(self, parent: SimOrder) -> list[Outbound]:
        """A parent that ends unfilled takes its held children with it."""
        if parent.filled:
            return []
        out: list[Outbound] = []
        for child in self._children_of(parent):
            if child.is_open:
                out += self._cancel(child, f"parent order {parent.order_id} {parent.status.lower()}")
        return out


    # ------------------------------------------------------------------ reconciliation

    def open_orders(self, client_id: int | None) -> list[outgoing.OutMsg]:
        """IN 5 + IN 3 per open order (of ``client_id``; ``None`` or 0: all), then IN 53."""
        out: list[outgoing.OutMsg] = []
        for order in self.orders.values():
            if order.is_open and (not client_id or order.client_id == client_id):
                out.append(outgoing.open_order(order.view(), order.instrument.contract))
                out.append(self._status_msg(order))
        out.append(outgoing.open_order_end())
        return out

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able summary: cash, positions, open orders, fills."""
        account = self.cash_account
        return {
            "account": account.account,
            "cash": account.cash,
            "net_liquidation": float(account.summary_values()["NetLiquidation"][0]),
            "positions": account.positions_snapshot(),
            "open_orders": [
                {"order_id": o.order_id, "client_id": o.client_id, "perm_id": o.perm_id, "action": o.action,
                 "quantity": str(o.quantity), "order_type": o.order_type, "limit_price": o.limit_price,
                 "tif": o.tif, "order_ref": o.order_ref, "instrument": o.instrument.contract.instrument_id,
                 "status": o.status, "aux_price": o.aux_price, "parent_id": o.parent_id, "oca_group": o.oca_group,
                 "trail_stop_price": o.trail_stop}
                for o in self.orders.values() if o.is_open
            ],
            "fills": [
                {"exec_id": f.exec_id, "order_id": f.order.order_id, "perm_id": f.order.perm_id,
                 "side": f.order.action, "shares": str(f.shares), "price": f.price,
                 "commission": f.commission, "order_ref": f.order.order_ref, "time": f.time.isoformat(),
                 "instrument": f.order.instrument.contract.instrument_id}
                for f in account.fills
            ],
        }


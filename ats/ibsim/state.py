"""Gateway state that outlives any TCP session: account, orders, executions, positions, ledger.

Everything a restarted client must see again lives here, not in a socket session: open orders
(with their permIds), executions with their commission reports, positions and cash.  The state
is a cash account: a BUY that costs more than the available cash, or a SELL of more than the
position, is rejected with error 201.

Methods run on the server's event loop thread and return :class:`Outbound` messages, i.e.
``(client_id, bytes)`` pairs the server delivers to the sessions of that client id.  The ledger
(every placeOrder/cancelOrder that reached the simulator) is also readable from other threads.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import threading
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, NamedTuple

from ats.ibsim import wire
from ats.ibsim.market import Instrument, Market, Position

log = logging.getLogger("ats.ibsim")

OPEN_STATUSES = ("PreSubmitted", "Submitted")
COMMISSION_PER_SHARE = 0.005
COMMISSION_MIN = 1.00
COMMISSION_MAX_RATE = 0.01
SUMMARY_TAGS = (
    "AccountType", "NetLiquidation", "TotalCashValue", "SettledCash", "AccruedCash", "BuyingPower",
    "EquityWithLoanValue", "PreviousDayEquityWithLoanValue", "GrossPositionValue", "ReqTEquity",
    "ReqTMargin", "SMA", "InitMarginReq", "MaintMarginReq", "AvailableFunds", "ExcessLiquidity",
    "Cushion", "FullInitMarginReq", "FullMaintMarginReq", "FullAvailableFunds", "FullExcessLiquidity",
    "LookAheadNextChange", "LookAheadInitMarginReq", "LookAheadMaintMarginReq",
    "LookAheadAvailableFunds", "LookAheadExcessLiquidity", "HighestSeverity", "DayTradesRemaining",
    "Leverage",
)


class Outbound(NamedTuple):
    """One message for the sessions of ``client_id``."""

    client_id: int
    data: bytes


def commission_for(shares: Decimal, price: float) -> float:
    """IB fixed tier: USD 0.005 per share, at least 1.00, at most 1 % of the trade value."""
    value = float(shares) * price
    return round(min(max(float(shares) * COMMISSION_PER_SHARE, COMMISSION_MIN), value * COMMISSION_MAX_RATE), 2)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ib_time(moment: dt.datetime) -> str:
    return moment.strftime("%Y%m%d %H:%M:%S") + " UTC"


def _millis() -> int:
    return int(_now().timestamp() * 1000)


@dataclass
class SimOrder:
    """An order the simulator accepted."""

    order_id: int
    client_id: int
    perm_id: int
    instrument: Instrument
    action: str
    quantity: Decimal
    order_type: str
    limit_price: float | None
    tif: str
    account: str
    order_ref: str
    outside_rth: bool
    placed_at: Position
    expires_after_day: int
    status: str = "Submitted"
    filled: Decimal = Decimal(0)
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def view(self) -> wire.OrderView:
        return wire.OrderView(
            order_id=self.order_id, client_id=self.client_id, perm_id=self.perm_id, action=self.action,
            quantity=self.quantity, order_type=self.order_type,
            limit_price=self.limit_price if self.order_type == "LMT" else None, aux_price=None,
            tif=self.tif, account=self.account, order_ref=self.order_ref, status=self.status,
            outside_rth=self.outside_rth,
        )


@dataclass
class SimFill:
    """One execution and its commission report."""

    exec_id: str
    order: SimOrder
    time: dt.datetime
    shares: Decimal
    price: float
    cum_qty: Decimal
    avg_price: float
    commission: float
    realized_pnl: float | None

    def view(self) -> wire.ExecView:
        o = self.order
        return wire.ExecView(
            exec_id=self.exec_id, order_id=o.order_id, client_id=o.client_id, perm_id=o.perm_id,
            time=_ib_time(self.time), account=o.account, side="BOT" if o.action == "BUY" else "SLD",
            shares=self.shares, price=self.price, cum_qty=self.cum_qty, avg_price=self.avg_price,
            order_ref=o.order_ref,
        )


@dataclass
class PositionState:
    quantity: Decimal = Decimal(0)
    avg_cost: float = 0.0  # per share, commissions included (as IB reports it)


@dataclass
class PlaceRequest:
    """The placeOrder fields the simulator uses (parsed from OUT 3)."""

    order_id: int
    con_id: int
    symbol: str
    sec_type: str
    exchange: str
    primary_exchange: str
    currency: str
    local_symbol: str
    action: str
    quantity: Decimal | None
    order_type: str
    limit_price: float | None
    aux_price: float | None
    tif: str
    account: str
    order_ref: str
    transmit: bool
    outside_rth: bool


class Rejected(Exception):
    """An order the simulator refuses; carries the IB error code and text."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class GatewayState:
    """Account, orders, executions, positions, permIds and the order ledger."""

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
        self.account = account
        self.cash = round(float(cash), 2)
        self.initial_cash = self.cash
        self._last_price = last_price
        self._position = position
        self.orders: dict[tuple[int, int], SimOrder] = {}
        self.fills: list[SimFill] = []
        self.positions: dict[int, PositionState] = {}
        self._next_perm_id = perm_id_base + 1
        self._next_exec = 1
        self.max_order_id = 0
        self._ledger: list[dict[str, Any]] = []
        self._ledger_lock = threading.Lock()
        self.ledger_path = ledger_path
        self.summary_dirty = False
        self.holding_fills = False  # fault: accepted orders stay Submitted until release_fills()

    # ------------------------------------------------------------------ ledger

    @property
    def ledger(self) -> list[dict[str, Any]]:
        """A copy of every order request that reached the simulator, oldest first."""
        with self._ledger_lock:
            return [dict(entry) for entry in self._ledger]

    def _record(self, entry: dict[str, Any]) -> None:
        with self._ledger_lock:
            entry["seq"] = len(self._ledger) + 1
            self._ledger.append(entry)
        if self.ledger_path is not None:
            try:
                with self.ledger_path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
            except OSError as exc:
                log.error("cannot append to ledger %s: %s", self.ledger_path, exc)

    # ------------------------------------------------------------------ ids

    def next_valid_id(self) -> int:
        return self.max_order_id + 1

    def _new_perm_id(self) -> int:
        perm_id = self._next_perm_id
        self._next_perm_id += 1
        return perm_id

    # ------------------------------------------------------------------ account values

    def position_value(self) -> float:
        total = 0.0
        for con_id, pos in self.positions.items():
            instrument = self._instrument_by_con_id(con_id)
            if instrument is not None and pos.quantity:
                total += float(pos.quantity) * self._last_price(instrument)
        return round(total, 2)

    def reserved_cash(self) -> float:
        """Cash held back for open BUY orders (limit price × remaining, plus commission)."""
        total = 0.0
        for order in self.orders.values():
            if order.is_open and order.action == "BUY":
                price = order.limit_price or self._last_price(order.instrument)
                total += float(order.remaining) * price + commission_for(order.remaining, price)
        return round(total, 2)

    def summary_values(self) -> dict[str, tuple[str, str]]:
        """tag → (value, currency) for every account summary tag the simulator reports."""
        cash = self.cash
        gross = self.position_value()
        net = round(cash + gross, 2)
        usd = {
            "NetLiquidation": net, "TotalCashValue": cash, "SettledCash": cash, "AccruedCash": 0.0,
            "BuyingPower": cash, "EquityWithLoanValue": net, "PreviousDayEquityWithLoanValue": net,
            "GrossPositionValue": gross, "ReqTEquity": net, "ReqTMargin": gross, "SMA": cash,
            "InitMarginReq": gross, "MaintMarginReq": gross, "AvailableFunds": cash,
            "ExcessLiquidity": cash, "FullInitMarginReq": gross, "FullMaintMarginReq": gross,
            "FullAvailableFunds": cash, "FullExcessLiquidity": cash, "LookAheadInitMarginReq": gross,
            "LookAheadMaintMarginReq": gross, "LookAheadAvailableFunds": cash,
            "LookAheadExcessLiquidity": cash,
        }
        values = {tag: (f"{value:.2f}", "USD") for tag, value in usd.items()}
        values["AccountType"] = ("INDIVIDUAL", "")
        values["Cushion"] = (f"{(cash / net) if net else 1.0:.6f}", "")
        values["LookAheadNextChange"] = ("0", "")
        values["HighestSeverity"] = ("0", "")
        values["DayTradesRemaining"] = ("-1", "")
        values["Leverage"] = (f"{(gross / net) if net else 0.0:.4f}", "")
        return values

    def summary_messages(self, req_id: int, tags: set[str] | None) -> list[bytes]:
        return [
            wire.account_summary(req_id, self.account, tag, value, currency)
            for tag, (value, currency) in self.summary_values().items()
            if tags is None or tag in tags
        ]

    # ------------------------------------------------------------------ placing

    def _instrument_by_con_id(self, con_id: int) -> Instrument | None:
        for instrument in self.market.instruments.values():
            if instrument.contract.con_id == con_id:
                return instrument
        return None

    def place(self, client_id: int, req: PlaceRequest) -> list[Outbound]:
        """Handle OUT 3: accept (and maybe fill), modify, or reject with error 201."""
        entry: dict[str, Any] = {
            "kind": "place", "time": _now().isoformat(), "client_id": client_id, "order_id": req.order_id,
            "con_id": req.con_id, "symbol": req.symbol or req.local_symbol, "sec_type": req.sec_type,
            "exchange": req.exchange, "primary_exchange": req.primary_exchange, "action": req.action,
            "quantity": str(req.quantity) if req.quantity is not None else None,
            "order_type": req.order_type, "limit_price": req.limit_price, "tif": req.tif,
            "account": req.account, "order_ref": req.order_ref,
        }
        out: list[Outbound] = []
        try:
            existing = self.orders.get((client_id, req.order_id))
            if existing is not None:
                out += self._modify(existing, req)
                entry["result"] = "modified"
                entry["perm_id"] = existing.perm_id
            else:
                order = self._accept(client_id, req)
                entry["result"] = "accepted"
                entry["perm_id"] = order.perm_id
                out += self._announce(order)
                out += self._try_fill_now(order)
                if order.status == "Filled":
                    entry["result"] = "filled"
        except Rejected as exc:
            entry["result"] = "rejected"
            entry["reason"] = exc.text
            self.max_order_id = max(self.max_order_id, req.order_id)
            out.append(Outbound(client_id, wire.error(req.order_id, exc.code, exc.text, _millis())))
            log.info("order %s from client %s rejected: %s", req.order_id, client_id, exc.text)
        self._record(entry)
        return out

    def _validate(self, req: PlaceRequest) -> tuple[Instrument, Decimal]:
        if req.sec_type.upper() not in ("STK", ""):
            raise Rejected(201, f"Order rejected - reason:security type {req.sec_type} is not supported")
        instrument = self.market.find(
            con_id=req.con_id, symbol=req.symbol, local_symbol=req.local_symbol, currency=req.currency,
            primary_exchange=req.primary_exchange, sec_type=req.sec_type,
        )
        if instrument is None:
            raise Rejected(201, "Order rejected - reason:No security definition has been found for the request")
        if req.account and req.account != self.account:
            raise Rejected(201, f"Order rejected - reason:account {req.account} is not managed by this gateway")
        if req.action not in ("BUY", "SELL"):
            raise Rejected(201, f"Order rejected - reason:invalid action {req.action!r}")
        qty = req.quantity
        if qty is None or not qty.is_finite() or qty <= 0:
            raise Rejected(201, f"Order rejected - reason:invalid quantity {req.quantity}")
        if req.order_type not in ("MKT", "LMT"):
            raise Rejected(201, f"Order rejected - reason:order type {req.order_type!r} is not supported")
        if req.tif not in ("DAY", "GTC", "IOC"):
            raise Rejected(201, f"Order rejected - reason:time in force {req.tif!r} is not supported")
        if req.order_type == "LMT" and (req.limit_price is None or not math.isfinite(req.limit_price)
                                        or req.limit_price <= 0):
            raise Rejected(201, "Order rejected - reason:a limit order needs a positive limit price")
        return instrument, qty

    def _check_funds(self, instrument: Instrument, action: str, qty: Decimal, limit: float | None,
                     ignore: SimOrder | None = None) -> None:
        if action == "BUY":
            price = self._last_price(instrument) if limit is None else limit
            if limit is None:
                price = max(price, self._last_price(instrument))
            cost = float(qty) * price + commission_for(qty, price)
            reserved = self.reserved_cash()
            if ignore is not None and ignore.is_open:
                p = ignore.limit_price or self._last_price(ignore.instrument)
                reserved -= float(ignore.remaining) * p + commission_for(ignore.remaining, p)
            available = round(self.cash - reserved, 2)
            if cost > available + 1e-9:
                raise Rejected(
                    201,
                    f"Order rejected - reason:insufficient cash in cash account: order needs {cost:.2f} USD, "
                    f"available {available:.2f} USD",
                )
        else:
            held = self.positions.get(instrument.contract.con_id, PositionState()).quantity
            pending = sum(
                (o.remaining for o in self.orders.values()
                 if o.is_open and o.action == "SELL" and o.instrument is instrument and o is not ignore),
                Decimal(0),
            )
            if qty + pending > held:
                raise Rejected(
                    201,
                    f"Order rejected - reason:short sale not allowed in a cash account: selling {qty}, "
                    f"position {held}, already selling {pending}",
                )

    def _accept(self, client_id: int, req: PlaceRequest) -> SimOrder:
        if req.order_id <= 0:
            raise Rejected(103, f"Duplicate order id {req.order_id}")
        instrument, qty = self._validate(req)
        self._check_funds(instrument, req.action, qty, req.limit_price if req.order_type == "LMT" else None)
        at = self._position()
        # A DAY order placed after the close (fraction 1.0) lives through the next session.
        expiry = at.day if at.fraction < 1.0 else at.day + 1
        order = SimOrder(
            order_id=req.order_id, client_id=client_id, perm_id=self._new_perm_id(), instrument=instrument,
            action=req.action, quantity=qty, order_type=req.order_type,
            limit_price=round(req.limit_price, 2) if req.order_type == "LMT" and req.limit_price else None,
            tif=req.tif, account=req.account or self.account, order_ref=req.order_ref,
            outside_rth=req.outside_rth, placed_at=at, expires_after_day=expiry,
        )
        self.orders[(client_id, order.order_id)] = order
        self.max_order_id = max(self.max_order_id, order.order_id)
        log.info(
            "order %s accepted from client %s: %s %s %s %s%s (permId %s, ref %s)",
            order.order_id, client_id, order.action, order.quantity, order.instrument.contract.instrument_id,
            order.order_type, f" @ {order.limit_price}" if order.limit_price else "", order.perm_id,
            order.order_ref,
        )
        return order

    def _modify(self, order: SimOrder, req: PlaceRequest) -> list[Outbound]:
        if not order.is_open:
            raise Rejected(103, f"Duplicate order id {req.order_id}: the order is {order.status}")
        instrument, qty = self._validate(req)
        if instrument is not order.instrument or req.action != order.action or req.order_type != order.order_type:
            raise Rejected(201, "Order rejected - reason:a modification cannot change contract, side or type")
        if qty < order.filled:
            raise Rejected(201, "Order rejected - reason:new quantity is below the filled quantity")
        limit = round(req.limit_price, 2) if req.order_type == "LMT" and req.limit_price else None
        self._check_funds(instrument, order.action, qty - order.filled, limit, ignore=order)
        order.quantity, order.limit_price, order.tif = qty, limit, req.tif
        order.order_ref = req.order_ref or order.order_ref
        log.info("order %s modified: qty %s limit %s", order.order_id, qty, limit)
        return self._announce(order) + self._try_fill_now(order)

    def _announce(self, order: SimOrder) -> list[Outbound]:
        c = order.instrument.contract
        return [
            Outbound(order.client_id, wire.open_order(order.view(), c)),
            Outbound(order.client_id, self._status_msg(order)),
        ]

    def _status_msg(self, order: SimOrder) -> bytes:
        return wire.order_status(
            order.order_id, order.status, order.filled, order.remaining, order.avg_fill_price,
            order.perm_id, order.last_fill_price, order.client_id,
        )

    # ------------------------------------------------------------------ filling

    def _try_fill_now(self, order: SimOrder) -> list[Outbound]:
        if self.holding_fills:
            return []  # fault: the order rests as Submitted (see release_fills)
        last = self._last_price(order.instrument)
        out: list[Outbound] = []
        if order.order_type == "MKT":
            out += self._fill(order, order.remaining, last)
        elif self._marketable(order, last):
            out += self._fill(order, order.remaining, last)
        if order.is_open and order.tif == "IOC":
            out += self._cancel(order, "IOC order not marketable")
        return out

    @staticmethod
    def _marketable(order: SimOrder, price: float) -> bool:
        assert order.limit_price is not None
        if order.action == "BUY":
            return price <= order.limit_price + 1e-9
        return price >= order.limit_price - 1e-9

    def _fill(self, order: SimOrder, shares: Decimal, price: float) -> list[Outbound]:
        price = round(price, 2)
        commission = commission_for(shares, price)
        con_id = order.instrument.contract.con_id
        pos = self.positions.setdefault(con_id, PositionState())
        realized: float | None = None
        if order.action == "BUY":
            cost_basis = float(pos.quantity) * pos.avg_cost + float(shares) * price + commission
            pos.quantity += shares
            pos.avg_cost = cost_basis / float(pos.quantity) if pos.quantity else 0.0
            self.cash = round(self.cash - float(shares) * price - commission, 2)
        else:
            realized = round((price - pos.avg_cost) * float(shares) - commission, 2)
            pos.quantity -= shares
            if not pos.quantity:
                pos.avg_cost = 0.0
            self.cash = round(self.cash + float(shares) * price - commission, 2)
        total_before = float(order.filled) * order.avg_fill_price
        order.filled += shares
        order.avg_fill_price = round((total_before + float(shares) * price) / float(order.filled), 6)
        order.last_fill_price = price
        if order.remaining <= 0:
            order.status = "Filled"
        exec_id = f"0000e0d5.{self._next_exec:08x}.01.01"
        self._next_exec += 1
        fill = SimFill(
            exec_id=exec_id, order=order, time=_now(), shares=shares, price=price, cum_qty=order.filled,
            avg_price=order.avg_fill_price, commission=commission, realized_pnl=realized,
        )
        self.fills.append(fill)
        self.summary_dirty = True
        log.info(
            "order %s filled: %s %s %s @ %.2f (commission %.2f, cash %.2f)",
            order.order_id, order.action, shares, order.instrument.contract.instrument_id, price, commission,
            self.cash,
        )
        c = order.instrument.contract
        return [
            Outbound(order.client_id, wire.execution(-1, fill.view(), c)),
            Outbound(order.client_id, wire.open_order(order.view(), c)),
            Outbound(order.client_id, self._status_msg(order)),
            Outbound(order.client_id, wire.commission_report(exec_id, commission, c.currency, realized)),
        ]

    def match_segment(self, instrument: Instrument, day: int, f0: float, f1: float, opening: bool) -> list[Outbound]:
        """Fill resting limit orders the price path of ``day`` crossed between ``f0`` and ``f1``.

        ``opening``: the segment starts at the day's open (a jump from the previous close), so an
        order the open already crossed fills at the open price.
        """
        bar = instrument.bar_on(self.market.calendar[day])
        if bar is None or self.holding_fills:
            return []
        out: list[Outbound] = []
        for order in list(self.orders.values()):
            if not order.is_open or order.instrument is not instrument or order.order_type != "LMT":
                continue
            seg_start, seg_opening = f0, opening
            if order.placed_at.day == day and order.placed_at.fraction > f0:
                # Only the part of the path after the order arrived can fill it.
                seg_start, seg_opening = order.placed_at.fraction, False
                if seg_start >= f1:
                    continue
            low, high = bar.range_between(seg_start, f1)
            limit = order.limit_price
            assert limit is not None
            start = bar.open if seg_opening else bar.price_at(seg_start)
            if order.action == "BUY" and low <= limit + 1e-9:
                out += self._fill(order, order.remaining, min(start, limit) if seg_opening else limit)
            elif order.action == "SELL" and high >= limit - 1e-9:
                out += self._fill(order, order.remaining, max(start, limit) if seg_opening else limit)
        return out

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
        """Cancel DAY orders whose session ended with ``completed_day``."""
        out: list[Outbound] = []
        for order in list(self.orders.values()):
            if order.is_open and order.tif == "DAY" and order.expires_after_day <= completed_day:
                out += self._cancel(order, "day order expired", with_error=False)
        return out

    # ------------------------------------------------------------------ cancelling

    def cancel(self, client_id: int, order_id: int, fields: dict[str, Any] | None = None) -> list[Outbound]:
        """Handle OUT 4: Cancelled + error 202, or error 10147/10148."""
        entry: dict[str, Any] = {
            "kind": "cancel", "time": _now().isoformat(), "client_id": client_id, "order_id": order_id,
            **(fields or {}),
        }
        order = self.orders.get((client_id, order_id))
        if order is None and client_id == 0:
            order = next((o for o in self.orders.values() if o.order_id == order_id), None)
        if order is None:
            entry["result"] = "unknown order"
            out = [Outbound(client_id, wire.error(
                order_id, 10147, f"OrderId {order_id} that needs to be cancelled is not found.", _millis()))]
        elif not order.is_open:
            entry["result"] = f"not cancellable: {order.status}"
            out = [Outbound(client_id, wire.error(
                order_id, 10148,
                f"OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {order.status}.",
                _millis()))]
        else:
            entry["result"] = "cancelled"
            entry["perm_id"] = order.perm_id
            entry["order_ref"] = order.order_ref
            out = self._cancel(order, "cancel requested")
        self._record(entry)
        return out

    def global_cancel(self, client_id: int) -> list[Outbound]:
        self._record({"kind": "global_cancel", "time": _now().isoformat(), "client_id": client_id,
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
            out.append(Outbound(order.client_id, wire.error(order.order_id, 202, "Order Canceled - reason:", _millis())))
        return out

    # ------------------------------------------------------------------ reconciliation

    def open_orders(self, client_id: int | None) -> list[bytes]:
        """IN 5 + IN 3 per open order (of ``client_id``; ``None`` or 0: all), then IN 53."""
        out: list[bytes] = []
        for order in self.orders.values():
            if order.is_open and (not client_id or order.client_id == client_id):
                out.append(wire.open_order(order.view(), order.instrument.contract))
                out.append(self._status_msg(order))
        out.append(wire.open_order_end())
        return out

    def executions(self, req_id: int, flt: dict[str, Any]) -> list[bytes]:
        """IN 11 (reqId echoed) + IN 59 per matching fill, then IN 55."""
        since = _parse_filter_time(flt.get("time", ""))
        out: list[bytes] = []
        for fill in self.fills:
            o = fill.order
            c = o.instrument.contract
            if flt.get("client_id") and o.client_id != flt["client_id"]:
                continue
            if flt.get("acct_code") and o.account != flt["acct_code"]:
                continue
            if since is not None and fill.time < since:
                continue
            if flt.get("symbol") and flt["symbol"].upper() not in (c.symbol, c.local):
                continue
            if flt.get("sec_type") and flt["sec_type"].upper() != c.sec_type:
                continue
            if flt.get("exchange") and flt["exchange"].upper() not in (c.exchange, c.primary_exchange):
                continue
            side = (flt.get("side") or "").upper()
            if side and side not in (o.action, "BOT" if o.action == "BUY" else "SLD"):
                continue
            out.append(wire.execution(req_id, fill.view(), c))
            out.append(wire.commission_report(fill.exec_id, fill.commission, c.currency, fill.realized_pnl))
        out.append(wire.execution_end(req_id))
        return out

    def position_messages(self) -> list[bytes]:
        out = []
        for con_id, pos in self.positions.items():
            instrument = self._instrument_by_con_id(con_id)
            if instrument is not None and pos.quantity:
                out.append(wire.position(self.account, instrument.contract, pos.quantity, round(pos.avg_cost, 6)))
        out.append(wire.position_end())
        return out

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able summary: cash, positions, open orders, fills."""
        positions = {}
        for con_id, pos in self.positions.items():
            instrument = self._instrument_by_con_id(con_id)
            if instrument is not None and pos.quantity:
                positions[instrument.contract.instrument_id] = {
                    "quantity": str(pos.quantity), "avg_cost": round(pos.avg_cost, 6)}
        return {
            "account": self.account,
            "cash": self.cash,
            "net_liquidation": float(self.summary_values()["NetLiquidation"][0]),
            "positions": positions,
            "open_orders": [
                {"order_id": o.order_id, "client_id": o.client_id, "perm_id": o.perm_id, "action": o.action,
                 "quantity": str(o.quantity), "order_type": o.order_type, "limit_price": o.limit_price,
                 "tif": o.tif, "order_ref": o.order_ref, "instrument": o.instrument.contract.instrument_id}
                for o in self.orders.values() if o.is_open
            ],
            "fills": [
                {"exec_id": f.exec_id, "order_id": f.order.order_id, "perm_id": f.order.perm_id,
                 "side": f.order.action, "shares": str(f.shares), "price": f.price,
                 "commission": f.commission, "order_ref": f.order.order_ref,
                 "instrument": f.order.instrument.contract.instrument_id}
                for f in self.fills
            ],
        }


def _parse_filter_time(text: str) -> dt.datetime | None:
    """ExecutionFilter.time: ``yyyymmdd-hh:mm:ss`` (UTC) or ``yyyymmdd hh:mm:ss [zone]``."""
    text = (text or "").strip()
    if not text:
        return None
    from zoneinfo import ZoneInfo

    zone: dt.tzinfo = dt.UTC
    if "-" in text[:9]:
        stamp = text.replace("-", " ", 1)
    else:
        parts = text.split(" ")
        stamp = " ".join(parts[:2])
        if len(parts) > 2:
            try:
                zone = ZoneInfo(parts[2]) if parts[2] not in ("UTC", "GMT") else dt.UTC
            except Exception:  # noqa: BLE001 - an unknown zone name: treat as UTC
                zone = dt.UTC
    try:
        return dt.datetime.strptime(stamp, "%Y%m%d %H:%M:%S").replace(tzinfo=zone)
    except ValueError:
        try:
            return dt.datetime.strptime(stamp[:8], "%Y%m%d").replace(tzinfo=zone)
        except ValueError:
            return None


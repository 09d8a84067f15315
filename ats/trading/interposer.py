"""The order interposer: every order intent is audited before it reaches the risk engine.

:class:`OrderInterposer` takes the node's ``RiskEngine.execute`` endpoint.  Each order a strategy
submits is written to the audit log (with the session id) *before* the command goes on to the
risk engine and the broker; if that write fails the order is dropped and the session halts
(fail closed).  The notional cap is checked here too, against a price the session always has
(Nautilus skips it for a market order without a quote).  Denials, submissions, rejections,
fills and cancels are audited from the order events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ats.governance import audit

if TYPE_CHECKING:
    from nautilus_trader.core.message import Command
    from nautilus_trader.live.node import TradingNode
    from nautilus_trader.model.data import BarType
    from nautilus_trader.model.events import OrderEvent
    from nautilus_trader.model.objects import Price
    from nautilus_trader.model.orders import Order
    from sqlalchemy import Connection

    from ats.store import Store
    from ats.trading.node import NodePlan


class SessionState(Protocol):
    """What the interposer asks of the session it works for (:class:`ats.trading.supervisor.SessionGuard`)."""

    session_id: str
    plan: NodePlan
    store: Store
    actor: str
    node: TradingNode

    @property
    def halting(self) -> bool: ...

    @property
    def stopping(self) -> bool: ...

    def halt(self, status: str, reason: str, *, audit_ok: bool = True,
             cause: dict[str, Any] | None = None) -> None: ...


class OrderInterposer:
    """Sits on ``RiskEngine.execute`` and on the order events of one session's node."""

    def __init__(self, session: SessionState) -> None:
        self.session = session
        self.node = session.node
        self.bar_types: dict[str, BarType] = {}
        self.orders = {"sent": 0, "denied": 0, "filled": 0, "canceled": 0, "rejected": 0}
        self._risk_execute: Callable[[Command], None] | None = None

    def install(self) -> None:
        """Take the risk engine's endpoint and follow the order events."""
        from ats.core.params import parse_bar_type

        kernel = self.node.kernel
        msgbus = kernel.msgbus
        self._risk_execute = kernel.risk_engine.execute
        msgbus.deregister("RiskEngine.execute", self._risk_execute)
        msgbus.register("RiskEngine.execute", self.on_risk_command)
        msgbus.subscribe("events.order.*", self.on_order_event)
        for sleeve in self.session.plan.sleeves:
            self.bar_types[sleeve.instrument] = parse_bar_type(sleeve.instrument, sleeve.bar_spec)

    def on_risk_command(self, command: Command) -> None:
        from nautilus_trader.execution.messages import SubmitOrder, SubmitOrderList

        orders: list[Order] = []
        if isinstance(command, SubmitOrder):
            orders = [command.order]
        elif isinstance(command, SubmitOrderList):
            orders = list(command.order_list.orders)
        if orders:
            if self.session.halting:
                return  # halted: nothing new goes out (the risk engine would deny it too)
            if self.session.stopping:
                # Stopping: a decision on a bar that is no longer recorded never goes out (and
                # is not an intent of this session); the denial is audited like any other.
                for order in orders:
                    self.node.kernel.risk_engine._deny_order(order, "the session is stopping")  # noqa: SLF001
                return
            try:
                with self.session.store.write() as conn:
                    for order in orders:
                        self._record_order(conn, "intent", order)
            except Exception as exc:  # noqa: BLE001 - fail closed on any store failure
                self.session.halt("error", f"audit write failed, order {orders[0].client_order_id} not sent "
                                  f"(fail closed): {exc}", audit_ok=False)
                return
            denials = [(order, reason) for order in orders if (reason := self._notional_denial(order))]
            if denials:
                risk_engine = self.node.kernel.risk_engine
                for order, reason in denials:
                    risk_engine._deny_order(order, reason)  # noqa: SLF001 - Nautilus' own denial path
                return
        if self._risk_execute is None:
            raise RuntimeError("the order interposer received a command before it was installed")
        self._risk_execute(command)

    def _notional_denial(self, order: Order) -> str | None:
        """The notional cap, checked against a price we always have.

        Nautilus' RiskEngine skips the notional check of a MARKET order when it has no quote or
        trade tick ("Cannot check MARKET order risk") — and a node fed daily bars has neither.
        So the cap is enforced here too, pricing a market order at the latest quote, trade or
        bar close; with no price at all the order is denied (fail closed).
        """
        cap = self.session.plan.max_notional_per_order
        if self._reduces_position(order):
            return None  # an exit must never be trapped by the entry cap
        price = getattr(order, "price", None)
        if price is None:
            price = self._last_price(order)
        if price is None:
            return f"no price known for {order.instrument_id} to check MAX_NOTIONAL_PER_ORDER against (fail closed)"
        notional = float(order.quantity) * float(price)
        if notional > cap:
            return f"NOTIONAL_EXCEEDS_MAX_PER_ORDER: {notional:,.2f} USD > {cap:,} USD (MAX_NOTIONAL_PER_ORDER)"
        return None

    def _reduces_position(self, order: Order) -> bool:
        """A SELL no larger than the open long (or a BUY no larger than the open short)."""
        from nautilus_trader.model.enums import OrderSide

        net = 0.0
        for position in self.node.kernel.cache.positions_open(instrument_id=order.instrument_id):
            net += float(position.signed_qty)
        quantity = float(order.quantity)
        if order.side == OrderSide.SELL:
            return net > 0 and quantity <= net
        return net < 0 and quantity <= -net

    def _last_price(self, order: Order) -> Price | None:
        from nautilus_trader.model.enums import OrderSide

        cache = self.node.kernel.cache
        quote = cache.quote_tick(order.instrument_id)
        if quote is not None:
            return quote.ask_price if order.side == OrderSide.BUY else quote.bid_price
        trade = cache.trade_tick(order.instrument_id)
        if trade is not None:
            return trade.price
        bar_type = self.bar_types.get(str(order.instrument_id))
        bar = cache.bar(bar_type) if bar_type is not None else None
        return bar.close if bar is not None else None

    def _record_order(self, conn: Connection, event: str, order: Order, extra: dict[str, Any] | None = None) -> None:
        from ats.governance.sessions import record_order_event

        instrument = str(order.instrument_id)
        bar_type = self.bar_types.get(instrument)
        bar = self.node.kernel.cache.bar(bar_type) if bar_type is not None else None
        bar_date = _bar_date(bar.ts_event) if bar is not None else None
        price = getattr(order, "price", None)
        details = {"order_type": str(order.order_type.name) if hasattr(order.order_type, "name") else str(order.order_type),
                   "time_in_force": str(order.time_in_force.name) if hasattr(order.time_in_force, "name") else "",
                   **(extra or {})}
        side = order.side.name if hasattr(order.side, "name") else str(order.side)
        quantity = float(order.quantity)
        audit.append_in(conn, self.session.actor, f"order.{event}", str(order.client_order_id), {
            "session_id": self.session.session_id, "mode": self.session.plan.mode, "instrument": instrument, "side": side,
            "quantity": quantity, "bar_date": bar_date, **details,
        })
        record_order_event(conn, self.session.session_id, event, client_order_id=str(order.client_order_id),
                           instrument=instrument, side=side, quantity=quantity,
                           price=float(price) if price is not None else None, bar_date=bar_date, details=details)

    def on_order_event(self, event: OrderEvent) -> None:
        from nautilus_trader.model.events import (
            OrderCanceled,
            OrderDenied,
            OrderFilled,
            OrderRejected,
            OrderSubmitted,
        )

        kinds = {OrderDenied: "denied", OrderSubmitted: "submitted", OrderRejected: "rejected",
                 OrderFilled: "filled", OrderCanceled: "canceled"}
        kind = next((name for cls, name in kinds.items() if isinstance(event, cls)), None)
        if kind is None:
            return
        self.orders["sent" if kind == "submitted" else kind] += 1
        order = self.node.kernel.cache.order(event.client_order_id)
        if order is None:
            return
        extra: dict[str, Any] = {}
        if kind in ("denied", "rejected"):
            extra["reason"] = str(event.reason)
        if kind == "filled":
            extra.update({"last_qty": float(event.last_qty), "last_px": float(event.last_px),
                          "commission": str(event.commission), "venue_order_id": str(event.venue_order_id)})
        try:
            with self.session.store.write() as conn:
                self._record_order(conn, kind, order, extra)
        except Exception as exc:  # noqa: BLE001 - fail closed on any store failure
            self.session.halt("error", f"audit write failed for order event {kind}: {exc}", audit_ok=False)


def _bar_date(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).date().isoformat()

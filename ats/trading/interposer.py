"""The order interposer: every order intent is audited before it reaches the risk engine.

:class:`OrderInterposer` takes the node's ``RiskEngine.execute`` endpoint.  Each order a strategy
submits is written to the audit log (with the session id) *before* the command goes on to the
risk engine and the broker; if that write fails the order is dropped and the session halts
(fail closed).  The notional cap is checked here too, against a price the session always has
(Nautilus skips it for a market order without a quote).  Denials, submissions, rejections,
fills and cancels are audited from the order events.

Every row goes through the session's writer (:class:`ats.trading.writer.SessionWriter`), in
the order it happened.  The intent is waited for where the strategy sent the order (the node's
loop), as the order may go on only once its row is in the store; the wait gives way to a halt —
the kill switch, a signal — at once: the order is denied ("the session halted before the order
went out") and the halt's cancels go out, even while another process holds the store's write
lock.  Only the intent is waited for: the order events' rows are queued and written behind it.
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

    from ats.store import Store
    from ats.trading.node import NodePlan
    from ats.trading.writer import SessionWriter


class SessionState(Protocol):
    """What the interposer asks of the session it works for (:class:`ats.trading.supervisor.SessionGuard`)."""

    session_id: str
    plan: NodePlan
    store: Store
    actor: str
    node: TradingNode
    writer: SessionWriter

    @property
    def halting(self) -> bool: ...

    @property
    def halt_requested(self) -> bool: ...

    def halt(self, status: str, reason: str, *, audit_ok: bool = True,
             cause: dict[str, Any] | None = None) -> None: ...

    @property
    def stopping(self) -> bool: ...


# How often an order waiting for its intent row looks whether a halt was asked for meanwhile.
INTENT_WAIT_POLL_S = 0.01


class OrderInterposer:
    """Sits on ``RiskEngine.execute`` and on the order events of one session's node."""

    def __init__(self, session: SessionState) -> None:
        self.session = session
        self.node = session.node
        self.bar_types: dict[str, BarType] = {}
        self.orders = {"sent": 0, "denied": 0, "filled": 0, "canceled": 0, "rejected": 0}
        #: Orders whose intent row is being written now (any thread may read it).
        self.orders_waiting = 0
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
                self._deny(orders, "the session is halted")  # nothing new goes out; the denial is audited
                return
            if self.session.stopping:
                # Stopping: a decision on a bar that is no longer recorded never goes out (and
                # is not an intent of this session); the denial is audited like any other.
                self._deny(orders, "the session is stopping")
                return
            if not self._intents_written(orders):
                return
            denials = {order.client_order_id: reason for order in orders if (reason := self._notional_denial(order))}
            if denials:
                first = next(iter(denials.values()))
                for order in orders:  # an order list goes out whole or not at all
                    self._deny([order], denials.get(order.client_order_id, f"another order of its list was denied: {first}"))
                return
        if self._risk_execute is None:
            raise RuntimeError("the order interposer received a command before it was installed")
        self._risk_execute(command)

    def _intents_written(self, orders: list[Order]) -> bool:
        """Queue the orders' intent rows and wait until they are written — behind every row
        queued before them.  False: not written (the session halts, fail closed), or a halt or a
        stop began meanwhile (a stop may come from the clock's timer thread while the loop waits
        here); the orders are then denied and must not go out."""
        rows = [self._order_row("intent", order) for order in orders]
        write = self.session.writer.put(f"audit write failed, order {orders[0].client_order_id} not sent (fail closed)",
                                        lambda: self._write_rows(rows))
        self.orders_waiting = len(orders)
        try:
            while not write.done.wait(INTENT_WAIT_POLL_S) and not self._interrupted():
                pass
        finally:
            self.orders_waiting = 0
        if write.failure is not None:
            self.session.halt("error", write.failure, audit_ok=False)
            self._deny(orders, write.failure)
            return False
        if self._interrupted():
            self._deny(orders, "the session halted before the order went out" if self.session.halt_requested
                       else "the session is stopping")
            return False
        return True

    def _interrupted(self) -> bool:
        return self.session.halt_requested or self.session.stopping

    def _deny(self, orders: list[Order], reason: str) -> None:
        risk_engine = self.node.kernel.risk_engine
        for order in orders:
            risk_engine._deny_order(order, reason)  # noqa: SLF001 - Nautilus' own denial path

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

    def _order_row(self, event: str, order: Order, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The order's audit/order-event row, read from the node's cache (on the loop)."""
        instrument = str(order.instrument_id)
        bar_type = self.bar_types.get(instrument)
        bar = self.node.kernel.cache.bar(bar_type) if bar_type is not None else None
        price = getattr(order, "price", None)
        return {
            "event": event, "client_order_id": str(order.client_order_id), "instrument": instrument,
            "side": order.side.name if hasattr(order.side, "name") else str(order.side),
            "quantity": float(order.quantity), "price": float(price) if price is not None else None,
            "bar_date": _bar_date(bar.ts_event) if bar is not None else None,
            "details": {"order_type": order.order_type.name if hasattr(order.order_type, "name") else str(order.order_type),
                        "time_in_force": order.time_in_force.name if hasattr(order.time_in_force, "name") else "",
                        **(extra or {})},
        }

    def _write_rows(self, rows: list[dict[str, Any]]) -> None:
        """On the session's writer thread: the rows' audit entries and order events, in one transaction."""
        from ats.governance.sessions import record_order_event

        session = self.session
        with session.store.write() as conn:
            for row in rows:
                audit.append_in(conn, session.actor, f"order.{row['event']}", row["client_order_id"], {
                    "session_id": session.session_id, "mode": session.plan.mode, "instrument": row["instrument"],
                    "side": row["side"], "quantity": row["quantity"], "bar_date": row["bar_date"], **row["details"],
                })
                record_order_event(conn, session.session_id, row["event"], client_order_id=row["client_order_id"],
                                   instrument=row["instrument"], side=row["side"], quantity=row["quantity"],
                                   price=row["price"], bar_date=row["bar_date"], details=row["details"])

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
        rows = [self._order_row(kind, order, extra)]
        self.session.writer.put(f"audit write failed for order event {kind}", lambda: self._write_rows(rows))


def _bar_date(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).date().isoformat()

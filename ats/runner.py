"""Runs one trading session: gates, the Nautilus TradingNode, telemetry, kill switch, stop.

``python -m ats.paper`` / ``python -m ats.live``, the Prefect flows and the demo all call
:func:`run_session`.  What it guarantees:

* Nothing connects before every gate of the mode passed (see :mod:`ats.guards`).
* **Fail closed on the audit log.**  The session interposes on the node's
  ``RiskEngine.execute`` endpoint: every order intent is written to the audit log (with the
  session id) *before* the command reaches the risk engine and the broker.  If that write
  fails, the order is dropped, the session halts and ends in error.
* Denials, submissions, rejections, fills and cancels are audited from the order events.
* The kill switch (``ats kill`` in any process) is polled every 50 ms: trading state HALTED,
  open orders cancelled, node stopped, session ``killed``.  SIGINT/SIGTERM take the same path
  (without latching the switch).  The node is always disposed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ats import audit
from ats.errors import InputError, SessionError, StoreError
from ats.guards import Gates
from ats.node import NodePlan, build_node_config, forget_ib_clients, plan_for
from ats.settings import Mode, Settings, mask_account
from ats.sleeves import Sleeve
from ats.store import Store

NEW_YORK = ZoneInfo("America/New_York")
SNAPSHOT_INTERVAL_S = 5.0
CANCEL_GRACE_S = 3.0
# Connection (60 s) + reconciliation (30 s) + portfolio (10 s) timeouts of the node, and margin.
STARTUP_DEADLINE_S = 120.0


@dataclass
class SessionOutcome:
    """How a session ended, with its summary (for the CLI, the flow artifact and the demo)."""

    session_id: str
    mode: str
    status: str
    reason: str
    summary: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "mode": self.mode, "status": self.status,
                "reason": self.reason, **self.summary}


def resolve_stop_time(until: str | None, now: dt.datetime | None = None) -> dt.datetime:
    """When a session stops: ``until``, else today's close.  Refuses a stop time that is already
    past and a day the exchange does not trade (without ``--until``): a session never runs on
    with no stop at all."""
    now = now or dt.datetime.now(dt.UTC)
    if until:
        stop_at = parse_until(until, now)
        if stop_at <= now:
            raise InputError(f"--until {until!r} is already past ({stop_at:%Y-%m-%d %H:%M} UTC): give a later time")
        return stop_at
    close = market_close_today(now)
    if close is None:
        raise InputError("the exchange does not trade today: no market close to stop at; give --until HH:MM or a date-time")
    if close <= now:
        raise InputError(f"today's market close ({close:%H:%M} UTC) has passed; give --until to run after it")
    return close


def parse_until(until: str | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """``HH:MM`` (America/New_York, today) or an ISO datetime (New York if no zone) → UTC."""
    if until is None:
        return None
    now = now or dt.datetime.now(dt.UTC)
    text = until.strip()
    try:
        if len(text) <= 5 and ":" in text:
            hour, minute = (int(p) for p in text.split(":"))
            local_now = now.astimezone(NEW_YORK)
            target = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
            return target.astimezone(dt.UTC)
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--until {until!r}: expected HH:MM (America/New_York) or an ISO date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=NEW_YORK)
    return parsed.astimezone(dt.UTC)


def market_close_today(now: dt.datetime | None = None) -> dt.datetime | None:
    """Today's close of XNYS (early closes included) in UTC, or None when it is not a session day."""
    import exchange_calendars as xcals
    import pandas as pd

    now = now or dt.datetime.now(dt.UTC)
    calendar = xcals.get_calendar("XNYS")
    day = pd.Timestamp(now.astimezone(NEW_YORK).date())
    if not calendar.is_session(day):
        return None
    return calendar.session_close(day).to_pydatetime()


class SessionGuard:
    """Sits in the node: audits and records, polls the kill switch, stops the node.

    Created by :func:`run_session`; its methods run on the node's event-loop thread.
    """

    def __init__(self, *, session_id: str, plan: NodePlan, store: Store, actor: str, node, stop_at: dt.datetime | None) -> None:  # noqa: ANN001
        self.session_id = session_id
        self.plan = plan
        self.store = store
        self.actor = actor
        self.node = node
        self.stop_at = stop_at
        # Until the trader runs (start_timers), ending means the node never started trading.
        self.status = "error"
        self.reason = "the node stopped before it started trading (connection, reconciliation or portfolio failed)"
        self.started = threading.Event()
        self.halted_at: float | None = None
        self.last_bar: dict[str, str] = {}
        self._halting = False
        self._stopping = False
        self._bar_types = {}
        self._sleeve_of_instrument = {s.instrument: s for s in plan.sleeves}
        self._risk_execute = None
        self._cancel_deadline = 0.0

    # Wiring ------------------------------------------------------------------------------
    def install(self) -> None:
        from ats.params import parse_bar_type

        kernel = self.node.kernel
        msgbus = kernel.msgbus
        self._risk_execute = kernel.risk_engine.execute
        msgbus.deregister("RiskEngine.execute", self._risk_execute)
        msgbus.register("RiskEngine.execute", self.on_risk_command)
        msgbus.subscribe("events.order.*", self.on_order_event)
        for sleeve in self.plan.sleeves:
            bar_type = parse_bar_type(sleeve.instrument, sleeve.bar_spec)
            self._bar_types[sleeve.instrument] = bar_type
            msgbus.subscribe(f"data.bars.{bar_type}", self.on_bar)

    def start_timers(self) -> None:
        """Called once the node is running (from the session actor's on_start)."""
        from ats.killswitch import POLL_INTERVAL_S

        self.status, self.reason = "stopped", "stopped"
        self.started.set()

        clock = self.node.kernel.clock
        clock.set_timer("ats-kill-poll", dt.timedelta(seconds=POLL_INTERVAL_S), callback=lambda _e: self.poll_kill())
        clock.set_timer("ats-snapshot", dt.timedelta(seconds=SNAPSHOT_INTERVAL_S), callback=lambda _e: self.snapshot())
        if self.stop_at is not None:
            if self.stop_at <= dt.datetime.now(dt.UTC):
                self.stop("stopped", "stop time already reached")
            else:
                clock.set_time_alert("ats-stop-time", self.stop_at,
                                     callback=lambda _e: self.stop("stopped", "reached the stop time"))
        self.snapshot()

    # Orders --------------------------------------------------------------------------------
    def on_risk_command(self, command) -> None:  # noqa: ANN001
        from nautilus_trader.execution.messages import SubmitOrder, SubmitOrderList

        orders = []
        if isinstance(command, SubmitOrder):
            orders = [command.order]
        elif isinstance(command, SubmitOrderList):
            orders = list(command.order_list.orders)
        if orders:
            if self._halting:
                return  # halted: nothing new goes out (the risk engine would deny it too)
            try:
                with self.store.write() as conn:
                    for order in orders:
                        self._record_order(conn, "intent", order)
            except Exception as exc:  # noqa: BLE001 - fail closed on any store failure
                self.halt("error", f"audit write failed, order {orders[0].client_order_id} not sent (fail closed): {exc}",
                          audit_ok=False)
                return
            denials = [(order, reason) for order in orders if (reason := self._notional_denial(order))]
            if denials:
                risk_engine = self.node.kernel.risk_engine
                for order, reason in denials:
                    risk_engine._deny_order(order, reason)  # noqa: SLF001 - Nautilus' own denial path
                return
        self._risk_execute(command)

    def _notional_denial(self, order) -> str | None:  # noqa: ANN001
        """The notional cap, checked against a price we always have.

        Nautilus' RiskEngine skips the notional check of a MARKET order when it has no quote or
        trade tick ("Cannot check MARKET order risk") — and a node fed daily bars has neither.
        So the cap is enforced here too, pricing a market order at the latest quote, trade or
        bar close; with no price at all the order is denied (fail closed).
        """
        cap = self.plan.max_notional_per_order
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

    def _reduces_position(self, order) -> bool:  # noqa: ANN001
        """A SELL no larger than the open long (or a BUY no larger than the open short)."""
        from nautilus_trader.model.enums import OrderSide

        net = 0.0
        for position in self.node.kernel.cache.positions_open(instrument_id=order.instrument_id):
            net += float(position.signed_qty)
        quantity = float(order.quantity)
        if order.side == OrderSide.SELL:
            return net > 0 and quantity <= net
        return net < 0 and quantity <= -net

    def _last_price(self, order):  # noqa: ANN001, ANN202
        from nautilus_trader.model.enums import OrderSide

        cache = self.node.kernel.cache
        quote = cache.quote_tick(order.instrument_id)
        if quote is not None:
            return quote.ask_price if order.side == OrderSide.BUY else quote.bid_price
        trade = cache.trade_tick(order.instrument_id)
        if trade is not None:
            return trade.price
        bar_type = self._bar_types.get(str(order.instrument_id))
        bar = cache.bar(bar_type) if bar_type is not None else None
        return bar.close if bar is not None else None

    def _record_order(self, conn, event: str, order, extra: dict[str, Any] | None = None) -> None:  # noqa: ANN001
        from ats.sessions import record_order_event

        instrument = str(order.instrument_id)
        bar_type = self._bar_types.get(instrument)
        bar = self.node.kernel.cache.bar(bar_type) if bar_type is not None else None
        bar_date = _bar_date(bar.ts_event) if bar is not None else None
        price = getattr(order, "price", None)
        details = {"order_type": str(order.order_type.name) if hasattr(order.order_type, "name") else str(order.order_type),
                   "time_in_force": str(order.time_in_force.name) if hasattr(order.time_in_force, "name") else "",
                   **(extra or {})}
        side = order.side.name if hasattr(order.side, "name") else str(order.side)
        quantity = float(order.quantity)
        audit.append_in(conn, self.actor, f"order.{event}", str(order.client_order_id), {
            "session_id": self.session_id, "mode": self.plan.mode, "instrument": instrument, "side": side,
            "quantity": quantity, "bar_date": bar_date, **details,
        })
        record_order_event(conn, self.session_id, event, client_order_id=str(order.client_order_id),
                           instrument=instrument, side=side, quantity=quantity,
                           price=float(price) if price is not None else None, bar_date=bar_date, details=details)

    def on_order_event(self, event) -> None:  # noqa: ANN001
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
            with self.store.write() as conn:
                self._record_order(conn, kind, order, extra)
        except Exception as exc:  # noqa: BLE001
            self.halt("error", f"audit write failed for order event {kind}: {exc}", audit_ok=False)

    # Bars and telemetry ------------------------------------------------------------------------
    def on_bar(self, bar) -> None:  # noqa: ANN001
        if self._stopping or self._halting:
            return  # the strategies are stopping: bars the adapter flushes now are never traded on
        # Record once this publish is over: the strategies have then seen the bar, so a recorded
        # bar always comes after the decision it triggered (and that decision's audited intent).
        self.node.kernel.loop.call_soon(self._record_bar, bar)

    def _record_bar(self, bar) -> None:  # noqa: ANN001
        from ats.sessions import record_bar

        instrument = str(bar.bar_type.instrument_id)
        ts = _iso_ns(bar.ts_event)
        self.last_bar[instrument] = ts
        try:
            record_bar(self.session_id, instrument, str(bar.bar_type), ts,
                       (float(bar.open), float(bar.high), float(bar.low), float(bar.close), float(bar.volume)),
                       store=self.store)
        except StoreError as exc:
            self.halt("error", f"store unavailable while recording a bar: {exc}", audit_ok=False)

    def telemetry(self) -> dict[str, Any]:
        kernel = self.node.kernel
        cache, portfolio = kernel.cache, kernel.portfolio
        positions, realized, unrealized = [], 0.0, 0.0
        for instrument in self.plan.instruments:
            from nautilus_trader.model.identifiers import InstrumentId

            iid = InstrumentId.from_str(instrument)
            for position in cache.positions_open(instrument_id=iid):
                positions.append({"instrument": instrument, "side": position.side.name,
                                  "quantity": float(position.quantity), "avg_px_open": float(position.avg_px_open)})
            pnl = portfolio.realized_pnl(iid)
            realized += float(pnl.as_double()) if pnl is not None else 0.0
            upnl = portfolio.unrealized_pnl(iid)
            unrealized += float(upnl.as_double()) if upnl is not None else 0.0
        return {
            "connected": bool(kernel.exec_engine.check_connected() and kernel.data_engine.check_connected()),
            "trading_state": kernel.risk_engine.trading_state.name,
            "last_bar": dict(self.last_bar),
            "positions": positions,
            "open_orders": len(cache.orders_open()),
            "realized_pnl": round(realized, 2),
            "unrealized_pnl": round(unrealized, 2),
        }

    def snapshot(self) -> None:
        from ats.sessions import record_snapshot

        try:
            record_snapshot(self.session_id, self.telemetry(), store=self.store)
        except StoreError as exc:
            self.halt("error", f"store unavailable while writing telemetry: {exc}", audit_ok=False)
        except Exception:  # noqa: BLE001 - telemetry must never take the session down
            pass

    # Kill switch and stopping ------------------------------------------------------------------
    def poll_kill(self) -> None:
        from ats.killswitch import latched

        if self._halting:
            self._continue_halt()
            return
        try:
            found = latched(self.plan.mode, store=self.store)
        except StoreError as exc:
            self.halt("error", f"store unavailable, cannot see the kill switch (fail closed): {exc}", audit_ok=False)
            return
        if found is not None:
            self.halt("killed", f"kill switch by {found.actor}: {found.reason}")

    def halt(self, status: str, reason: str, *, audit_ok: bool = True) -> None:
        """HALTED at once, cancel open orders, then stop the node."""
        from nautilus_trader.model.enums import TradingState

        if self._halting:
            return
        self._halting = True
        self.status, self.reason = status, reason
        kernel = self.node.kernel
        kernel.risk_engine.set_trading_state(TradingState.HALTED)
        self.halted_at = time.monotonic()
        if audit_ok:
            with contextlib.suppress(StoreError):
                audit.append(self.actor, "session.halted", self.session_id,
                             {"reason": reason, "status": status, "trading_state": "HALTED"}, store=self.store)
        for strategy in kernel.trader.strategies():
            with contextlib.suppress(Exception):
                strategy.cancel_all_orders(strategy.config.instrument_id)
        self._cancel_deadline = time.monotonic() + CANCEL_GRACE_S
        self._continue_halt()

    def _continue_halt(self) -> None:
        open_orders = len(self.node.kernel.cache.orders_open())
        if open_orders == 0:
            self._stop_node()
        elif time.monotonic() >= self._cancel_deadline:
            # Never report a clean kill while orders may still work at the broker.
            self.status = "error"
            self.reason += (f"; {open_orders} order(s) still open at the broker after {CANCEL_GRACE_S:.0f} s "
                            "— check and cancel them at IB")
            self._stop_node()

    def stop(self, status: str, reason: str) -> None:
        if self._halting or self._stopping:
            return
        self.status, self.reason = status, reason
        self._stop_node()

    def _stop_node(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        with contextlib.suppress(Exception):
            self.snapshot()
        self.node.stop()

    def watch_startup(self, deadline_s: float) -> threading.Thread:
        """Until the trader runs, watch from a thread: the kill switch, the stop time and a startup
        deadline (a node that never finishes connecting or reconciling would otherwise wait forever,
        deaf to both)."""
        from ats.killswitch import POLL_INTERVAL_S, latched

        def watch() -> None:
            deadline = time.monotonic() + deadline_s
            while not self.started.wait(POLL_INTERVAL_S * 4):
                if self._halting or self._stopping:
                    return
                try:
                    found = latched(self.plan.mode, store=self.store)
                except StoreError as exc:
                    self._halt_threadsafe("error", f"store unavailable while the node starts (fail closed): {exc}")
                    return
                if found is not None:
                    self._halt_threadsafe("killed", f"kill switch by {found.actor}: {found.reason}")
                    return
                if self.stop_at is not None and dt.datetime.now(dt.UTC) >= self.stop_at:
                    self._halt_threadsafe("stopped", "reached the stop time before the node started trading")
                    return
                if time.monotonic() >= deadline:
                    self._halt_threadsafe("error", f"the node did not start trading within {deadline_s:.0f} s "
                                                   "(gateway connection, reconciliation or instruments)")
                    return

        thread = threading.Thread(target=watch, name="ats-startup-watch", daemon=True)
        thread.start()
        return thread

    def _halt_threadsafe(self, status: str, reason: str) -> None:
        loop = self.node.kernel.loop
        if loop.is_running():
            loop.call_soon_threadsafe(self.halt, status, reason)

    def request_stop(self, reason: str) -> None:
        """Thread-safe: stop the session normally (status ``stopped``)."""
        self.node.kernel.loop.call_soon_threadsafe(self.stop, "stopped", reason)

    def on_signal(self, sig: signal.Signals) -> None:
        self.halt("killed", f"received {sig.name}")


def _iso_ns(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _bar_date(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).date().isoformat()


def _make_actor(guard: SessionGuard):  # noqa: ANN202
    from nautilus_trader.common.actor import Actor
    from nautilus_trader.config import ActorConfig

    class SessionActor(Actor):
        """Starts the guard's timers once the node runs."""

        def on_start(self) -> None:
            guard.start_timers()

    return SessionActor(ActorConfig(component_id="ATS-SESSION"))


def _make_node(config, guard_ref: list):  # noqa: ANN001, ANN202
    from nautilus_trader.adapters.interactive_brokers.factories import (
        InteractiveBrokersLiveDataClientFactory,
        InteractiveBrokersLiveExecClientFactory,
    )
    from nautilus_trader.live.node import TradingNode

    from ats.node import IB

    class AtsTradingNode(TradingNode):
        """A TradingNode whose SIGINT/SIGTERM take the kill-switch path (halt, cancel, stop)."""

        def _loop_sig_handler(self, sig: signal.Signals) -> None:
            if guard_ref:
                guard_ref[0].on_signal(sig)
            else:
                super()._loop_sig_handler(sig)

    # A fresh event loop per node: a previous node in this process (the demo, an in-process
    # flow, a test) closed its loop when it was disposed.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    node = AtsTradingNode(config=config, loop=loop)
    node.add_data_client_factory(IB, InteractiveBrokersLiveDataClientFactory)
    node.add_exec_client_factory(IB, InteractiveBrokersLiveExecClientFactory)
    return node


@dataclass
class SessionRequest:
    """What to run: the mode, the sleeves and how to stop and confirm."""

    mode: Mode
    sleeves: list[Sleeve]
    until: str | None = None
    i_understand: str | None = None
    flow_run_id: str | None = None
    log_dir: Path | None = None
    log_level: str = "ERROR"


def check_gates(request: SessionRequest, settings: Settings, store: Store, *,
                paper_answers: Callable[[], bool] | None = None,
                show_summary: Callable[[dict[str, Any]], None] | None = None,
                ask: Callable[[str], str] | None = None, interactive: bool | None = None) -> tuple[str, dict[str, Any]]:
    """Every gate of the mode (typed confirmation included for live); returns (account, summary)."""
    gates = Gates(request.mode, settings, store, request.sleeves)
    if request.mode == "paper":
        account = gates.check_paper()
        approvals: list = []
    else:
        account, approvals = gates.check_live_before_confirmation(paper_answers or _paper_gateway_answers(settings))
    plan = plan_for(settings.mode(request.mode), request.sleeves, account, settings.redis_url, settings.node_id)
    summary = session_summary(plan, approvals, request.until)
    if show_summary is not None:
        show_summary(summary)
    if request.mode == "live":
        gates.confirm(account, request.i_understand, ask=ask, interactive=interactive)
    return account, summary


def _paper_gateway_answers(settings: Settings) -> Callable[[], bool]:
    """Is the paper gateway up?  Anything but a refused connection counts as up: a gateway that
    accepts TCP but hangs (a 2FA dialog, a stall) may still hold the one IB session."""
    def answers() -> bool:
        from ats.gateway.probe import probe

        return probe(settings.ib_host, settings.ib_paper_port, timeout=3.0).reason != "refused"
    return answers


def session_summary(plan: NodePlan, approvals: list, until: str | None) -> dict[str, Any]:
    by_key = {f"{a.strategy}@{a.instrument}": a for a in approvals}
    return {
        "mode": plan.mode,
        "account": mask_account(plan.account_id),
        "gateway": f"{plan.host}:{plan.port}",
        "trader_id": plan.trader_id,
        "sleeves": [
            {**s.as_dict(), "approval": (
                {"by": by_key[s.key].approved_by, "at": by_key[s.key].approved_at, "note": by_key[s.key].note}
                if s.key in by_key else None)}
            for s in plan.sleeves
        ],
        "risk_caps": plan.risk_caps(),
        "until": _describe_stop(until),
    }


def _describe_stop(until: str | None) -> str:
    try:
        stop_at = resolve_stop_time(until)
    except InputError as exc:
        return f"(refused: {exc})"
    return (f"{stop_at.astimezone(NEW_YORK):%Y-%m-%d %H:%M} America/New_York ({stop_at:%H:%M} UTC)"
            + ("" if until else ", the market close"))


def summary_for(mode: Mode, settings: Settings, sleeves: list[dict[str, Any]], account: str,
                approvals: list[dict[str, Any]], until: str | None) -> dict[str, Any]:
    """:func:`session_summary` from plain data (what the Prefect tasks pass around)."""
    from ats.approvals import Approval

    plan = plan_for(settings.mode(mode), [Sleeve(**s) for s in sleeves], account, settings.redis_url,
                    settings.node_id)
    return session_summary(plan, [Approval(**a) for a in approvals], until)


def run_session(request: SessionRequest, settings: Settings, store: Store, *,
                account: str, on_running: Callable[[SessionGuard], None] | None = None) -> SessionOutcome:
    """Run the node for ``request`` (gates already passed); always disposes the node."""
    from ats.sessions import finish_session, start_session

    plan = plan_for(settings.mode(request.mode), request.sleeves, account, settings.redis_url, settings.node_id)
    stop_at = resolve_stop_time(request.until)
    strategies = []
    for sleeve in plan.sleeves:
        config = sleeve.strategy_config()
        from ats.strategies import get_strategy

        strategy_cls, _ = get_strategy(sleeve.strategy).load()
        strategies.append(strategy_cls(config))
    from ats.node import CLIENT_ID

    gates = Gates(request.mode, settings, store, request.sleeves)
    gates.recheck_before_start()
    gates.client_id_free(plan.host, plan.port, CLIENT_ID)
    record = start_session(request.mode, list(plan.sleeves), trader_id=plan.trader_id,
                           account_masked=mask_account(account), gateway=f"{plan.host}:{plan.port}",
                           actor=settings.operator, flow_run_id=request.flow_run_id, store=store)
    if request.mode == "live":
        _notify(settings, "go_live", account, [s.key for s in plan.sleeves], settings.operator, plan.host, plan.port)
    guard_ref: list[SessionGuard] = []
    node = None
    status, reason, summary = "error", "the node did not start", {}
    try:
        node = _make_node(build_node_config(plan, request.log_dir, request.log_level), guard_ref)
        guard = SessionGuard(session_id=record.id, plan=plan, store=store, actor=settings.operator,
                             node=node, stop_at=stop_at)
        guard_ref.append(guard)
        node.trader.add_actor(_make_actor(guard))
        for strategy in strategies:
            node.trader.add_strategy(strategy)
        node.build()
        guard.install()
        if on_running is not None:
            on_running(guard)
        guard.watch_startup(STARTUP_DEADLINE_S)
        node.run(raise_exception=True)
        summary = _final_summary(guard)
        status, reason = guard.status, guard.reason
    except Exception as exc:  # noqa: BLE001 - the session must end recorded, whatever happened
        status, reason = "error", f"{type(exc).__name__}: {exc}"
    finally:
        if node is not None:
            # The IB adapter leaves bar-completion tasks pending at dispose; asyncio would log
            # each as "Task was destroyed but it is pending!".  They are harmless here.
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
            _cancel_pending_tasks(node)
            with contextlib.suppress(Exception):
                node.dispose()
        forget_ib_clients()
        try:
            finish_session(record.id, status, reason, settings.operator, summary=summary, store=store)
        except StoreError as exc:
            reason = f"{reason}; and the session could not be marked {status}: {exc}"
            status = "error"
    if status == "killed":
        _notify(settings, "kill_switch", request.mode, reason, settings.operator, record.id)
    _notify(settings, "session_ended", request.mode, record.id, status, reason,
            {"realised PnL": summary.get("realized_pnl"), "orders": summary.get("orders")})
    return SessionOutcome(record.id, request.mode, status, reason, summary)


def _notify(settings: Settings, builder: str, *args: Any) -> None:
    """Send an ``ats.alerts`` notification (go-live, kill switch, session ended).  Never raises:
    a failing notification service must not change how a session ends."""
    from ats import alerts

    with contextlib.suppress(Exception):
        alerts.send_message(getattr(alerts, builder)(*args), urls=settings.alert_url_list)


def _cancel_pending_tasks(node) -> None:  # noqa: ANN001
    """Cancel and finish the tasks the node leaves on its loop (executor workers, the adapter's
    bar timers) before the loop is closed, so that none is garbage-collected on a closed loop."""
    loop = node.get_event_loop()
    if loop is None or loop.is_closed() or loop.is_running():
        return
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def _final_summary(guard: SessionGuard) -> dict[str, Any]:
    from ats.sessions import session_detail

    try:
        telemetry = guard.telemetry()
    except Exception:  # noqa: BLE001
        telemetry = {}
    try:
        events = session_detail(guard.session_id, store=guard.store)["order_events"]
    except StoreError:
        events = []
    fills = [e for e in events if e["event"] == "filled"]
    return {
        "trades": [{"ts": e["ts"], "side": e["side"], "quantity": e["details"].get("last_qty", e["quantity"]),
                    "price": e["details"].get("last_px"), "instrument": e["instrument"]} for e in fills],
        "orders": {kind: sum(1 for e in events if e["event"] == kind)
                   for kind in ("intent", "denied", "submitted", "rejected", "filled", "canceled")},
        "positions": telemetry.get("positions", []),
        "realized_pnl": telemetry.get("realized_pnl"),
        "unrealized_pnl": telemetry.get("unrealized_pnl"),
    }


def json_summary(outcome: SessionOutcome) -> str:
    return json.dumps(outcome.as_dict(), default=str, sort_keys=True)


__all__ = ["SessionError", "SessionGuard", "SessionOutcome", "SessionRequest", "check_gates", "run_session"]

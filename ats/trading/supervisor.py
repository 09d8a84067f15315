"""The session's supervisor: halt, kill switch, stop, start-up watchdog and helper threads.

:class:`SessionGuard` sits in the node (created by :func:`ats.trading.runner.run_session`):

* The kill switch (``ats kill`` in any process) is polled every 50 ms, and heard at once on the
  session's kill socket: trading state HALTED, open orders cancelled (again each second while
  they stay open), node stopped, session ``killed``.  SIGINT/SIGTERM, a flow run set to any
  state but Running and a store failure take the same path.
* A live session also reads its sleeves' go-live approvals every second: ``ats revoke-live``
  of one halts it the same way (session ``killed``, the reason naming who revoked it).
* A normal stop (the stop time, ``--for``) sends no new orders and lets the ones in flight
  settle before the node stops.
* Until the trader runs, a watcher thread obeys the kill switch, the stop time, a signal and
  the start-up deadline, and aborts the start-up (the IB adapter's connect may retry forever
  against a gateway that never answers the handshake).
* The session follows its flow run and watches its own gateway connection.

Orders go through :class:`ats.trading.interposer.OrderInterposer`; bars and snapshots through
:class:`ats.trading.telemetry.SessionTelemetry`; every row the session writes (audit, order
events, telemetry) through its :class:`ats.trading.writer.SessionWriter`, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ats.core.errors import StoreError
from ats.governance import audit
from ats.trading.interposer import OrderInterposer
from ats.trading.telemetry import SNAPSHOT_INTERVAL_S, SessionTelemetry
from ats.trading.writer import SessionWriter

if TYPE_CHECKING:
    from nautilus_trader.live.node import TradingNode
    from nautilus_trader.model.data import Bar
    from nautilus_trader.model.identifiers import ClientOrderId
    from nautilus_trader.model.orders import Order

    from ats.store import Store
    from ats.trading.node import NodePlan
    from ats.trading.run_link import RunLink

# How often a session started by a flow reads its flow run's state (a Suspend, Cancel or a
# forced Failed/Crashed in the Prefect UI halts it within about this long).
RUN_STATE_POLL_S = 1.0
# How often the session looks at its own gateway connection (socket, IB error 1100) and, while
# it is lost, feeds the gateway health state machine (K failures in a row → one alert).
CONNECTION_CHECK_S = 1.0
# How long a halt waits for the broker to confirm its cancels (and a normal stop for in-flight
# orders to settle) before ending the session anyway — in error, saying so.  IB's cancel acks
# take well under a second; 10 s leaves room for a loaded machine and still ends the node well
# inside Prefect's 30 s between SIGTERM and SIGKILL.
CANCEL_GRACE_S = 10.0
# How often a live session reads whether its sleeves' go-live approvals still stand: a
# revocation (``ats revoke-live``) halts it like the kill switch.
APPROVAL_POLL_S = 1.0
CANCEL_RESEND_S = 1.0  # while halting, an open order without a pending cancel is cancelled again after this
# How often the start-up watcher looks at the kill switch, the stop time and the deadline, and
# re-cancels the node's start-up tasks once it aborts (the IB adapter swallows some cancels).
STARTUP_WATCH_INTERVAL_S = 0.1


class SessionGuard:
    """Sits in the node: audits and records, polls the kill switch, stops the node.

    Created by :func:`ats.trading.runner.run_session`; its methods run on the node's event-loop thread.
    """

    def __init__(self, *, session_id: str, plan: NodePlan, store: Store, actor: str, node: TradingNode,
                 stop_at: dt.datetime | None, for_seconds: float | None = None) -> None:
        self.session_id = session_id
        self.plan = plan
        self.store = store
        self.actor = actor
        self.node = node
        self.stop_at = stop_at
        self.for_seconds = for_seconds
        self.trading_since: dt.datetime | None = None
        # "starting" until the trader runs; "trading" after; "ended" once build/run returned.
        # Transitions out of "starting" (the loop thread's start_timers, the watcher's or a
        # signal's abort_startup) happen under this lock: exactly one of them wins.
        self.phase = "starting"
        self.startup_aborted = False
        self._phase_lock = threading.Lock()
        self.pending_signal: signal.Signals | None = None  # SIGINT/SIGTERM seen (any phase)
        # Until the trader runs (start_timers), ending means the node never started trading.
        self.status = "error"
        self.reason = "the node stopped before it started trading (connection, reconciliation or portfolio failed)"
        self.started = threading.Event()
        self.halted_at: float | None = None
        self._halting = False
        self._halt_asked = False  # request_halt() was called (from any thread); the halt runs on the loop
        self._stopping = False  # a normal stop was asked for: no new orders, in-flight ones settle
        self._node_stop_requested = False
        self._settle_deadline = 0.0
        self._cancel_deadline = 0.0
        # halt/poll_kill/stop may be entered from the node's loop and from the clock's timer
        # thread at once (a halt from a signal, the run's state or a kill message while the kill
        # poll fires): one at a time, or a poll would see the halt half begun.
        self._halt_lock = threading.RLock()
        self._cancel_sent: dict[ClientOrderId, float] = {}  # client order id -> monotonic time of our last cancel
        self.ended = threading.Event()  # set once build/run returned: the helper threads end
        self._next_approval_check = 0.0
        self._approval_sets: list | None = None  # the live sleeves' params/bar-spec sets, computed once
        # Every row the session writes, in order, on one thread; a failed write halts the session.
        self.writer = SessionWriter(node.kernel.loop, self._store_failed)
        self.interposer = OrderInterposer(self)
        self.recorder = SessionTelemetry(session_id=session_id, plan=plan, store=store, node=node,
                                         orders=self.interposer.orders, writer=self.writer)

    @property
    def halting(self) -> bool:
        """Halting (kill switch, signal, store failure…): nothing new goes out."""
        return self._halting

    @property
    def halt_requested(self) -> bool:
        """A halt began or was asked for (a kill message, the run's state, a signal) and waits for
        the node's loop: an order waiting there for its intent row must give way to it."""
        return self._halting or self._halt_asked or self.pending_signal is not None

    @property
    def stopping(self) -> bool:
        """A normal stop is under way: no new orders, in-flight ones settle."""
        return self._stopping

    def _store_failed(self, reason: str) -> None:
        if self.phase == "ended":
            return  # the node's run is over; the runner says the failure in the session's outcome
        self.halt("error", reason, audit_ok=False)

    # Wiring ------------------------------------------------------------------------------
    def install(self) -> None:
        """Interpose on the risk engine and follow the order events and the sleeves' bars."""
        self.interposer.install()
        msgbus = self.node.kernel.msgbus
        for bar_type in self.interposer.bar_types.values():
            msgbus.subscribe(f"data.bars.{bar_type}", self.on_bar)

    def start_timers(self) -> None:
        """Called once the node is running (from the session actor's on_start)."""
        from ats.governance.killswitch import POLL_INTERVAL_S

        with self._phase_lock:
            if self.startup_aborted:
                return  # the start-up was aborted a moment ago: never start trading now
            self.status, self.reason = "stopped", "stopped"
            self.phase = "trading"
        self.trading_since = dt.datetime.now(dt.UTC)
        self.started.set()

        self.poll_kill()  # the kill switch and (live) the approvals as it begins trading, then every poll
        clock = self.node.kernel.clock
        clock.set_timer("ats-kill-poll", dt.timedelta(seconds=POLL_INTERVAL_S), callback=lambda _e: self.poll_kill())
        clock.set_timer("ats-snapshot", dt.timedelta(seconds=SNAPSHOT_INTERVAL_S), callback=lambda _e: self.snapshot())
        if self.for_seconds is not None:
            # The session's length starts now, when the node is running, not when it was asked for.
            self.stop_at = self.trading_since + dt.timedelta(seconds=self.for_seconds)
            clock.set_time_alert("ats-stop-time", self.stop_at,
                                 callback=lambda _e: self.stop("stopped", f"ran for its {self.for_seconds:g} s"))
        elif self.stop_at is not None:
            if self.stop_at <= dt.datetime.now(dt.UTC):
                self.stop("stopped", "stop time already reached")
            else:
                clock.set_time_alert("ats-stop-time", self.stop_at,
                                     callback=lambda _e: self.stop("stopped", "reached the stop time"))
        self.snapshot()

    # Bars and telemetry ------------------------------------------------------------------------
    def on_bar(self, bar: Bar) -> None:
        if self._stopping or self._halting:
            return  # the strategies are stopping: bars the adapter flushes now are never traded on
        # Record once this publish is over: the strategies have then seen the bar, so a recorded
        # bar always comes after the decision it triggered (and that decision's audited intent).
        self.node.kernel.loop.call_soon(self.recorder.record_bar, bar)

    def telemetry(self) -> dict[str, Any]:
        return self.recorder.read(self.stop_at, self.trading_since)

    def snapshot(self) -> None:
        self.recorder.snapshot(self.stop_at, self.trading_since)

    # Kill switch and stopping ------------------------------------------------------------------
    def poll_kill(self) -> None:
        with self._halt_lock:
            self._poll_kill()

    def _poll_kill(self) -> None:
        from ats.governance.killswitch import latched

        if self._halting:
            self._continue_halt()
            return
        if self._stopping:
            self._continue_stop()
        try:
            found = latched(self.plan.mode, store=self.store)
        except StoreError as exc:
            self.halt("error", f"store unavailable, cannot see the kill switch (fail closed): {exc}", audit_ok=False)
            return
        if found is not None:
            self.halt("killed", f"kill switch by {found.actor}: {found.reason}")
            return
        if self.plan.mode == "live" and time.monotonic() >= self._next_approval_check:
            self._next_approval_check = time.monotonic() + APPROVAL_POLL_S
            self._check_approvals()

    def _check_approvals(self) -> None:
        """A live session trades only while every sleeve's go-live approval stands: a revocation
        halts it (HALTED, orders cancelled, node stopped, session ``killed``)."""
        from ats.core.pins import param_set
        from ats.governance.approvals import revocation_among

        try:
            if self._approval_sets is None:
                self._approval_sets = [param_set(s.strategy, s.instrument, s.params, s.bar_spec)
                                       for s in self.plan.sleeves]
            revoked = revocation_among(self.plan.sleeves, store=self.store, pinned=self._approval_sets)
        except StoreError as exc:
            self.halt("error", f"store unavailable, cannot see the go-live approvals (fail closed): {exc}",
                      audit_ok=False)
            return
        if revoked is not None:
            self.halt("killed", revoked)

    def halt(self, status: str, reason: str, *, audit_ok: bool = True, cause: dict[str, Any] | None = None) -> None:
        """HALTED at once, cancel open orders, then stop the node.  ``cause`` is audited with it
        (how the halt arrived: ``{"via": "kill-message"}``, ``{"flow_run_state": "Suspended"}``…)."""
        with self._halt_lock:
            self._halt(status, reason, audit_ok, cause)

    def _halt(self, status: str, reason: str, audit_ok: bool, cause: dict[str, Any] | None) -> None:
        from nautilus_trader.model.enums import TradingState

        if self._halting:
            return
        self._cancel_deadline = time.monotonic() + CANCEL_GRACE_S
        self._halting = True
        self.status, self.reason = status, reason
        kernel = self.node.kernel
        kernel.risk_engine.set_trading_state(TradingState.HALTED)
        self.halted_at = time.monotonic()
        for strategy in kernel.trader.strategies():
            with contextlib.suppress(Exception):
                strategy.cancel_all_orders(strategy.config.instrument_id)
        if audit_ok:
            # Queued on the session's writer, after the rows of what happened before the halt:
            # the cancels never wait for the store.
            payload = {"reason": reason, "status": status, "trading_state": "HALTED", **(cause or {})}
            self.writer.put("store unavailable while recording the halt",
                            lambda: audit.append(self.actor, "session.halted", self.session_id, payload,
                                                 store=self.store))
        self._continue_halt()

    def _continue_halt(self) -> None:
        """Called every kill poll while halting.  An order still in flight when the halt began
        (submitted, not yet acknowledged) is not cancelled by the cancel-all — the IB adapter
        cancels only the orders it knows as open — and becomes open at the broker later; every
        open order without a pending cancel is therefore cancelled here, again each second
        while it stays open.  The node stops only when nothing is open or in flight."""
        cache = self.node.kernel.cache
        self._cancel_open_orders(cache.orders_open())
        unsettled = {o.client_order_id for o in cache.orders_open()}
        unsettled |= {o.client_order_id for o in cache.orders_inflight()}
        if not unsettled:
            self._stop_node()
        elif time.monotonic() >= self._cancel_deadline and not self._node_stop_requested:
            # Once: the kill poll keeps calling while the node stops (Nautilus' timers run on).
            # Never report a clean kill while orders may still work at the broker.
            self.status = "error"
            self.reason += (f"; {len(unsettled)} order(s) still open or in flight at the broker after "
                            f"{CANCEL_GRACE_S:.0f} s — check and cancel them at IB")
            self._stop_node()

    def _cancel_open_orders(self, orders: list[Order]) -> None:
        from nautilus_trader.model.enums import OrderStatus

        strategies = {s.id: s for s in self.node.kernel.trader.strategies()}
        now = time.monotonic()
        for order in orders:
            if order.status == OrderStatus.PENDING_CANCEL:
                continue
            if now - self._cancel_sent.get(order.client_order_id, -CANCEL_RESEND_S) < CANCEL_RESEND_S:
                continue
            strategy = strategies.get(order.strategy_id)
            if strategy is None:
                continue  # not a strategy's order (external): the node has no way to cancel it
            self._cancel_sent[order.client_order_id] = now
            with contextlib.suppress(Exception):
                strategy.cancel_order(order)

    def stop(self, status: str, reason: str) -> None:
        """A normal stop: no new orders from now on; orders already sent settle (filled,
        rejected or acknowledged) for up to :data:`CANCEL_GRACE_S`, then the node stops — so a
        stop never orphans an order in flight and the next session starts from a known book."""
        if self._halting or self._stopping:
            return
        self.status, self.reason = status, reason
        self._stopping = True
        self._settle_deadline = time.monotonic() + CANCEL_GRACE_S
        self._continue_stop()

    def _continue_stop(self) -> None:
        if self._node_stop_requested:
            return
        unsettled = self._orders_in_flight()
        if unsettled and time.monotonic() < self._settle_deadline:
            return  # the kill-poll timer calls again in 50 ms
        if unsettled:
            # Never report a clean stop while an order may still be working at the broker.
            self.status = "error"
            self.reason += (f"; {unsettled} order(s) still in flight after {CANCEL_GRACE_S:.0f} s at the stop "
                            "— check them at IB")
        self._stop_node()

    def _orders_in_flight(self) -> int:
        """Orders sent but not yet acknowledged, market orders not yet filled, and orders waiting
        for their intent row (denied as soon as the loop sees the stop)."""
        from nautilus_trader.model.enums import OrderType

        cache = self.node.kernel.cache
        inflight = {o.client_order_id for o in cache.orders_inflight()}
        inflight |= {o.client_order_id for o in cache.orders_open() if o.order_type == OrderType.MARKET}
        return len(inflight) + self.interposer.orders_waiting

    def _stop_node(self) -> None:
        if self._node_stop_requested:
            return
        self._node_stop_requested = True
        self._stopping = True
        with contextlib.suppress(Exception):
            self.snapshot()
        self.node.stop()

    def watch_startup(self, deadline_s: float) -> threading.Thread:
        """Until the trader runs, watch from a thread: the kill switch, the stop time and a
        startup deadline.  Started before the node is built: against a gateway that accepts TCP
        but never answers the handshake, the IB adapter's connect retries forever — deaf to
        everything but this watcher."""
        from ats.governance.killswitch import latched

        def watch() -> None:
            deadline = time.monotonic() + deadline_s
            while not self.started.wait(STARTUP_WATCH_INTERVAL_S):
                if self.phase != "starting":
                    return
                if self.startup_aborted:
                    self._cancel_startup_threadsafe()
                    continue
                if self._halting or self._stopping:
                    return
                if self.pending_signal is not None:  # the loop may not be running to take it
                    self.abort_startup("killed", f"received {self.pending_signal.name} before the node "
                                                 "started trading")
                    continue
                try:
                    found = latched(self.plan.mode, store=self.store)
                except Exception as exc:  # noqa: BLE001 - fail closed: an unguarded start-up is worse
                    self.abort_startup("error", f"store unavailable while the node starts (fail closed): {exc}",
                                       audit_ok=False)
                    continue
                if found is not None:
                    self.abort_startup("killed", f"kill switch by {found.actor}: {found.reason}")
                elif self.stop_at is not None and dt.datetime.now(dt.UTC) >= self.stop_at:
                    self.abort_startup("stopped", "reached the stop time before the node started trading")
                elif time.monotonic() >= deadline:
                    self.abort_startup("error", f"the node did not start trading within {deadline_s:.0f} s "
                                                "(gateway connection, handshake, reconciliation or instruments)")

        thread = threading.Thread(target=watch, name="ats-startup-watch", daemon=True)
        thread.start()
        return thread

    def abort_startup(self, status: str, reason: str, *, audit_ok: bool = True) -> None:
        """End a session that has not started trading: record why, then cancel whatever the node
        is waiting on (any thread; repeated by the watcher until the node's start returns)."""
        with self._phase_lock:
            if self.startup_aborted or self.phase == "ended":
                return
            if self.phase == "trading":
                # Trading started a moment ago: take the normal halt/stop path on the loop instead.
                late = self.halt if status != "stopped" else self.stop
                with contextlib.suppress(RuntimeError):
                    self.node.kernel.loop.call_soon_threadsafe(late, status, reason)
                return
            self.startup_aborted = True
            self._halting = True  # nothing may go out from here on
            self.status, self.reason = status, reason
        self.halted_at = time.monotonic()
        if audit_ok:
            with contextlib.suppress(StoreError):
                audit.append(self.actor, "session.halted", self.session_id,
                             {"reason": reason, "status": status, "phase": "startup"}, store=self.store)
        self._cancel_startup_threadsafe()

    def _cancel_startup_threadsafe(self) -> None:
        loop = self.node.kernel.loop
        if loop.is_running() and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._cancel_startup_tasks)

    def _cancel_startup_tasks(self) -> None:
        """On the loop: cancel every task (the client's connect loop, the kernel's start)."""
        for task in asyncio.all_tasks(self.node.kernel.loop):
            task.cancel()

    def request_stop(self, reason: str) -> None:
        """Thread-safe: stop the session normally (status ``stopped``), whatever its phase."""
        if self.phase == "ended":
            return
        if self.phase == "starting":
            self.abort_startup("stopped", reason, audit_ok=False)
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the session has ended
            self.node.kernel.loop.call_soon_threadsafe(self.stop, "stopped", reason)

    def request_halt(self, status: str, reason: str, cause: dict[str, Any] | None = None) -> None:
        """Thread-safe: the kill-switch path (halt, cancel, stop) from any thread, any phase."""
        if self.phase == "ended":
            return
        if self.phase == "starting":
            self.abort_startup(status, reason)  # trading began meanwhile: it takes the halt path itself
            return
        self._halt_asked = True
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the session has ended
            self.node.kernel.loop.call_soon_threadsafe(lambda: self.halt(status, reason, cause=cause))

    def listen_for_kill(self, store_key: str) -> threading.Thread | None:
        """The kill switch's fast path (:mod:`ats.governance.kill_wire`): a ``kill`` message addressed to this
        session halts it at once; a ``wake`` makes it read the kill switch in the store now."""
        from ats.governance import kill_wire

        try:
            listener = kill_wire.Listener(store_key, self.plan.mode, self.session_id)
        except OSError as exc:  # an unsafe or unwritable socket directory: the 50 ms poll remains
            logging.getLogger("ats.trading.supervisor").warning("no kill socket (%s): the kill switch is polled only", exc)
            return None

        def listen() -> None:
            try:
                while not self.ended.is_set():
                    message = listener.receive(0.5)
                    if message is None or self._halting:
                        continue
                    if message.get("kind") == "kill" and kill_wire.addressed_to(message, self.plan.mode,
                                                                                 self.session_id):
                        self.request_halt("killed", f"kill switch by {str(message.get('actor'))[:200]}: "
                                                    f"{str(message.get('reason'))[:1000]}",
                                          {"via": "ats kill (direct message)"})
                    elif message.get("kind") == "wake":
                        self._poll_kill_now()
            finally:
                listener.close()

        thread = threading.Thread(target=listen, name="ats-kill-listener", daemon=True)
        thread.start()
        return thread

    def _poll_kill_now(self) -> None:
        from ats.governance.killswitch import latched

        if self.phase == "trading":
            with contextlib.suppress(RuntimeError):
                self.node.kernel.loop.call_soon_threadsafe(self.poll_kill)
        elif self.phase == "starting":
            with contextlib.suppress(Exception):
                found = latched(self.plan.mode, store=self.store)
                if found is not None:
                    self.abort_startup("killed", f"kill switch by {found.actor}: {found.reason}")

    def follow_run(self, link: RunLink) -> threading.Thread:
        """A session started by a flow follows its flow run: any state but Running (Cancelling,
        Suspended/Paused, Failed, Crashed… set in the Prefect UI or API) halts it through the
        kill-switch path, audited with that state; meanwhile the run shows the telemetry."""
        def follow() -> None:
            published = -1
            while not self.ended.wait(RUN_STATE_POLL_S):
                state = None
                with contextlib.suppress(Exception):  # an API blip must not halt real trading
                    state = link.state()
                if state is not None and state[0] != "RUNNING" and not self._halting:
                    self.request_halt("killed", f"the flow run was set to {state[1]} (in the Prefect UI or API)",
                                      {"flow_run_state": state[1], "flow_run_id": link.flow_run_id})
                latest = self.recorder.latest
                if self.recorder.seq != published and latest is not None:
                    published = self.recorder.seq
                    with contextlib.suppress(Exception):
                        link.publish(self.session_id, self.plan.mode, latest)

        # The thread runs in a copy of the caller's context: Prefect keeps its settings in a context
        # variable, and a bare thread falls back to the settings Prefect read from the environment
        # at import (with ``temporary_settings`` — an in-process flow, the tests — no API at all:
        # Prefect then started an ephemeral server of its own from this thread).  The link talks to
        # the run's API (``link.api_url``) through clients of its own, never the engine's.
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(follow,), name="ats-run-follower", daemon=True)
        thread.start()
        return thread

    def monitor_connection(self, check: Callable[[str], object]) -> threading.Thread:
        """Every :data:`CONNECTION_CHECK_S`: the session's own view of its gateway connection
        (``connected``, ``disconnected`` — the socket is gone —, ``ib_lost`` — error 1100, IB's
        servers unreachable from the gateway), handed to ``check`` (from another thread)."""
        def watch() -> None:
            while not self.ended.wait(CONNECTION_CHECK_S):
                if self.phase == "trading" and not self._node_stop_requested:
                    with contextlib.suppress(Exception):
                        check(ib_connection())

        thread = threading.Thread(target=watch, name="ats-connection-monitor", daemon=True)
        thread.start()
        return thread

    def on_signal(self, sig: signal.Signals) -> None:
        """On the node's loop: SIGINT/SIGTERM take the kill-switch path (without latching it)."""
        if self.phase == "starting":
            self.abort_startup("killed", f"received {sig.name} before the node started trading")
        elif self.phase == "trading":
            self.halt("killed", f"received {sig.name}")


def ib_connection() -> str:
    """The IB adapter's connection in this process: ``connected``, ``disconnected`` (no socket)
    or ``ib_lost`` (the socket is up but the gateway reported IB error 1100/2110)."""
    from nautilus_trader.adapters.interactive_brokers import factories

    clients = list(getattr(factories, "IB_CLIENTS", {}).values())
    if not clients:
        return "disconnected"
    client = clients[0]
    if not client._eclient.isConnected():  # noqa: SLF001
        return "disconnected"
    return "connected" if client._is_ib_connected.is_set() else "ib_lost"  # noqa: SLF001

"""Runs one trading session: the last gates, the Nautilus TradingNode, its guard, its record.

``python -m ats.paper`` / ``python -m ats.live``, the Prefect flows and the demo all call
:func:`run_session`.  What it guarantees:

* Nothing connects before every gate of the mode passed (see :mod:`ats.trading.gates`).
* **Fail closed on the audit log.**  Every order intent is audited *before* it reaches the risk
  engine and the broker (:mod:`ats.trading.interposer`); if that write fails, the order is
  dropped, the session halts and ends in error.
* The kill switch, SIGINT/SIGTERM, the stop time and the start-up deadline are obeyed by the
  session's guard (:mod:`ats.trading.supervisor`).  The node is always disposed.
* **Every moment of a session obeys the kill switch, the stop time, the startup deadline and one
  SIGTERM**, building the node and connecting included: the IB adapter retries its connect
  forever against a gateway that accepts TCP but never answers the handshake, so a watcher
  thread starts *before* the node is built and, on any of those, aborts the start-up (cancels
  the node's pending tasks until the node's start returns).  The node is built on its running
  loop (:func:`_build_and_run`), so the adapter's client is cached, and closed at dispose, even
  when the kill lands in its first connect.  The session
  row is created only once the node exists, and is always finished before the process ends.
* **A session length starts when the session starts**: ``for_seconds`` (``--for 90s``) counts
  from the moment the node is running (connected, reconciled, strategies started), so a slow
  start (a cold Prefect API, a gateway still logging in) never eats the session.  An absolute
  ``until`` keeps its meaning (a time of day), and one already past is refused
  (:mod:`ats.trading.stop_time`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from ats.core.errors import SessionError, StoreError
from ats.core.settings import Mode, Settings, mask_account
from ats.core.sleeves import Sleeve
from ats.gateway.identity import identify_gateway
from ats.store import Store
from ats.trading.gates import Gates
from ats.trading.node import NodePlan, build_node_config, forget_ib_clients, plan_for
from ats.trading.stop_time import resolve_stop_time
from ats.trading.summary import SessionOutcome, node_summary, order_summary
from ats.trading.supervisor import SessionGuard

if TYPE_CHECKING:
    from nautilus_trader.common.actor import Actor
    from nautilus_trader.config import TradingNodeConfig
    from nautilus_trader.live.node import TradingNode
    from nautilus_trader.trading.strategy import Strategy

    from ats.trading.run_link import RunLink

CANCEL_TASKS_LIMIT_S = 5.0  # disposing: how long the node's leftover tasks get to finish
# Connection (60 s) + reconciliation (30 s) + portfolio (10 s) timeouts of the node, and margin.
STARTUP_DEADLINE_S = 120.0


@dataclass
class SessionRequest:
    """What to run: the mode, the sleeves and how to stop and confirm."""

    mode: Mode
    sleeves: list[Sleeve]
    until: str | None = None
    i_understand: str | None = None
    #: Run this many seconds from the moment the node is running (``--for``); excludes ``until``.
    for_seconds: float | None = None
    #: How long the node may take to connect, reconcile and start trading before the session ends in error.
    startup_deadline_s: float = STARTUP_DEADLINE_S
    #: The runner (or the sim controller) started the simulator it trades against: recorded as such
    #: whatever the simulator answers (see :mod:`ats.gateway.identity`).
    embedded_simulator: bool = False
    flow_run_id: str | None = None
    #: The Prefect flow run the session follows (:class:`ats.trading.run_link.RunLink`): its state halts
    #: the session, its artifacts show the telemetry.  None outside a flow.
    run_link: RunLink | None = None
    #: The session watches its own gateway connection and alerts (through the gateway health
    #: state machine, so one alert per outage whoever sees it first).
    monitor_gateway: bool = True
    log_dir: Path | None = None
    log_level: str = "ERROR"


def run_session(request: SessionRequest, settings: Settings, store: Store, *,
                account: str, on_guard: Callable[[SessionGuard], None] | None = None) -> SessionOutcome:
    """Run the node for ``request`` (gates already passed); always disposes the node.

    ``on_guard(guard)`` is called once the session's guard exists, before the node connects
    (tests and benchmarks start their drivers there; ``guard.started`` tells when it trades)."""
    from ats.governance.sessions import finish_session, start_session

    plan = plan_for(settings.mode(request.mode), request.sleeves, account, settings.redis_url, settings.node_id)
    stop_at = resolve_stop_time(request.until, for_seconds=request.for_seconds)
    strategies: list[Strategy] = []
    for sleeve in plan.sleeves:
        config = sleeve.strategy_config()
        from ats.strategies import get_strategy

        strategy_cls, _ = get_strategy(sleeve.strategy).load()
        strategies.append(strategy_cls(config))
    from ats.trading.node import CLIENT_ID

    gates = Gates(request.mode, settings, store, request.sleeves)
    gates.recheck_before_start()
    gates.client_id_free(plan.host, plan.port, CLIENT_ID)
    identity = identify_gateway(plan.host, plan.port, started_by_ats=request.embedded_simulator)
    gates.recheck_before_start()  # again: the probes may take seconds (a stalled gateway: 5 s each)
    _loaded_code_is_checked_code(gates, plan.sleeves, strategies)
    if request.mode == "live":
        gates.paper_evidence_fits(identity)
    guard_ref: list[SessionGuard] = []
    # The node first: its constructor installs the SIGINT/SIGTERM handlers on its loop, so from
    # the moment the session row exists a signal always reaches the guard (it is queued until
    # the loop runs, which starting the node does) and the row is finished before the process ends.
    outer_handlers = _current_signal_handlers()
    node = _make_node(build_node_config(plan, request.log_dir, request.log_level), guard_ref)
    received = _route_signals_to_guard(node, guard_ref)
    try:
        record = start_session(request.mode, list(plan.sleeves), trader_id=plan.trader_id,
                               account_masked=mask_account(account), gateway=f"{plan.host}:{plan.port}",
                               actor=settings.operator, flow_run_id=request.flow_run_id,
                               gateway_info=identity.as_dict(), store=store)
    except BaseException:
        _dispose(node)
        _restore_signal_handlers(outer_handlers)
        raise
    if request.mode == "live":
        _approvals_stand_at_start(gates, record.id, plan, store, node, outer_handlers)
        _notify(settings, "go_live", account, [s.key for s in plan.sleeves], settings.operator, plan.host, plan.port)
    status, reason = "error", "the node did not start"
    summary: dict[str, Any] = {}
    guard: SessionGuard | None = None
    try:
        guard = SessionGuard(session_id=record.id, plan=plan, store=store, actor=settings.operator,
                             node=node, stop_at=stop_at, for_seconds=request.for_seconds)
        guard_ref.append(guard)
        if received:
            guard.pending_signal = signal.Signals(received[0])  # arrived before the guard existed
        node.trader.add_actor(_make_actor(guard))
        for strategy in strategies:
            node.trader.add_strategy(strategy)
        guard.watch_startup(request.startup_deadline_s)
        _start_helpers(guard, request, settings, store)
        if on_guard is not None:
            on_guard(guard)
        with _startup_abortable(guard):
            node.kernel.loop.run_until_complete(_build_and_run(node, guard))
        guard.phase = "ended"
        summary = node_summary(guard)
        status, reason = guard.status, guard.reason
        if guard.startup_aborted:
            status, reason = _startup_abort_outcome(guard, status, reason)
    except Exception as exc:  # noqa: BLE001 - the session must end recorded, whatever happened
        status, reason = "error", f"{type(exc).__name__}: {exc}"
    finally:
        if guard is not None:
            guard.phase = "ended"
            guard.ended.set()
            from ats.store.engine import WRITE_LOCK_TIMEOUT_S

            # Its last rows (order events, the halt, bars, the last snapshot) before the end; a
            # failure to write them is the session's.  The summary reads the order events written.
            status, reason = _writes_finished(guard, WRITE_LOCK_TIMEOUT_S + 5.0, status, reason)
            if summary:  # the node's run returned: its trades and order counts, as written
                summary = {**summary, **order_summary(guard)}
        _dispose(node)  # closes the node's loop, and with it the node's signal handlers
        with _signals_held(outer_handlers):  # …so a signal now waits until the session row is finished
            if guard is not None and guard.trading_since is not None:
                # The gateway's clock again: how fast it ran over the session (real time or a replay).
                with contextlib.suppress(Exception):
                    identity = identity.with_speed(identify_gateway(plan.host, plan.port, timeout=3.0,
                                                                    started_by_ats=request.embedded_simulator))
            summary = {**summary, "gateway_info": identity.as_dict()}
            try:
                finish_session(record.id, status, reason, settings.operator, summary=summary,
                               gateway_info=identity.as_dict(), store=store)
            except StoreError as exc:
                reason = f"{reason}; and the session could not be marked {status}: {exc}"
                status = "error"
    if status == "killed":
        _notify(settings, "kill_switch", request.mode, reason, settings.operator, record.id)
    _notify(settings, "session_ended", request.mode, record.id, status, reason,
            {"realised PnL": summary.get("realized_pnl"), "orders": summary.get("orders")})
    return SessionOutcome(record.id, request.mode, status, reason, summary)


def _writes_finished(guard: SessionGuard, timeout: float, status: str, reason: str) -> tuple[str, str]:
    """Wait for the session's writer to write what is queued, then end it.  A write that failed
    after the node's loop stopped — too late for the halt it schedules there — or a writer still
    busy after ``timeout`` s is said in the session's outcome, and a stop is then no longer a
    clean one."""
    writer = guard.writer
    if not writer.close(timeout):
        problem = f"the session's last rows (order events, bars, snapshot) were not written within {timeout:g} s"
    elif writer.failure is not None and writer.failure not in reason:
        problem = writer.failure
    else:
        return status, reason
    return ("error" if status == "stopped" else status), f"{reason}; then {problem}"


def _approvals_stand_at_start(gates: Gates, session_id: str, plan: NodePlan, store: Store, node: TradingNode,
                              outer_handlers: SignalHandlers | None) -> None:
    """Read the approvals once more now that the session row exists: a revocation committed
    between the last gate check and the row is refused here, before the node connects (one
    committed after the row is the running session's, which halts on it)."""
    from ats.core.errors import ApprovalMissing
    from ats.governance.approvals import revocation_among
    from ats.governance.sessions import finish_session

    revoked = revocation_among(plan.sleeves, store=store)
    if revoked is None:
        return
    _dispose(node)
    _restore_signal_handlers(outer_handlers)
    finish_session(session_id, "error", f"not started: {revoked} while the session was starting",
                   gates.actor, store=store)
    gates.refuse(ApprovalMissing("approval", f"{revoked} while the session was starting",
                                 "approve it again with ats approve-live once it may trade real money"))


def _start_helpers(guard: SessionGuard, request: SessionRequest, settings: Settings, store: Store) -> None:
    """The session's helper threads: the kill switch's fast path, the flow run it follows, its
    own gateway connection monitor.  Each ends when ``guard.ended`` is set."""
    from ats.governance.killswitch import store_key_of

    guard.listen_for_kill(store_key_of(store))
    if request.run_link is not None:
        guard.follow_run(request.run_link)
    if request.monitor_gateway:
        from ats.gateway.health import SessionConnectionCheck

        guard.monitor_connection(SessionConnectionCheck(request.mode, settings, store))


def _loaded_code_is_checked_code(gates: Gates, sleeves: Sequence[Sleeve], strategies: list[Strategy]) -> None:
    """The gates checked the strategy files' fingerprints; the node runs the classes loaded
    earlier.  Refuse if a file changed in between: the code that runs is the code approved."""
    import sys

    from ats.core.errors import GateRefused
    from ats.strategies import get_strategy

    for sleeve, strategy in zip(sleeves, strategies, strict=True):
        loaded = getattr(sys.modules.get(type(strategy).__module__), "__ats_fingerprint__", None)
        if loaded != get_strategy(sleeve.strategy).fingerprint():
            gates.refuse(GateRefused(
                "approval", f"the code of {sleeve.strategy} changed while the session was starting "
                "(the loaded code is not the code the gates checked)", "start the session again"))


async def _build_and_run(node: TradingNode, guard: SessionGuard) -> None:
    """Build the node's clients on its running loop, then run the node until it stops.

    On a running loop the IB adapter's client starts connecting in a task, and is in the
    adapter's client cache from then on.  Built on a stopped loop (``node.build()`` before
    ``node.run()``), the adapter connects synchronously inside ``build()``; a kill switch that
    cancels that connect made the client's ``start()`` raise before the adapter cached it, so
    :func:`ats.trading.node.forget_ib_clients` could not close it: its socket stayed open to the
    gateway, holding the node's client id, until the garbage collector found it."""
    if guard.startup_aborted:
        return
    node.build()
    guard.install()
    await node.run_async()


@contextlib.contextmanager
def _startup_abortable(guard: SessionGuard) -> Iterator[None]:
    """The node's start ends in ``CancelledError`` when the guard aborted the start-up (the IB
    client's connect loop was cancelled); that is the abort taking effect, not a failure."""
    try:
        yield
    except asyncio.CancelledError:
        if not guard.startup_aborted:
            raise


def _startup_abort_outcome(guard: SessionGuard, status: str, reason: str) -> tuple[str, str]:
    """An aborted start-up with orders already known open (adopted by reconciliation) is never a
    clean end: nothing could cancel them."""
    with contextlib.suppress(Exception):
        open_orders = len(guard.node.kernel.cache.orders_open())
        if open_orders:
            return "error", (f"{reason}; {open_orders} order(s) open at the broker from before the session "
                             "were not cancelled — check them at IB")
    return status, reason


_SESSION_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# What ``signal.getsignal`` returns: a handler, SIG_DFL/SIG_IGN, or None (not set from Python).
SignalHandlers = dict[signal.Signals, Callable[[int, FrameType | None], Any] | int | signal.Handlers | None]


def _current_signal_handlers() -> SignalHandlers | None:
    if threading.current_thread() is not threading.main_thread():
        return None
    return {sig: signal.getsignal(sig) for sig in _SESSION_SIGNALS}


def _restore_signal_handlers(handlers: SignalHandlers | None) -> None:
    for sig, handler in (handlers or {}).items():
        with contextlib.suppress(TypeError, ValueError):
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _route_signals_to_guard(node: TradingNode, guard_ref: list[SessionGuard]) -> list[int]:
    """SIGINT/SIGTERM go to the session's guard, from the moment the node exists.

    Nautilus registers them on its loop with ``loop.add_signal_handler``, which relies on the
    process-wide wakeup fd: measured, about one SIGTERM in six during ``build()`` never reached
    the loop and was swallowed (the process lived on, the row stayed ``running``).  A plain
    Python handler always runs in the main thread; it records the signal (the start-up watcher
    acts on it) and hands it to the guard on the node's loop.  Returns the list of signals
    received before the guard existed.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        return received

    def handler(number: int, _frame: FrameType | None) -> None:
        received.append(number)
        if guard_ref:
            guard = guard_ref[0]
            guard.pending_signal = signal.Signals(number)
            with contextlib.suppress(RuntimeError):  # the loop is closed: the session is ending
                node.kernel.loop.call_soon_threadsafe(guard.on_signal, signal.Signals(number))

    for sig in _SESSION_SIGNALS:
        signal.signal(sig, handler)
    return received


@contextlib.contextmanager
def _signals_held(restore: SignalHandlers | None) -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the session row is finished; then put back ``restore`` (the
    handlers from before the session) and deliver what was held.

    Between the node's loop closing (its handlers gone) and the row being marked, a signal would
    kill the process (or raise KeyboardInterrupt) and leave the row ``running``.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    for sig in _SESSION_SIGNALS:
        signal.signal(sig, lambda number, _frame: received.append(number))
    try:
        yield
    finally:
        _restore_signal_handlers(restore)
        for number in dict.fromkeys(received):
            signal.raise_signal(number)


def _dispose(node: TradingNode) -> None:
    """Dispose the node whatever state it is in, and forget the adapter's cached IB clients."""
    # The IB adapter leaves bar-completion tasks pending at dispose; asyncio would log
    # each as "Task was destroyed but it is pending!".  They are harmless here.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    kernel = getattr(node, "kernel", None)
    if kernel is not None and kernel.is_running() and not kernel.loop.is_running():
        # A start-up aborted inside run(): the kernel thinks it runs (dispose would wait 5 s for
        # it) and its clients still try to connect.  Stop it (clients, trader, engines) first.
        with contextlib.suppress(Exception):
            kernel.stop()
    _cancel_pending_tasks(node)
    with contextlib.suppress(Exception):
        node.dispose()
    forget_ib_clients()


def _notify(settings: Settings, builder: str, *args: object) -> None:
    """Send an ``ats.core.alerts`` notification (go-live, kill switch, session ended).  Never raises:
    a failing notification service must not change how a session ends."""
    from ats.core import alerts

    with contextlib.suppress(Exception):
        alerts.send_message(getattr(alerts, builder)(*args), urls=settings.alert_url_list)


def _cancel_pending_tasks(node: TradingNode, limit_s: float = CANCEL_TASKS_LIMIT_S) -> None:
    """Cancel and finish the tasks the node leaves on its loop (executor workers, the adapter's
    bar timers, an IB reconnect loop) before the loop is closed, so that none is garbage-collected
    on a closed loop.  The IB client's connect swallows a cancel and retries, so the cancels are
    repeated every 100 ms, for at most ``limit_s``: disposing never hangs the session's end."""
    loop = node.get_event_loop()
    if loop is None or loop.is_closed() or loop.is_running():
        return
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        if not pending:
            return
        for task in pending:
            task.cancel()
        with contextlib.suppress(BaseException):
            loop.run_until_complete(asyncio.wait(pending, timeout=0.1))



def _make_actor(guard: SessionGuard) -> Actor:
    from nautilus_trader.common.actor import Actor
    from nautilus_trader.config import ActorConfig

    class SessionActor(Actor):
        """Starts the guard's timers once the node runs."""

        def on_start(self) -> None:
            guard.start_timers()

    return SessionActor(ActorConfig(component_id="ATS-SESSION"))


def _make_node(config: TradingNodeConfig, guard_ref: list[SessionGuard]) -> TradingNode:
    from nautilus_trader.adapters.interactive_brokers.factories import (
        InteractiveBrokersLiveDataClientFactory,
        InteractiveBrokersLiveExecClientFactory,
    )
    from nautilus_trader.live.node import TradingNode

    from ats.trading.node import IB

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




__all__ = ["SessionError", "SessionGuard", "SessionOutcome", "SessionRequest", "run_session"]

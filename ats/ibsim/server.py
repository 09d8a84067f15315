"""The simulated IB Gateway: an asyncio TCP server speaking the TWS API at every server
version from 100 to the highest ``ibapi`` knows (``server_version``), negotiated per client.

:class:`SimGateway` runs its own event loop in a background thread, so synchronous code, tests
and a Nautilus node (which runs its own loop) can all use it::

    sim = SimGateway(mode="paper", account="DU1234567", port=0, start="2024-06-03")
    sim.start()
    ...                     # connect an ibapi / Nautilus client to 127.0.0.1:sim.port
    sim.advance()           # replay the next trading day (manual clock)
    sim.outage(10)          # refuse connections for 10 s
    sim.hold_fills()        # orders stay Submitted until sim.release_fills()
    sim.hold_acks()         # order answers are held back until sim.release_acks()
    sim.stop()

State that a restarted client must see (orders, fills, positions, cash, permIds) lives in
:class:`~ats.ibsim.state.GatewayState`, not in the sessions, and survives drops, outages and
IBC-style restarts.

Control interface (optional, ``control_port``): JSON lines over TCP on 127.0.0.1.  Send one
JSON object per line, get one JSON object per line back (``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``).  Commands (``"cmd"``):

====================  ================================================================
``ping``              liveness
``status``            port, clock date, connected clients, account snapshot
``ledger``            every order request that reached the simulator
``drop``              close every client connection (the listener stays up)
``outage``            ``{"seconds": N}``: drop everything and refuse connections N s
``restart``           ``{"seconds": N}``: IBC-style restart, down N s (default 2), same state
``error``             ``{"code": 1100, "req_id": -1, "text": "..."}``: send to every client
``stall``             ``{"on": true}``: accept TCP but never answer the handshake
``hold_acks``         ``{"on": true}``: hold back every answer to order requests
``release_acks``      deliver the held order answers, in order, and stop holding
``connectivity``      ``{"ok": false}``: 1100, data stops; ``{"ok": true, "data_lost": b}``: 1101/1102
``farm``              ``{"farm": "usfarm"|"ushmds", "up": b}``: 2103/2105 (+10182) or 2104/2106
``advance``           ``{"days": 1}``: move the market clock on (any clock mode)
====================  ================================================================

:class:`ControlClient` is a small Python client for it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ats.core.accounts import ACCOUNT_FORM, EXAMPLE_ACCOUNT, is_account_of
from ats.ibsim import outgoing, versions
from ats.ibsim.account_data import AccountAndDataRequests
from ats.ibsim.control import ControlClient, ControlMixin
from ats.ibsim.errors import SimInputError
from ats.ibsim.faults import FaultsMixin
from ats.ibsim.handlers import ERROR_TEXTS, RequestHandlers
from ats.ibsim.market import Instrument, Market, Position, SimClock, bar_view, session_epoch
from ats.ibsim.session import ClientSession
from ats.ibsim.state import GatewayState, Outbound

__all__ = ["DEFAULT_ACCOUNTS", "ERROR_TEXTS", "ControlClient", "SimGateway", "validate_account"]

log = logging.getLogger("ats.ibsim")

DEFAULT_ACCOUNTS = EXAMPLE_ACCOUNT


def validate_account(mode: str, account: str) -> None:
    """Paper accounts are ``DU`` + digits, live accounts ``U`` + digits."""
    if mode not in ACCOUNT_FORM:
        raise SimInputError(f"bad mode {mode!r}: paper or live")
    if not is_account_of(mode, account):
        raise SimInputError(f"account {account!r} does not fit mode {mode}: "
                            f"expected {ACCOUNT_FORM[mode]}, e.g. {EXAMPLE_ACCOUNT[mode]}")


class SimGateway(RequestHandlers, AccountAndDataRequests, FaultsMixin, ControlMixin):
    """A simulated IB Gateway (see the module docstring).

    Parameters
    ----------
    mode:
        ``"paper"`` (account ``DU…``) or ``"live"`` (account ``U…``).
    account:
        The managed account id; default ``DU1234567`` / ``U1234567``.
    port:
        TCP port on ``host``; 0 picks a free one (read it from :attr:`port` after :meth:`start`).
    data:
        ``{"SYMBOL.VENUE": csv_path}``; default the QQQ.NASDAQ daily bars shipped with ats.
    clock:
        A :class:`SimClock` (default manual) or a speed: ``"manual"``, ``"realtime"`` or seconds
        per trading day.
    start:
        First simulated trading day (``"YYYY-MM-DD"``, the next trading day if not one);
        default a year of bars before the end of the data.
    cash:
        Initial cash in USD (a cash account).
    ledger_path:
        Append every order request to this JSONL file as well.
    control_port:
        Serve the JSON-lines control interface on this port (0 = free); ``None``: none.
    server_version:
        The highest TWS API version this gateway speaks (default: the highest ``ibapi`` knows,
        as a current IB Gateway).  Each client gets ``min(its max, server_version)``.
    wall_clock_time:
        Answer ``reqCurrentTime`` with this machine's clock, as a real gateway does, instead of
        the simulated market clock — the simulator then passes for a real-time gateway in
        :mod:`ats.gateway.identity` (tests of the gates that tell the two apart).
    """

    _handlers = {**RequestHandlers._handlers, **AccountAndDataRequests.HANDLERS}

    def __init__(
        self,
        mode: str = "paper",
        account: str | None = None,
        port: int = 0,
        data: dict[str, Path | str] | None = None,
        clock: SimClock | str | float | None = None,
        start: str | dt.date | None = None,
        cash: float = 100_000.0,
        ledger_path: Path | str | None = None,
        host: str = "127.0.0.1",
        control_port: int | None = None,
        wall_clock_time: bool = False,
        server_version: int = versions.DEFAULT_VERSION,
    ) -> None:
        account = account or DEFAULT_ACCOUNTS.get(mode, "")
        validate_account(mode, account)
        for name, value in (("port", port), ("control port", control_port)):
            if value is not None and not 0 <= value <= 65535:
                raise SimInputError(f"{name} must be 0..65535 (0 picks a free one), got {value}")
        if not (math.isfinite(cash) and cash >= 0):
            raise SimInputError(f"initial cash must be a finite number >= 0, e.g. 100000 (got {cash})")
        self.mode = mode
        self.account = account
        self.host = host
        self.wall_clock_time = wall_clock_time
        try:
            self.server_version = versions.check_server_version(int(server_version))
        except ValueError as exc:
            raise SimInputError(str(exc)) from None
        self._requested_port = port
        self._requested_control_port = control_port
        self.market = Market.from_files(data)
        self.clock = clock if isinstance(clock, SimClock) else SimClock.from_speed(clock)
        self._start_index = self.market.index_of(start)
        self.clock.bind(self._start_index, len(self.market.calendar) - 1)
        self._pos = self.clock.position()
        self.state = GatewayState(
            self.market, account, cash, last_price=self.last_price, position=lambda: self._pos,
            ledger_path=Path(ledger_path) if ledger_path else None,
        )
        self.port: int = 0
        self.control_port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._control: asyncio.base_events.Server | None = None
        self._sessions: set[ClientSession] = set()
        self._by_client: dict[int, ClientSession] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stalled = False
        self._listening = False
        self._reopen_handle: asyncio.TimerHandle | None = None
        self._changed = threading.Condition()
        self.api_connections = 0  # START_API handshakes completed since start
        self.handshakes = 0  # version handshakes answered since start
        self.negotiated_versions: list[int] = []  # the version each handshake settled on, in order
        self.stalled_connections = 0  # connections held unanswered by the stall fault since start
        self.connectivity_ok = True  # False between connectivity_lost() and connectivity_restored()
        self.farms_down: set[str] = set()  # data farms broken by farm_down()
        self._held_acks: list[Outbound] | None = None  # hold_acks fault: answers held back, in order
        self._clients_snapshot: list[int] = []
        self._bar_subs_snapshot = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SimGateway:
        """Start the event loop thread and the listener; returns once it accepts connections."""
        if self._thread is not None:
            return self
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run_loop, args=(ready,), name="ibsim-gateway", daemon=True)
        self._thread.start()
        ready.wait()
        try:
            self._call(self._astart(), timeout=15)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Close every connection and the listener, stop the loop thread."""
        if self._loop is None or self._thread is None:
            return
        if self._loop.is_running():
            try:
                self._call(self._astop(), timeout=15)
            except Exception:  # noqa: BLE001 - stopping must not fail
                log.exception("error while stopping the simulator")
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=15)
        self._thread = None
        self._loop = None

    def __enter__(self) -> SimGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run_loop(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(ready.set)
        try:
            self._loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(self._loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

    def _call[T](self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the simulator is not running; call start() first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _spawn[T](self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _astart(self) -> None:
        await self._listen(self._requested_port)
        if self._requested_control_port is not None:
            self._control = await asyncio.start_server(
                self._handle_control, self.host, self._requested_control_port)
            self.control_port = self._control.sockets[0].getsockname()[1]
        if self.clock.tick_seconds > 0:
            self._spawn(self._ticker())
        log.info(
            "IB Gateway simulator (%s, account %s) listening on %s:%s, market at %s, clock %s",
            self.mode, self.account, self.host, self.port, self.current_date, self.clock.mode,
        )

    async def _listen(self, port: int) -> None:
        self._server = await asyncio.start_server(self._handle_client, self.host, port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        self._listening = True
        self._notify()

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._listening = False
        self._notify()

    async def _astop(self) -> None:
        if self._reopen_handle is not None:
            self._reopen_handle.cancel()
        await self._close_listener()
        if self._control is not None:
            self._control.close()
            self._control = None
        self._drop_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)

    # ------------------------------------------------------------------ public helpers

    @property
    def ledger(self) -> list[dict[str, Any]]:
        """Every placeOrder / cancelOrder that reached the simulator (copies, oldest first)."""
        return self.state.order_ledger.entries()

    @property
    def is_listening(self) -> bool:
        return self._listening

    @property
    def clients(self) -> list[int]:
        """Client ids of the sessions that completed START_API."""
        with self._changed:
            return list(self._clients_snapshot)

    @property
    def bar_subscriptions(self) -> int:
        """Live ``keepUpToDate`` bar subscriptions across all sessions."""
        with self._changed:
            return self._bar_subs_snapshot

    @property
    def current_date(self) -> dt.date:
        """The simulated trading day the market is on."""
        return self.market.calendar[self._pos.day]

    @property
    def position_in_session(self) -> Position:
        return self._pos

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Block until ``predicate()`` is true (re-checked on every simulator event) or timeout."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def _notify(self) -> None:
        with self._changed:
            self._clients_snapshot = sorted(
                s.client_id for s in self._by_client.values() if s.client_id is not None)
            self._bar_subs_snapshot = sum(
                1 for s in self._sessions for sub in s.hist_subs.values() if sub.keep_up_to_date)
            self._changed.notify_all()

    def snapshot(self) -> dict[str, Any]:
        """Account state: cash, positions, open orders, fills (JSON-able)."""
        return self._call(self._asnapshot())

    async def _asnapshot(self) -> dict[str, Any]:
        return self.state.snapshot()

    def last_price(self, instrument: Instrument | str) -> float:
        """The latest replayed price of an instrument (``"QQQ.NASDAQ"`` or an Instrument)."""
        if isinstance(instrument, str):
            instrument = self.market.instruments[instrument]
        pos = self._pos
        day = self.market.calendar[pos.day]
        bar = instrument.bar_on(day)
        if bar is not None:
            return round(bar.price_at(pos.fraction), 2)
        prior = instrument.last_bar_until(day)
        if prior is None:
            return instrument.bars[0].open
        return prior.close

    # ------------------------------------------------------------------ clock

    def advance(self, days: int = 1) -> dt.date:
        """Move the market ``days`` trading days on and publish the bars; returns the new date."""
        self.clock.advance(days)
        self._call(self._sync())
        return self.current_date

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.clock.tick_seconds)
            try:
                await self._sync()
            except Exception:  # noqa: BLE001 - the ticker must survive
                log.exception("clock tick failed")

    async def _sync(self) -> None:
        """Process the market movement from the last processed clock position to now."""
        new = self.clock.position()
        old = self._pos
        if new <= old:
            return
        out: list[Outbound] = []
        day_changed = new.day != old.day
        for d in range(old.day, new.day + 1):
            f0 = old.fraction if d == old.day else 0.0
            f1 = new.fraction if d == new.day else 1.0
            opening = d != old.day
            if f1 > f0 or opening:
                for instrument in self.market.instruments.values():
                    out += self.state.match_segment(instrument, d, f0, f1, opening)
                    self._publish_realtime(instrument, d, f0, f1, opening)
            if d < new.day:
                # Day d is complete: publish its final bar so the adapter emits it.
                if d != old.day or old.fraction < 1.0:
                    self._publish_hist_update(d, 1.0)
                self._pos = Position(d, 1.0)
                out += self.state.expire_day_orders(d)
        self._pos = new
        self._publish_hist_update(new.day, new.fraction)
        self._publish_ticks()
        self._deliver(out)
        if day_changed or self.state.cash_account.summary_dirty:
            self._push_account_summary()
        else:
            self._push_subscriptions()
        if day_changed:
            log.info("market day %s", self.current_date)
        self._notify()

    def _market_data_flows(self, farm: str = "usfarm") -> bool:
        """False while connectivity is lost (1100) or the farm serving it is down."""
        return self.connectivity_ok and farm not in self.farms_down

    def _publish_hist_update(self, day: int, fraction: float) -> None:
        if not self._market_data_flows("ushmds"):
            return
        date = self.market.calendar[day]
        for session in list(self._sessions):
            for sub in session.hist_subs.values():
                if not sub.keep_up_to_date:
                    continue
                bar = sub.instrument.bar_on(date)
                if bar is None:
                    continue
                o, h, l, c, v = bar.forming(fraction)
                session.send(outgoing.historical_data_update(sub.req_id, bar_view(date.strftime("%Y%m%d"), o, h, l, c, v)))

    def _publish_realtime(self, instrument: Instrument, day: int, f0: float, f1: float, opening: bool) -> None:
        if not self._market_data_flows():
            return
        date = self.market.calendar[day]
        bar = instrument.bar_on(date)
        if bar is None:
            return
        epoch = (session_epoch(date, f1) - 5) // 5 * 5
        o = bar.open if opening else round(bar.price_at(f0), 2)
        low, high = bar.range_between(0.0 if opening else f0, f1)
        c = round(bar.price_at(f1), 2)
        volume = int(bar.volume * (f1 - (0.0 if opening else f0)))
        view = bar_view("", o, round(max(high, o), 2), round(min(low, o), 2), c, volume)
        for session in list(self._sessions):
            for req_id, (sub_instrument, last_epoch) in list(session.rtb_subs.items()):
                if sub_instrument is instrument and epoch > last_epoch:
                    session.rtb_subs[req_id] = (instrument, epoch)
                    session.send(outgoing.real_time_bar(req_id, epoch, view))

    def _publish_ticks(self) -> None:
        """Market data subscribers get bid, ask and last (with sizes) whenever the price moved."""
        if not self._market_data_flows():
            return
        for session in list(self._sessions):
            for req_id, instrument in session.mkt_subs.items():
                last = self.last_price(instrument)
                if session.mkt_last.get(req_id) == last:
                    continue
                session.mkt_last[req_id] = last
                for tick_type, price in ((1, round(last - 0.01, 2)), (2, round(last + 0.01, 2)), (4, last)):
                    session.send(outgoing.tick_price(req_id, tick_type, price, "100", 0))

    def _push_account_summary(self) -> None:
        """The account changed (a fill, a new day): summaries and every subscription again."""
        self.state.cash_account.summary_dirty = False
        self._push_subscriptions()
        for session in list(self._sessions):
            for req_id, tags in session.summary_subs.items():
                for msg in self.state.cash_account.summary_messages(req_id, tags):
                    session.send(msg)

    def _deliver(self, out: list[Outbound]) -> None:
        for item in out:
            session = self._by_client.get(item.client_id)
            if session is not None:
                session.send(item.data)

    # ------------------------------------------------------------------ sessions

    async def _handle_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = "{}:{}".format(*(writer.get_extra_info("peername") or ("?", "?"))[:2])
        session = ClientSession(reader, writer, peer)
        self._sessions.add(session)
        try:
            if self._stalled:
                log.info("connection from %s stalled (fault)", peer)
                self.stalled_connections += 1
                while await reader.read(4096):
                    pass
                return
            if await self._handshake(session):
                await self._serve(session)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one bad session must not take the server down
            log.exception("session %s failed", peer)
        finally:
            self._forget(session)
            session.close()

    def _forget(self, session: ClientSession) -> None:
        self._sessions.discard(session)
        if session.client_id is not None and self._by_client.get(session.client_id) is session:
            del self._by_client[session.client_id]
            log.info("client %s (%s) disconnected", session.client_id, session.peer)
        self._notify()

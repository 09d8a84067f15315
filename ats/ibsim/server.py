"""The simulated IB Gateway: an asyncio TCP server speaking the TWS API at server version 200.

:class:`SimGateway` runs its own event loop in a background thread, so synchronous code, tests
and a Nautilus node (which runs its own loop) can all use it::

    sim = SimGateway(mode="paper", account="DU1234567", port=0, start="2024-06-03")
    sim.start()
    ...                     # connect an ibapi / Nautilus client to 127.0.0.1:sim.port
    sim.advance()           # replay the next trading day (manual clock)
    sim.outage(10)          # refuse connections for 10 s
    sim.hold_fills()        # orders stay Submitted until sim.release_fills()
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
``advance``           ``{"days": 1}``: move the market clock on (any clock mode)
====================  ================================================================

:class:`ControlClient` is a small Python client for it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ats.ibsim import wire
from ats.ibsim.errors import SimInputError
from ats.ibsim.market import Instrument, Market, Position, SimClock, bar_view, session_epoch
from ats.ibsim.state import GatewayState, Outbound, PlaceRequest

log = logging.getLogger("ats.ibsim")

_ACCOUNT_PATTERNS = {"paper": re.compile(r"DU\d+"), "live": re.compile(r"U\d+")}
DEFAULT_ACCOUNTS = {"paper": "DU1234567", "live": "U1234567"}
HANDSHAKE_TIMEOUT = 30.0

ERROR_TEXTS = {
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and Trader Workstation has been restored - data lost.",
    1102: "Connectivity between IB and Trader Workstation has been restored - data maintained.",
    1300: "TWS socket port has been reset and this connection is being dropped. Please reconnect.",
    2103: "Market data farm connection is broken:usfarm",
    2104: "Market data farm connection is OK:usfarm",
    2105: "HMDS data farm connection is broken:ushmds",
    2106: "HMDS data farm connection is OK:ushmds",
    2110: "Connectivity between Trader Workstation and server is broken. It will be restored automatically.",
    2157: "Sec-def data farm connection is broken:secdefnj",
    2158: "Sec-def data farm connection is OK:secdefnj",
    10182: "Failed to request live updates (disconnected).",
}


def validate_account(mode: str, account: str) -> None:
    """Paper accounts are ``DU`` + digits, live accounts ``U`` + digits."""
    if mode not in _ACCOUNT_PATTERNS:
        raise SimInputError(f"bad mode {mode!r}: paper or live")
    if not _ACCOUNT_PATTERNS[mode].fullmatch(account or ""):
        form = "DU followed by digits, e.g. DU1234567" if mode == "paper" else "U followed by digits, e.g. U1234567"
        raise SimInputError(f"account {account!r} does not fit mode {mode}: expected {form}")


def _millis() -> int:
    return int(time.time() * 1000)


@dataclass
class _HistSub:
    req_id: int
    instrument: Instrument
    keep_up_to_date: bool


@dataclass(eq=False)
class _Session:
    """One client socket."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: str
    client_id: int | None = None
    started: bool = False
    closed: bool = False
    hist_subs: dict[int, _HistSub] = field(default_factory=dict)
    rtb_subs: dict[int, tuple[Instrument, int]] = field(default_factory=dict)  # reqId -> (instrument, last epoch)
    mkt_subs: dict[int, Instrument] = field(default_factory=dict)
    summary_subs: dict[int, set[str] | None] = field(default_factory=dict)

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.writer.write(data)
        except (ConnectionError, RuntimeError, OSError):
            self.closed = True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
        try:
            self.writer.close()
        except (ConnectionError, RuntimeError, OSError):
            pass


class SimGateway:
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
    """

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
    ) -> None:
        account = account or DEFAULT_ACCOUNTS.get(mode, "")
        validate_account(mode, account)
        if cash < 0:
            raise SimInputError("initial cash must be >= 0")
        self.mode = mode
        self.account = account
        self.host = host
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
        self._sessions: set[_Session] = set()
        self._by_client: dict[int, _Session] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stalled = False
        self._listening = False
        self._reopen_handle: asyncio.TimerHandle | None = None
        self._changed = threading.Condition()
        self.api_connections = 0  # START_API handshakes completed since start
        self.handshakes = 0  # version handshakes answered since start
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

    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the simulator is not running; call start() first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
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
        return self.state.ledger

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
        if day_changed or self.state.summary_dirty:
            self._push_account_summary()
        if day_changed:
            log.info("market day %s", self.current_date)
        self._notify()

    def _publish_hist_update(self, day: int, fraction: float) -> None:
        date = self.market.calendar[day]
        for session in list(self._sessions):
            for sub in session.hist_subs.values():
                if not sub.keep_up_to_date:
                    continue
                bar = sub.instrument.bar_on(date)
                if bar is None:
                    continue
                o, h, l, c, v = bar.forming(fraction)
                session.send(wire.historical_data_update(sub.req_id, bar_view(date.strftime("%Y%m%d"), o, h, l, c, v)))

    def _publish_realtime(self, instrument: Instrument, day: int, f0: float, f1: float, opening: bool) -> None:
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
                    session.send(wire.real_time_bar(req_id, epoch, view))

    def _publish_ticks(self) -> None:
        for session in list(self._sessions):
            for req_id, instrument in session.mkt_subs.items():
                session.send(wire.tick_price(req_id, 4, self.last_price(instrument), None))

    def _push_account_summary(self) -> None:
        self.state.summary_dirty = False
        for session in list(self._sessions):
            for req_id, tags in session.summary_subs.items():
                for msg in self.state.summary_messages(req_id, tags):
                    session.send(msg)

    def _deliver(self, out: list[Outbound]) -> None:
        for item in out:
            session = self._by_client.get(item.client_id)
            if session is not None:
                session.send(item.data)

    # ------------------------------------------------------------------ faults

    def drop_connections(self) -> None:
        """Close every client connection now; the listener stays up."""
        self._call(self._adrop())

    async def _adrop(self) -> None:
        log.warning("fault: dropping %d connection(s)", len(self._sessions))
        self._drop_all()

    def _drop_all(self) -> None:
        for session in list(self._sessions):
            session.close()
        self._sessions.clear()
        self._by_client.clear()
        self._notify()

    def outage(self, seconds: float) -> None:
        """Drop every connection and refuse new ones for ``seconds`` (a gateway outage)."""
        self._call(self._aoutage(seconds, "outage"))

    def restart(self, seconds: float = 2.0) -> None:
        """IBC-style restart: down for ``seconds``, then up again with the same account state."""
        self._call(self._aoutage(seconds, "IBC restart"))

    async def _aoutage(self, seconds: float, what: str) -> None:
        if seconds < 0:
            raise SimInputError("outage seconds must be >= 0")
        log.warning("fault: %s, refusing connections for %.1f s", what, seconds)
        if self._reopen_handle is not None:
            self._reopen_handle.cancel()
        await self._close_listener()
        self._drop_all()
        assert self._loop is not None
        self._reopen_handle = self._loop.call_later(seconds, lambda: self._spawn(self._reopen()))

    async def _reopen(self) -> None:
        self._reopen_handle = None
        while self._server is None:
            try:
                await self._listen(self.port)
                log.warning("listener back on port %s", self.port)
            except OSError as exc:
                log.error("cannot reopen port %s (%s); retrying", self.port, exc)
                await asyncio.sleep(1.0)

    def wait_listening(self, timeout: float = 30.0) -> bool:
        """Block until the listener accepts connections again (after an outage or restart)."""
        return self.wait_for(lambda: self._listening, timeout)

    def send_error(self, code: int, req_id: int = -1, text: str | None = None) -> None:
        """Send error ``code`` (e.g. 1100, 1101, 1102) to every connected client."""
        self._call(self._asend_error(code, req_id, text))

    async def _asend_error(self, code: int, req_id: int, text: str | None) -> None:
        message = text if text is not None else ERROR_TEXTS.get(code, f"Simulated error {code}")
        log.warning("fault: sending error %s to %d client(s)", code, len(self._by_client))
        for session in list(self._by_client.values()):
            session.send(wire.error(req_id, code, message, _millis()))

    def hold_fills(self, on: bool = True) -> None:
        """While on, accepted orders are not filled: they stay Submitted (an order in flight).

        Nothing fills meanwhile, not even a crossed limit order; :meth:`release_fills` ends it.
        """
        self._call(self._ahold_fills(on))

    async def _ahold_fills(self, on: bool) -> None:
        log.warning("fault: hold fills %s", "on" if on else "off")
        self.state.holding_fills = on

    def release_fills(self) -> None:
        """Stop holding fills and fill every open order that would have filled on arrival."""
        self._call(self._arelease_fills())

    async def _arelease_fills(self) -> None:
        log.warning("fault: releasing held fills")
        self._deliver(self.state.release_fills())
        if self.state.summary_dirty:
            self._push_account_summary()
        self._notify()

    def stall(self, on: bool = True) -> None:
        """While on, new connections are accepted but the handshake is never answered."""
        self._stalled = on
        log.warning("fault: stall %s", "on" if on else "off")

    # ------------------------------------------------------------------ sessions

    async def _handle_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = "%s:%s" % (writer.get_extra_info("peername") or ("?", "?"))[:2]
        session = _Session(reader, writer, peer)
        self._sessions.add(session)
        try:
            if self._stalled:
                log.info("connection from %s stalled (fault)", peer)
                while await reader.read(4096):
                    pass
                return
            if await self._handshake(session):
                await self._serve(session)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one bad session must not take the server down
            log.exception("session %s failed", peer)
        finally:
            self._forget(session)
            session.close()

    def _forget(self, session: _Session) -> None:
        self._sessions.discard(session)
        if session.client_id is not None and self._by_client.get(session.client_id) is session:
            del self._by_client[session.client_id]
            log.info("client %s (%s) disconnected", session.client_id, session.peer)
        self._notify()

    async def _handshake(self, session: _Session) -> bool:
        reader = session.reader
        prefix = await asyncio.wait_for(reader.readexactly(4), HANDSHAKE_TIMEOUT)
        if prefix != wire.API_PREFIX:
            log.warning("connection from %s: bad handshake prefix %r, closing", session.peer, prefix)
            return False
        (size,) = struct.unpack("!I", await asyncio.wait_for(reader.readexactly(4), HANDSHAKE_TIMEOUT))
        if not 0 < size <= 1024:
            log.warning("connection from %s: bad handshake length %d, closing", session.peer, size)
            return False
        text = (await asyncio.wait_for(reader.readexactly(size), HANDSHAKE_TIMEOUT)).decode("ascii", "replace")
        try:
            low, high = wire.parse_client_versions(text)
        except wire.WireError:
            log.warning("connection from %s: bad version string %r, closing", session.peer, text)
            return False
        if not low <= wire.SERVER_VERSION <= high:
            log.warning("connection from %s: versions %s..%s exclude %s, closing",
                        session.peer, low, high, wire.SERVER_VERSION)
            return False
        now = dt.datetime.now(dt.UTC)
        session.send(wire.handshake_reply(now.strftime("%Y%m%d %H:%M:%S") + " UTC"))
        self.handshakes += 1
        return True

    async def _serve(self, session: _Session) -> None:
        reader = session.reader
        while not session.closed:
            (size,) = struct.unpack("!I", await reader.readexactly(4))
            if size == 0 or size > wire.MAX_MSG_LEN:
                session.send(wire.error(-1, 507, f"Bad message length: {size}", _millis()))
                log.warning("client %s: bad message length %d, closing", session.peer, size)
                return
            payload = await reader.readexactly(size)
            try:
                values = wire.split_fields(payload)
                msg_id = int(values[0])
            except (wire.WireError, ValueError, IndexError):
                session.send(wire.error(-1, 320, "Error reading request: malformed message", _millis()))
                log.warning("client %s: malformed message %r, closing", session.peer, payload[:80])
                return
            if not session.started and msg_id != wire.OUT.START_API:
                log.info("client %s: message %s before START_API ignored", session.peer, msg_id)
                continue
            handler = self._handlers.get(msg_id)
            if handler is None:
                session.send(wire.error(-1, 505, f"Fatal Error: Unknown message id {msg_id}.", _millis()))
                log.warning("client %s: unknown message id %s", session.peer, msg_id)
                continue
            try:
                handler(self, session, wire.Fields(values[1:]))
            except wire.WireError as exc:
                session.send(wire.error(-1, 320, f"Error reading request: {exc}", _millis()))
                log.warning("client %s: bad request %s: %s", session.peer, msg_id, exc)
            except Exception:  # noqa: BLE001
                log.exception("client %s: request %s failed", session.peer, msg_id)
                session.send(wire.error(-1, 320, f"Error processing request {msg_id}", _millis()))
            self._notify()
            try:
                await asyncio.wait_for(session.writer.drain(), 30)
            except (ConnectionError, asyncio.TimeoutError):
                return

    # ------------------------------------------------------------------ request handlers

    def _on_start_api(self, session: _Session, f: wire.Fields) -> None:
        f.skip()
        client_id = f.int()
        if session.started:
            return
        other = self._by_client.get(client_id)
        if other is not None and not other.closed:
            session.send(wire.error(
                -1, 326, "Unable to connect as the client id is already in use. Retry with a unique client id.",
                _millis()))
            log.warning("client id %s already in use (%s), closing %s", client_id, other.peer, session.peer)
            session.close()
            return
        session.client_id = client_id
        session.started = True
        self._by_client[client_id] = session
        self.api_connections += 1
        log.info("client %s connected from %s", client_id, session.peer)
        session.send(wire.managed_accounts([self.account]))
        session.send(wire.next_valid_id(self.state.next_valid_id()))
        for code in (2104, 2106, 2158):
            session.send(wire.error(-1, code, ERROR_TEXTS[code], _millis()))

    def _on_req_ids(self, session: _Session, f: wire.Fields) -> None:
        session.send(wire.next_valid_id(self.state.next_valid_id()))

    def _on_market_data_type(self, session: _Session, f: wire.Fields) -> None:
        f.skip()
        f.int()

    def _on_current_time(self, session: _Session, f: wire.Fields) -> None:
        session.send(wire.current_time(int(time.time())))

    def _on_managed_accounts(self, session: _Session, f: wire.Fields) -> None:
        session.send(wire.managed_accounts([self.account]))

    @staticmethod
    def _contract_fields(f: wire.Fields) -> dict[str, Any]:
        con_id = f.int()
        symbol, sec_type = f.str(), f.str()
        f.skip(3)  # lastTradeDateOrContractMonth, strike, right
        f.skip()  # multiplier
        exchange, primary, currency, local, _trading_class = f.str(), f.str(), f.str(), f.str(), f.str()
        return {"con_id": con_id, "symbol": symbol, "sec_type": sec_type, "exchange": exchange,
                "primary_exchange": primary, "currency": currency, "local_symbol": local}

    def _find(self, c: dict[str, Any]) -> Instrument | None:
        return self.market.find(
            con_id=c["con_id"], symbol=c["symbol"], local_symbol=c["local_symbol"], currency=c["currency"],
            primary_exchange=c["primary_exchange"], sec_type=c["sec_type"])

    def _find_or_reject(self, session: _Session, req_id: int, contract: dict[str, Any]) -> Instrument | None:
        """The instrument the request names, or None after answering error 200 as IB does."""
        instrument = self._find(contract)
        if instrument is None:
            session.send(wire.error(req_id, 200, "No security definition has been found for the request", _millis()))
        return instrument

    def _on_contract_details(self, session: _Session, f: wire.Fields) -> None:
        f.skip()
        req_id = f.int()
        instrument = self._find_or_reject(session, req_id, self._contract_fields(f))
        if instrument is None:
            return
        session.send(wire.contract_data(req_id, instrument.contract))
        session.send(wire.contract_data_end(req_id))

    def _on_account_summary(self, session: _Session, f: wire.Fields) -> None:
        f.skip()
        req_id = f.int()
        f.str()  # group
        tags_text = f.str()
        tags = {t.strip() for t in tags_text.split(",") if t.strip()} or None
        session.summary_subs[req_id] = tags
        for msg in self.state.summary_messages(req_id, tags):
            session.send(msg)
        session.send(wire.account_summary_end(req_id))

    def _on_cancel_account_summary(self, session: _Session, f: wire.Fields) -> None:
        f.skip()
        session.summary_subs.pop(f.int(), None)

    def _on_positions(self, session: _Session, f: wire.Fields) -> None:
        for msg in self.state.position_messages():
            session.send(msg)

    def _on_noop(self, session: _Session, f: wire.Fields) -> None:
        return None

    def _on_open_orders(self, session: _Session, f: wire.Fields) -> None:
        for msg in self.state.open_orders(session.client_id):
            session.send(msg)

    def _on_all_open_orders(self, session: _Session, f: wire.Fields) -> None:
        for msg in self.state.open_orders(None):
            session.send(msg)

    def _on_executions(self, session: _Session, f: wire.Fields) -> None:
        f.skip()
        req_id = f.int()
        flt = {"client_id": f.int(), "acct_code": f.str(), "time": f.str(), "symbol": f.str(),
               "sec_type": f.str(), "exchange": f.str(), "side": f.str()}
        for msg in self.state.executions(req_id, flt):
            session.send(msg)

    def _on_historical_data(self, session: _Session, f: wire.Fields) -> None:
        req_id = f.int()
        contract = self._contract_fields(f)
        f.skip()  # includeExpired
        end_text, bar_size, duration = f.str(), f.str(), f.str()
        f.skip()  # useRTH
        f.str()  # whatToShow
        f.skip()  # formatDate
        keep = f.bool()
        instrument = self._find_or_reject(session, req_id, contract)
        if instrument is None:
            return
        if bar_size.strip().lower() not in ("1 day", "1 days"):
            session.send(wire.error(
                req_id, 162,
                f"Historical Market Data Service error message:bar size {bar_size!r} is not available "
                "(the simulator replays daily bars)", _millis()))
            return
        try:
            span = _duration_days(duration)
            end = _parse_end(end_text)
        except ValueError as exc:
            session.send(wire.error(req_id, 321, f"Error validating request:{exc}", _millis()))
            return
        current = self.current_date
        last = current if end is None or end >= current else end
        first = last - dt.timedelta(days=span - 1)
        bars = []
        for bar in instrument.bars_between(first, last):
            fraction = self._pos.fraction if bar.date == current else 1.0
            o, h, l, c, v = bar.forming(fraction)
            bars.append(bar_view(bar.date.strftime("%Y%m%d"), o, h, l, c, v))
        session.send(wire.historical_data(req_id, bars))
        session.send(wire.historical_data_end(
            req_id, first.strftime("%Y%m%d") + " 00:00:00 UTC", last.strftime("%Y%m%d") + " 23:59:59 UTC"))
        if keep and end is None:
            session.hist_subs[req_id] = _HistSub(req_id, instrument, True)

    def _on_cancel_historical_data(self, session: _Session, f: wire.Fields) -> None:
        f.skip()
        session.hist_subs.pop(f.int(), None)

    def _on_realtime_bars(self, session: _Session, f: wire.Fields) -> None:
        f.skip()
        req_id = f.int()
        instrument = self._find_or_reject(session, req_id, self._contract_fields(f))
        if instrument is None:
            return
        session.rtb_subs[req_id] = (instrument, 0)

    def _on_cancel_realtime_bars(self, session: _Session, f: wire.Fields) -> None:
        f.skip()
        session.rtb_subs.pop(f.int(), None)

    def _on_mkt_data(self, session: _Session, f: wire.Fields) -> None:
        f.skip()
        req_id = f.int()
        contract = self._contract_fields(f)
        if f.bool():  # deltaNeutralContract present
            f.skip(3)
        f.str()  # genericTickList
        snapshot = f.bool()
        instrument = self._find_or_reject(session, req_id, contract)
        if instrument is None:
            return
        last = self.last_price(instrument)
        size = "100"
        session.send(wire.market_data_type(req_id, 1))
        session.send(wire.tick_price(req_id, 1, round(last - 0.01, 2), size, 0))
        session.send(wire.tick_price(req_id, 2, round(last + 0.01, 2), size, 0))
        session.send(wire.tick_price(req_id, 4, last, size, 0))
        if snapshot:
            session.send(wire.tick_snapshot_end(req_id))
        else:
            session.mkt_subs[req_id] = instrument

    def _on_cancel_mkt_data(self, session: _Session, f: wire.Fields) -> None:
        f.skip()
        session.mkt_subs.pop(f.int(), None)

    def _on_place_order(self, session: _Session, f: wire.Fields) -> None:
        order_id = f.int()
        contract = self._contract_fields(f)
        f.skip(2)  # secIdType, secId
        action = f.str().upper()
        quantity = f.decimal()
        order_type = f.str().upper()
        limit_price = f.float()
        aux_price = f.float()
        tif = f.str().upper()
        f.str()  # ocaGroup
        account = f.str()
        f.str()  # openClose
        f.str()  # origin
        order_ref = f.str()
        transmit = f.bool()
        f.str()  # parentId
        f.skip(4)  # blockOrder, sweepToFill, displaySize, triggerMethod
        outside_rth = f.bool()
        req = PlaceRequest(
            order_id=order_id, action=action, quantity=quantity, order_type=order_type,
            limit_price=limit_price, aux_price=aux_price, tif=tif, account=account, order_ref=order_ref,
            transmit=transmit, outside_rth=outside_rth, **contract,
        )
        assert session.client_id is not None
        self._deliver(self.state.place(session.client_id, req))
        if self.state.summary_dirty:
            self._push_account_summary()

    def _on_cancel_order(self, session: _Session, f: wire.Fields) -> None:
        order_id = f.int()
        manual_time = f.str() if len(f) > 1 else ""
        assert session.client_id is not None
        self._deliver(self.state.cancel(session.client_id, order_id, {"manual_order_cancel_time": manual_time}))

    def _on_global_cancel(self, session: _Session, f: wire.Fields) -> None:
        assert session.client_id is not None
        self._deliver(self.state.global_cancel(session.client_id))

    _handlers: dict[int, Callable[[SimGateway, _Session, wire.Fields], None]] = {
        wire.OUT.START_API: _on_start_api,
        wire.OUT.REQ_IDS: _on_req_ids,
        wire.OUT.REQ_MARKET_DATA_TYPE: _on_market_data_type,
        wire.OUT.REQ_CURRENT_TIME: _on_current_time,
        wire.OUT.REQ_MANAGED_ACCTS: _on_managed_accounts,
        wire.OUT.REQ_CONTRACT_DATA: _on_contract_details,
        wire.OUT.REQ_ACCOUNT_SUMMARY: _on_account_summary,
        wire.OUT.CANCEL_ACCOUNT_SUMMARY: _on_cancel_account_summary,
        wire.OUT.REQ_POSITIONS: _on_positions,
        wire.OUT.CANCEL_POSITIONS: _on_noop,
        wire.OUT.REQ_OPEN_ORDERS: _on_open_orders,
        wire.OUT.REQ_ALL_OPEN_ORDERS: _on_all_open_orders,
        wire.OUT.REQ_EXECUTIONS: _on_executions,
        wire.OUT.REQ_HISTORICAL_DATA: _on_historical_data,
        wire.OUT.CANCEL_HISTORICAL_DATA: _on_cancel_historical_data,
        wire.OUT.REQ_REAL_TIME_BARS: _on_realtime_bars,
        wire.OUT.CANCEL_REAL_TIME_BARS: _on_cancel_realtime_bars,
        wire.OUT.REQ_MKT_DATA: _on_mkt_data,
        wire.OUT.CANCEL_MKT_DATA: _on_cancel_mkt_data,
        wire.OUT.PLACE_ORDER: _on_place_order,
        wire.OUT.CANCEL_ORDER: _on_cancel_order,
        wire.OUT.REQ_GLOBAL_CANCEL: _on_global_cancel,
    }

    # ------------------------------------------------------------------ control interface

    async def _handle_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("expected a JSON object")
                    reply = {"ok": True, **(await self._control_command(request))}
                except Exception as exc:  # noqa: BLE001 - report every failure to the caller
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                writer.write((json.dumps(reply, default=str) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _control_command(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        if cmd == "ping":
            return {}
        if cmd == "status":
            return {"port": self.port, "listening": self._listening, "mode": self.mode, "account": self.account,
                    "date": self.current_date.isoformat(), "clients": sorted(self._by_client),
                    "api_connections": self.api_connections, "stalled": self._stalled,
                    "state": self.state.snapshot()}
        if cmd == "ledger":
            return {"ledger": self.state.ledger}
        if cmd == "drop":
            await self._adrop()
            return {}
        if cmd in ("outage", "restart"):
            default = 2.0 if cmd == "restart" else 10.0
            await self._aoutage(float(request.get("seconds", default)), "IBC restart" if cmd == "restart" else cmd)
            return {}
        if cmd == "error":
            await self._asend_error(int(request["code"]), int(request.get("req_id", -1)), request.get("text"))
            return {}
        if cmd == "stall":
            self.stall(bool(request.get("on", True)))
            return {}
        if cmd == "advance":
            self.clock.advance(int(request.get("days", 1)))
            await self._sync()
            return {"date": self.current_date.isoformat()}
        raise ValueError(f"unknown command {cmd!r}")


class ControlClient:
    """A client for the JSON-lines control interface of a simulator in another process."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._file = self._sock.makefile("rwb")

    def call(self, cmd: str, **params: Any) -> dict[str, Any]:
        """Send one command; return the reply, raising :class:`RuntimeError` if it failed."""
        self._file.write((json.dumps({"cmd": cmd, **params}) + "\n").encode())
        self._file.flush()
        line = self._file.readline()
        if not line:
            raise ConnectionError("the simulator closed the control connection")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(reply.get("error", "control command failed"))
        return reply

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _duration_days(text: str) -> int:
    """``"N S|D|W|M|Y"`` → calendar days covered (at least 1)."""
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit():
        raise ValueError(f"bad duration {text!r}")
    n, unit = int(parts[0]), parts[1].upper()
    days = {"S": n / 86_400, "D": n, "W": 7 * n, "M": 31 * n, "Y": 366 * n}.get(unit)
    if days is None:
        raise ValueError(f"bad duration unit in {text!r}")
    return max(1, int(-(-days // 1)))


def _parse_end(text: str) -> dt.date | None:
    """endDateTime: empty (now), ``YYYYMMDD HH:MM:SS [zone]`` or ``YYYYMMDD-HH:MM:SS``."""
    text = text.strip()
    if not text:
        return None
    try:
        return dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        raise ValueError(f"bad endDateTime {text!r}") from None

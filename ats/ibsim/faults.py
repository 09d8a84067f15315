"""Injectable faults of the simulator: drops, outages, IBC restarts, errors, held fills and
acknowledgements, stalled handshakes.  :class:`FaultsMixin` is mixed into
:class:`~ats.ibsim.server.SimGateway`; each fault is also a control-port command
(:mod:`ats.ibsim.control`)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ats.ibsim import outgoing
from ats.ibsim.errors import SimInputError
from ats.ibsim.handlers import ERROR_TEXTS, millis

if TYPE_CHECKING:
    from ats.ibsim.host import GatewayHost
    from ats.ibsim.state import Outbound

log = logging.getLogger("ats.ibsim")


class FaultsMixin:
    """Faults of :class:`SimGateway` (see the module docstring)."""

    # Set by SimGateway.__init__, reassigned here.
    _reopen_handle: asyncio.TimerHandle | None
    _held_acks: list[Outbound] | None

    def drop_connections(self: GatewayHost) -> None:
        """Close every client connection now; the listener stays up."""
        self._call(self._adrop())

    async def _adrop(self: GatewayHost) -> None:
        log.warning("fault: dropping %d connection(s)", len(self._sessions))
        self._drop_all()

    def _drop_all(self: GatewayHost) -> None:
        for session in list(self._sessions):
            session.close()
        self._sessions.clear()
        self._by_client.clear()
        self._notify()

    def outage(self: GatewayHost, seconds: float) -> None:
        """Drop every connection and refuse new ones for ``seconds`` (a gateway outage)."""
        self._call(self._aoutage(seconds, "outage"))

    def restart(self: GatewayHost, seconds: float = 2.0) -> None:
        """IBC-style restart: down for ``seconds``, then up again with the same account state."""
        self._call(self._aoutage(seconds, "IBC restart"))

    async def _aoutage(self: GatewayHost, seconds: float, what: str) -> None:
        if seconds < 0:
            raise SimInputError("outage seconds must be >= 0")
        log.warning("fault: %s, refusing connections for %.1f s", what, seconds)
        if self._reopen_handle is not None:
            self._reopen_handle.cancel()
        await self._close_listener()
        self._drop_all()
        assert self._loop is not None
        self._reopen_handle = self._loop.call_later(seconds, lambda: self._spawn(self._reopen()))

    async def _reopen(self: GatewayHost) -> None:
        self._reopen_handle = None
        while self._server is None:
            try:
                await self._listen(self.port)
                log.warning("listener back on port %s", self.port)
            except OSError as exc:
                log.error("cannot reopen port %s (%s); retrying", self.port, exc)
                await asyncio.sleep(1.0)

    def wait_listening(self: GatewayHost, timeout: float = 30.0) -> bool:
        """Block until the listener accepts connections again (after an outage or restart)."""
        return self.wait_for(lambda: self._listening, timeout)

    def send_error(self: GatewayHost, code: int, req_id: int = -1, text: str | None = None) -> None:
        """Send error ``code`` (e.g. 1100, 1101, 1102) to every connected client."""
        self._call(self._asend_error(code, req_id, text))

    async def _asend_error(self: GatewayHost, code: int, req_id: int, text: str | None) -> None:
        message = text if text is not None else ERROR_TEXTS.get(code, f"Simulated error {code}")
        log.warning("fault: sending error %s to %d client(s)", code, len(self._by_client))
        for session in list(self._by_client.values()):
            session.send(outgoing.error(req_id, code, message, millis()))

    def hold_fills(self: GatewayHost, on: bool = True) -> None:
        """While on, accepted orders are not filled: they stay Submitted (an order in flight).

        Nothing fills meanwhile, not even a crossed limit order; :meth:`release_fills` ends it.
        """
        self._call(self._ahold_fills(on))

    async def _ahold_fills(self: GatewayHost, on: bool) -> None:
        log.warning("fault: hold fills %s", "on" if on else "off")
        self.state.holding_fills = on

    def release_fills(self: GatewayHost) -> None:
        """Stop holding fills and fill every open order that would have filled on arrival."""
        self._call(self._arelease_fills())

    async def _arelease_fills(self: GatewayHost) -> None:
        log.warning("fault: releasing held fills")
        self._deliver(self.state.release_fills())
        if self.state.cash_account.summary_dirty:
            self._push_account_summary()
        self._notify()

    def hold_acks(self: GatewayHost, on: bool = True) -> None:
        """While on, every answer to placeOrder/cancelOrder/reqGlobalCancel (openOrder,
        orderStatus, executions, errors) is held back, in order: the order reached the
        gateway, the client has not heard yet — a slow gateway's order in flight.
        :meth:`release_acks` delivers them."""
        self._call(self._ahold_acks(on))

    async def _ahold_acks(self: GatewayHost, on: bool) -> None:
        log.warning("fault: hold order acknowledgements %s", "on" if on else "off")
        if on and self._held_acks is None:
            self._held_acks = []
        elif not on and self._held_acks is not None:
            held, self._held_acks = self._held_acks, None
            self._deliver(held)

    def release_acks(self: GatewayHost) -> None:
        """Deliver every held order answer, in the order it was produced, and stop holding."""
        self._call(self._ahold_acks(False))

    @property
    def held_acks(self: GatewayHost) -> int:
        """How many order answers are held back by :meth:`hold_acks` now."""
        return len(self._held_acks or [])

    def _answer_order_request(self: GatewayHost, out: list[Outbound]) -> None:
        if self._held_acks is not None:
            self._held_acks.extend(out)
            self._notify()
        else:
            self._deliver(out)

    def stall(self: GatewayHost, on: bool = True) -> None:
        """While on, new connections are accepted but the handshake is never answered."""
        self._stalled = on
        log.warning("fault: stall %s", "on" if on else "off")

    # ------------------------------------------------------------------ connectivity and data farms

    def connectivity_lost(self: GatewayHost) -> None:
        """IB's 1100: the gateway lost its link to IB.  Sockets stay open, no market data flows
        (bars, real-time bars, ticks) until :meth:`connectivity_restored`."""
        self._call(self._aconnectivity(lost=True, data_lost=False))

    def connectivity_restored(self: GatewayHost, data_lost: bool = False) -> None:
        """1102 (data maintained: subscriptions go on) or, with ``data_lost``, 1101: every market
        data subscription is gone and the client must subscribe again."""
        self._call(self._aconnectivity(lost=False, data_lost=data_lost))

    async def _aconnectivity(self: GatewayHost, *, lost: bool, data_lost: bool) -> None:
        code = 1100 if lost else (1101 if data_lost else 1102)
        log.warning("fault: connectivity %s (%s)", "lost" if lost else "restored", code)
        self.connectivity_ok = not lost
        if data_lost:
            for session in self._sessions:
                session.hist_subs.clear()
                session.rtb_subs.clear()
                session.mkt_subs.clear()
                session.tbt_subs.clear()
        for session in list(self._by_client.values()):
            session.send(outgoing.error(-1, code, ERROR_TEXTS[code], millis()))
        self._notify()

    def farm_down(self: GatewayHost, farm: str = "usfarm") -> None:
        """A data farm breaks (the socket stays): ``usfarm`` (market data, 2103: ticks stop) or
        ``ushmds`` (historical data, 2105: every keepUpToDate bar subscription ends with 10182)."""
        self._call(self._afarm(farm, up=False))

    def farm_up(self: GatewayHost, farm: str = "usfarm") -> None:
        """The farm is back: 2104 / 2106.  Ended bar subscriptions stay ended (subscribe again)."""
        self._call(self._afarm(farm, up=True))

    async def _afarm(self: GatewayHost, farm: str, *, up: bool) -> None:
        if farm not in FARM_CODES:
            raise SimInputError(f"unknown data farm {farm!r}: usfarm or ushmds")
        broken, ok = FARM_CODES[farm]
        log.warning("fault: data farm %s %s", farm, "up" if up else "down")
        if up:
            self.farms_down.discard(farm)
        else:
            self.farms_down.add(farm)
        for session in list(self._by_client.values()):
            session.send(outgoing.error(-1, ok if up else broken, ERROR_TEXTS[ok if up else broken], millis()))
            if farm == "ushmds" and not up:
                for req_id in [r for r, sub in session.hist_subs.items() if sub.keep_up_to_date]:
                    del session.hist_subs[req_id]
                    session.send(outgoing.error(req_id, 10182, ERROR_TEXTS[10182], millis()))
        self._notify()


FARM_CODES = {"usfarm": (2103, 2104), "ushmds": (2105, 2106)}

"""The simulator's side of a connection: the version handshake, the request loop, the handlers.

:class:`RequestHandlers` is mixed into :class:`~ats.ibsim.server.SimGateway`; every handler
takes the request as the plain dict :mod:`ats.ibsim.incoming` decodes (text or protobuf alike)
and answers through :meth:`ClientSession.send`, which encodes at the session's version.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import struct
import time
from typing import TYPE_CHECKING, Any

from ibapi import server_versions as sv
from ibapi.message import OUT

from ats.ibsim import incoming, outgoing, versions, wire
from ats.ibsim.market import Instrument, bar_view, session_epoch
from ats.ibsim.orders import PlaceRequest
from ats.ibsim.session import ClientSession, HistSub

if TYPE_CHECKING:
    from ats.ibsim.host import GatewayHost, Handler

log = logging.getLogger("ats.ibsim")

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


def millis() -> int:
    return int(time.time() * 1000)


class RequestHandlers:
    """Handshake, request loop and request handlers of :class:`SimGateway`."""

    async def _handshake(self: GatewayHost, session: ClientSession) -> bool:
        """``API\\0`` + ``v<min>..<max>``: answer the negotiated version and the connection
        time.  A range that does not overlap ``[100, server_version]`` gets the gateway's own
        version (the client then gives up) and the connection is closed."""
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
        now = dt.datetime.now(dt.UTC).strftime("%Y%m%d %H:%M:%S") + " UTC"
        version = versions.negotiate(low, high, self.server_version)
        if version is None:
            log.warning("connection from %s: client versions %s..%s do not overlap %s..%s; answered %s and closing",
                        session.peer, low, high, versions.MIN_VERSION, self.server_version, self.server_version)
            session.send(outgoing.handshake_reply(self.server_version, now))
            await session.writer.drain()
            return False
        session.version = version
        session.send(outgoing.handshake_reply(version, now))
        self.handshakes += 1
        self.negotiated_versions.append(version)
        log.info("connection from %s: client versions %s..%s, speaking %s", session.peer, low, high, version)
        return True

    async def _serve(self: GatewayHost, session: ClientSession) -> None:
        reader = session.reader
        while not session.closed:
            (size,) = struct.unpack("!I", await reader.readexactly(4))
            if size == 0 or size > wire.MAX_MSG_LEN:
                session.send(outgoing.error(-1, 507, f"Bad message length: {size}", millis()))
                log.warning("client %s: bad message length %d, closing", session.peer, size)
                return
            payload = await reader.readexactly(size)
            try:
                msg_id, body = incoming.read_request(payload, session.version)
            except wire.BadRequest as exc:
                session.send(outgoing.error(-1, 320, f"Error reading request: {exc}", millis()))
                log.warning("client %s: unreadable request (%s)", session.peer, exc)
                continue
            except wire.WireError as exc:
                session.send(outgoing.error(-1, 320, f"Error reading request: {exc}", millis()))
                log.warning("client %s: malformed message %r (%s), closing", session.peer, payload[:80], exc)
                return
            if not session.started and msg_id != OUT.START_API:
                log.info("client %s: message %s before START_API ignored", session.peer, msg_id)
                continue
            handler = self._handlers.get(msg_id)
            if handler is None or body is None:
                session.send(outgoing.error(-1, 505, f"Fatal Error: Unknown message id {msg_id}.", millis()))
                log.warning("client %s: unknown message id %s", session.peer, msg_id)
                continue
            try:
                handler(self, session, incoming.decode(msg_id, body))
            except wire.WireError as exc:
                session.send(outgoing.error(-1, 320, f"Error reading request: {exc}", millis()))
                log.warning("client %s: bad request %s: %s", session.peer, msg_id, exc)
            except Exception:  # noqa: BLE001 - any failing handler is answered with 320; the session goes on
                log.exception("client %s: request %s failed", session.peer, msg_id)
                session.send(outgoing.error(-1, 320, f"Error processing request {msg_id}", millis()))
            self._notify()
            try:
                await asyncio.wait_for(session.writer.drain(), 30)
            except (TimeoutError, ConnectionError):
                return

    # ------------------------------------------------------------------ session requests

    def _on_start_api(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        client_id = req["client_id"]
        if session.started:
            return
        other = self._by_client.get(client_id)
        if other is not None and not other.closed:
            session.send(outgoing.error(
                -1, 326, "Unable to connect as the client id is already in use. Retry with a unique client id.",
                millis()))
            log.warning("client id %s already in use (%s), closing %s", client_id, other.peer, session.peer)
            session.close()
            return
        session.client_id = client_id
        session.started = True
        self._by_client[client_id] = session
        self.api_connections += 1
        log.info("client %s connected from %s at version %s", client_id, session.peer, session.version)
        session.send(outgoing.managed_accounts([self.account]))
        session.send(outgoing.next_valid_id(self.state.next_valid_id()))
        for code in (2104, 2106, 2158):
            session.send(outgoing.error(-1, code, ERROR_TEXTS[code], millis()))

    def _on_req_ids(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        session.send(outgoing.next_valid_id(self.state.next_valid_id()))

    def _on_noop(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        return None

    def _on_current_time(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        # The simulated world's clock: the replayed trading day, as far through its session as
        # the market clock is — not this machine's clock (a simulator is not "now").
        session.send(outgoing.current_time(int(time.time()) if self.wall_clock_time else self.market_epoch()))

    def market_epoch(self: GatewayHost) -> int:
        """Unix seconds of the simulated market clock (the replayed day and time of day)."""
        position = self.clock.position()
        return session_epoch(self.market.calendar[position.day], position.fraction)

    def _on_managed_accounts(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        session.send(outgoing.managed_accounts([self.account]))

    # ------------------------------------------------------------------ contracts and account

    def _find(self: GatewayHost, c: dict[str, Any]) -> Instrument | None:
        return self.market.find(
            con_id=c["con_id"], symbol=c["symbol"], local_symbol=c["local_symbol"], currency=c["currency"],
            primary_exchange=c["primary_exchange"], sec_type=c["sec_type"])

    def _find_or_reject(self: GatewayHost, session: ClientSession, req_id: int,
                        contract: dict[str, Any]) -> Instrument | None:
        """The instrument the request names, or None after answering error 200 as IB does."""
        instrument = self._find(contract)
        if instrument is None:
            session.send(outgoing.error(req_id, 200, "No security definition has been found for the request",
                                        millis()))
        return instrument

    def _on_contract_details(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        req_id = req["req_id"]
        instrument = self._find_or_reject(session, req_id, req["contract"])
        if instrument is None:
            return
        session.send(outgoing.contract_data(req_id, instrument.contract))
        session.send(outgoing.contract_data_end(req_id))

    def _on_account_summary(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        req_id = req["req_id"]
        tags = {t.strip() for t in req["tags"].split(",") if t.strip()} or None
        session.summary_subs[req_id] = tags
        for message in self.state.cash_account.summary_messages(req_id, tags):
            session.send(message)
        session.send(outgoing.account_summary_end(req_id))

    def _on_cancel_account_summary(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        session.summary_subs.pop(req["req_id"], None)

    def _on_positions(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        for message in self.state.cash_account.position_messages():
            session.send(message)

    def _on_open_orders(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        for message in self.state.open_orders(session.client_id):
            session.send(message)

    def _on_all_open_orders(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        for message in self.state.open_orders(None):
            session.send(message)

    def _on_executions(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        for message in self.state.cash_account.executions(req["req_id"], req["filter"]):
            session.send(message)

    # ------------------------------------------------------------------ market data

    def _on_historical_data(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        """Daily bars as stored; intraday bars (5 secs .. 8 hours) cut from each day's replayed
        price path; TRADES, ADJUSTED_LAST, MIDPOINT, BID and ASK (the quote is last ± 1 cent, and
        quote bars carry volume -1 as IB's do)."""
        req_id = req["req_id"]
        instrument = self._find_or_reject(session, req_id, req["contract"])
        if instrument is None:
            return
        what = (req["what_to_show"] or "TRADES").upper()
        if what not in WHAT_TO_SHOW:
            session.send(outgoing.error(req_id, 162, f"Historical Market Data Service error message:No data of "
                                                     f"type {what} is available", millis()))
            return
        try:
            seconds = bar_seconds(req["bar_size"])
            span = duration_days(req["duration"])
            end = parse_end(req["end"])
        except ValueError as exc:
            session.send(outgoing.error(req_id, 162 if "bar size" in str(exc) else 321,
                                        f"Historical Market Data Service error message:{exc}", millis()))
            return
        if req["keep_up_to_date"] and seconds != DAY:
            session.send(outgoing.error(req_id, 162, "Historical Market Data Service error message:keepUpToDate "
                                                     "is served for daily bars only by the simulator", millis()))
            return
        current = self.current_date
        last = current if end is None or end >= current else end
        first = last - dt.timedelta(days=span - 1)
        days = instrument.bars_between(first, last)
        if seconds != DAY and len(days) * (SESSION // seconds) > MAX_BARS:
            session.send(outgoing.error(req_id, 162, "Historical Market Data Service error message:Time length "
                                                     "exceed max.", millis()))
            return
        bars = []
        for bar in days:
            done = self._pos.fraction if bar.date == current else 1.0
            if seconds == DAY:
                o, h, l, c, v = bar.forming(done)
                bars.append(_shown(what, bar_view(bar.date.strftime("%Y%m%d"), o, h, l, c, v)))
                continue
            slices = SESSION // seconds
            for k in range(slices):
                f0, f1 = k / slices, min((k + 1) / slices, done)
                if f1 <= f0:
                    break
                low, high = bar.range_between(f0, f1)
                epoch = session_epoch(bar.date, f0)
                stamp = str(epoch) if req["format_date"] == 2 else _ny_time(epoch)
                view = bar_view(stamp, round(bar.price_at(f0), 2), round(high, 2), round(low, 2),
                                round(bar.price_at(f1), 2), int(bar.volume * (f1 - f0)))
                bars.append(_shown(what, view))
        start_text = first.strftime("%Y%m%d") + " 00:00:00 UTC"
        end_text = last.strftime("%Y%m%d") + " 23:59:59 UTC"
        session.send(outgoing.historical_data(req_id, bars, start_text, end_text))
        if session.version >= sv.MIN_SERVER_VER_HISTORICAL_DATA_END:
            session.send(outgoing.historical_data_end(req_id, start_text, end_text))
        if req["keep_up_to_date"] and end is None:
            session.hist_subs[req_id] = HistSub(req_id, instrument, True)

    def _on_cancel_historical_data(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        session.hist_subs.pop(req["req_id"], None)

    def _on_realtime_bars(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        req_id = req["req_id"]
        instrument = self._find_or_reject(session, req_id, req["contract"])
        if instrument is None:
            return
        session.rtb_subs[req_id] = (instrument, 0)

    def _on_cancel_realtime_bars(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        session.rtb_subs.pop(req["req_id"], None)

    def _on_mkt_data(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        req_id = req["req_id"]
        instrument = self._find_or_reject(session, req_id, req["contract"])
        if instrument is None:
            return
        last = self.last_price(instrument)
        size = "100"
        session.send(outgoing.market_data_type(req_id, 1))
        session.send(outgoing.tick_price(req_id, 1, round(last - 0.01, 2), size, 0))
        session.send(outgoing.tick_price(req_id, 2, round(last + 0.01, 2), size, 0))
        session.send(outgoing.tick_price(req_id, 4, last, size, 0))
        if req["snapshot"]:
            session.send(outgoing.tick_snapshot_end(req_id))
        else:
            session.mkt_subs[req_id] = instrument
            session.mkt_last[req_id] = last

    def _on_cancel_mkt_data(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        session.mkt_subs.pop(req["req_id"], None)

    # ------------------------------------------------------------------ orders

    def _on_place_order(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        assert session.client_id is not None
        known = {name: req[name] for name in PlaceRequest.__dataclass_fields__ if name in req}
        self._answer_order_request(self.state.place(session.client_id, PlaceRequest(**known)))
        if self.state.cash_account.summary_dirty:
            self._push_account_summary()

    def _on_cancel_order(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        assert session.client_id is not None
        self._answer_order_request(self.state.cancel(
            session.client_id, req["order_id"], {"manual_order_cancel_time": req["manual_order_cancel_time"]}))

    def _on_global_cancel(self: GatewayHost, session: ClientSession, req: dict[str, Any]) -> None:
        assert session.client_id is not None
        self._answer_order_request(self.state.global_cancel(session.client_id))

    _handlers: dict[int, Handler] = {
        OUT.START_API: _on_start_api,
        OUT.REQ_IDS: _on_req_ids,
        OUT.REQ_MARKET_DATA_TYPE: _on_noop,
        OUT.REQ_CURRENT_TIME: _on_current_time,
        OUT.REQ_MANAGED_ACCTS: _on_managed_accounts,
        OUT.REQ_CONTRACT_DATA: _on_contract_details,
        OUT.REQ_ACCOUNT_SUMMARY: _on_account_summary,
        OUT.CANCEL_ACCOUNT_SUMMARY: _on_cancel_account_summary,
        OUT.REQ_POSITIONS: _on_positions,
        OUT.CANCEL_POSITIONS: _on_noop,
        OUT.REQ_OPEN_ORDERS: _on_open_orders,
        OUT.REQ_ALL_OPEN_ORDERS: _on_all_open_orders,
        OUT.REQ_EXECUTIONS: _on_executions,
        OUT.REQ_HISTORICAL_DATA: _on_historical_data,
        OUT.CANCEL_HISTORICAL_DATA: _on_cancel_historical_data,
        OUT.REQ_REAL_TIME_BARS: _on_realtime_bars,
        OUT.CANCEL_REAL_TIME_BARS: _on_cancel_realtime_bars,
        OUT.REQ_MKT_DATA: _on_mkt_data,
        OUT.CANCEL_MKT_DATA: _on_cancel_mkt_data,
        OUT.PLACE_ORDER: _on_place_order,
        OUT.CANCEL_ORDER: _on_cancel_order,
        OUT.REQ_GLOBAL_CANCEL: _on_global_cancel,
    }


DAY = 86_400
SESSION = 23_400  # seconds of a regular NYSE/Nasdaq session (09:30-16:00)
MAX_BARS = 50_000  # one answer; more is refused as IB refuses a too long request
WHAT_TO_SHOW = {"TRADES", "ADJUSTED_LAST", "MIDPOINT", "BID", "ASK"}
_BAR_UNITS = {"sec": 1, "secs": 1, "min": 60, "mins": 60, "hour": 3600, "hours": 3600, "day": DAY, "days": DAY}


def bar_seconds(text: str) -> int:
    """``"5 secs"``, ``"1 min"``, ``"15 mins"``, ``"1 hour"``, ``"1 day"`` → seconds per bar."""
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit() or parts[1].lower() not in _BAR_UNITS:
        raise ValueError(f"bar size {text!r} is not available")
    seconds = int(parts[0]) * _BAR_UNITS[parts[1].lower()]
    if seconds not in (5, 10, 15, 30, 60, 120, 180, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 14400, 28800, DAY):
        raise ValueError(f"bar size {text!r} is not available")
    return seconds


def _ny_time(epoch: int) -> str:
    from zoneinfo import ZoneInfo

    return dt.datetime.fromtimestamp(epoch, ZoneInfo("America/New_York")).strftime("%Y%m%d %H:%M:%S") + " US/Eastern"


def _shown(what: str, view: outgoing.BarView) -> outgoing.BarView:
    """A TRADES bar as the requested kind: quotes shift by the half spread, carry no volume."""
    if what in ("TRADES", "ADJUSTED_LAST"):
        return view
    shift = {"MIDPOINT": 0.0, "BID": -0.01, "ASK": 0.01}[what]
    return outgoing.BarView(date=view.date, open=round(view.open + shift, 2), high=round(view.high + shift, 2),
                            low=round(view.low + shift, 2), close=round(view.close + shift, 2), volume=-1, wap=-1,
                            count=-1)


def duration_days(text: str) -> int:
    """``"N S|D|W|M|Y"`` → calendar days covered (at least 1)."""
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit():
        raise ValueError(f"bad duration {text!r}")
    n, unit = int(parts[0]), parts[1].upper()
    days = {"S": n / 86_400, "D": n, "W": 7 * n, "M": 31 * n, "Y": 366 * n}.get(unit)
    if days is None:
        raise ValueError(f"bad duration unit in {text!r}")
    return max(1, int(-(-days // 1)))


def parse_end(text: str) -> dt.date | None:
    """endDateTime: empty (now), ``YYYYMMDD HH:MM:SS [zone]`` or ``YYYYMMDD-HH:MM:SS``."""
    text = text.strip()
    if not text:
        return None
    try:
        return dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        raise ValueError(f"bad endDateTime {text!r}") from None

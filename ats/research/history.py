"""Daily bars fetched from the IB gateway (``reqHistoricalData``) into the bar catalog.

``ats data fetch --instrument QQQ.NASDAQ --mode paper --years 10`` asks the gateway the user
already runs (or the simulator) for the instrument's daily TRADES bars, regular trading hours,
one year per request going back from now, and merges them into the catalog.

Decisions, written down:

* **The stock ``ibapi`` client**, on a client id of its own (:data:`HISTORY_CLIENT_ID`, not the
  node's or the health probe's), connected only for the fetch.  Reading history places no order,
  so no gate applies; ``--mode`` only picks the gateway (``ATS_IB_PAPER_PORT``/``ATS_IB_LIVE_PORT``).
* **IB's pacing rules are kept** (:class:`Pacer`): no identical request within 15 s, at most 60
  requests in any 10 minutes, at most 5 requests for the same contract in any 2 s (IB counts a
  sixth as a violation).  The requests made are recorded in ``<data_dir>/ib-pacing.json`` under
  a file lock, so back-to-back fetches from several shells are paced together.
* **The bar of a session that has not closed is dropped**: a bar dated D counts only once the
  gateway's clock (``reqCurrentTime``) has passed 16:00 New York time on D.  IB serves the day's
  bar while it is still forming; stored, it would become the day's bar.
* **Validated and written exactly like ``ats data import``** (:func:`ats.research.catalog.validate_daily_records`,
  :func:`ats.research.catalog.merge_series`): the same rules and messages, the price precision from the
  decimals the gateway sent, nothing written unless every bar is valid, written all at once.
  Fetched dates replace stored bars of the same dates; other stored dates are kept.
* The fetch stops early when a request returns no bars (the instrument's history ends there).
"""

from __future__ import annotations

import fcntl
import json
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ats.core.errors import GatewayError, InputError
from ats.core.params import DEFAULT_BAR_SPEC, check_instrument_id

if TYPE_CHECKING:
    from ibapi.client import EClient
    from ibapi.common import BarData
    from ibapi.contract import Contract

# What the client tells the caller: ``(kind, request id, payload)``; the payload's type goes with the kind:
# ``time``: epoch seconds, ``end``: the request's bars, ``error``: ``(code, text)``, ``ready``/``closed``: None.
type HistoryEvent = tuple[str, int | None, Any]

HISTORY_CLIENT_ID = 978
# The API sends the client id as a 32-bit signed integer; a larger one failed inside ibapi's
# connection thread and the fetch then hung.
CLIENT_ID_MIN, CLIENT_ID_MAX = -(2**31), 2**31 - 1
MAX_YEARS = 50
REQUEST_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 10.0
NEW_YORK = ZoneInfo("America/New_York")
SESSION_CLOSE_HOUR = 16

IDENTICAL_SPACING_S = 15.0
WINDOW_S, WINDOW_MAX = 600.0, 60
BURST_S, BURST_MAX = 2.0, 5


# --------------------------------------------------------------------------------------------
# Pacing
# --------------------------------------------------------------------------------------------
class Pacer:
    """Waits as long as IB's historical-data pacing rules require before each request.

    ``ledger`` (a JSON file) keeps the requests of the last 10 minutes across processes; the
    clock and the sleep are parameters so the rules can be checked without waiting.
    """

    def __init__(self, ledger: Path | str, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.ledger = Path(ledger)
        self._clock = clock
        self._sleep = sleep

    def wait_turn(self, request: str, contract: str, *, on_wait: Callable[[float], None] | None = None) -> float:
        """Sleep until ``request`` (its full text) on ``contract`` may be sent, record it; the seconds waited."""
        waited = 0.0
        self.ledger.parent.mkdir(parents=True, exist_ok=True)
        with open(self.ledger.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                while True:
                    now = self._clock()
                    # a request "in the future" means the clock went back: it no longer paces anything
                    entries = [e for e in self._read() if 0 <= now - e["t"] < WINDOW_S]
                    delay = self.delay(entries, request, contract, now)
                    if delay <= 0:
                        entries.append({"t": now, "request": request, "contract": contract})
                        self._write(entries)
                        return waited
                    if on_wait:
                        on_wait(delay)
                    self._sleep(delay)
                    waited += delay
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @staticmethod
    def delay(entries: list[dict[str, Any]], request: str, contract: str, now: float) -> float:
        """Seconds until the three rules all allow ``request`` (0: now)."""
        waits = [0.0]
        same = [e["t"] for e in entries if e["request"] == request]
        if same:
            waits.append(max(same) + IDENTICAL_SPACING_S - now)
        times = sorted(e["t"] for e in entries)
        if len(times) >= WINDOW_MAX:
            waits.append(times[-WINDOW_MAX] + WINDOW_S - now)
        burst = sorted(e["t"] for e in entries if e["contract"] == contract and now - e["t"] < BURST_S)
        if len(burst) >= BURST_MAX:
            waits.append(burst[-BURST_MAX] + BURST_S - now)
        return max(waits)

    def _read(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.ledger.read_text())
        except (OSError, ValueError):
            return []  # none yet, or unreadable: start a new one
        return [e for e in data if isinstance(e, dict) and {"t", "request", "contract"} <= set(e)] \
            if isinstance(data, list) else []

    def _write(self, entries: list[dict[str, Any]]) -> None:
        scratch = self.ledger.with_suffix(".tmp")
        scratch.write_text(json.dumps(entries))
        scratch.replace(self.ledger)


# --------------------------------------------------------------------------------------------
# The ibapi client
# --------------------------------------------------------------------------------------------
def _client_class() -> type[EClient]:
    from ibapi.client import EClient
    from ibapi.wrapper import EWrapper

    class HistoryClient(EWrapper, EClient):
        """Collects historical bars and errors per request id into a queue read by the caller."""

        def __init__(self) -> None:
            EClient.__init__(self, self)
            self.events: queue.Queue[HistoryEvent] = queue.Queue()
            self.bars: dict[int, list[BarData]] = {}

        def nextValidId(self, orderId: int) -> None:  # noqa: N802, N803 - ibapi's names
            self.events.put(("ready", None, None))

        def currentTime(self, time: int) -> None:  # noqa: N802 - ibapi's names
            self.events.put(("time", None, time))

        def historicalData(self, reqId: int, bar: BarData) -> None:  # noqa: N802, N803 - ibapi's names
            self.bars.setdefault(reqId, []).append(bar)

        def historicalDataEnd(self, reqId: int, start: str, end: str) -> None:  # noqa: N802, N803 - ibapi's names
            self.events.put(("end", reqId, self.bars.pop(reqId, [])))

        def error(self, reqId: int, errorTime: int, errorCode: int, errorString: str,  # noqa: N802, N803 - ibapi's names
                  advancedOrderRejectJson: str = "") -> None:
            if errorCode in (2104, 2106, 2107, 2108, 2158, 2119):  # "market data farm connection is OK" notices
                return
            self.events.put(("error", reqId, (errorCode, errorString)))

        def connectionClosed(self) -> None:  # noqa: N802 - ibapi's names
            self.events.put(("closed", None, None))

    return HistoryClient


@dataclass(frozen=True)
class FetchRequest:
    """One ``reqHistoricalData`` call: the end (``""``: the gateway's now) and the duration."""

    end: str
    duration: str = "1 Y"

    def key(self, instrument_id: str) -> str:
        return f"{instrument_id}|{self.end}|{self.duration}|1 day|TRADES|RTH"


class _Connection:
    def __init__(self, host: str, port: int, client_id: int) -> None:
        self.app = _client_class()()
        self.host, self.port = host, port
        try:  # ibapi reports a refused connection only through its error callback: ask first
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            raise GatewayError(f"cannot connect to the gateway at {host}:{port} ({exc.strerror or exc}); "
                               "is it running and is its API enabled?") from None
        self.app.connect(host, port, client_id)
        if not self.app.isConnected():
            raise GatewayError(f"the gateway at {host}:{port} did not accept the API connection; is it running, "
                               f"with its API enabled and client id {client_id} free?")
        self.thread = threading.Thread(target=self.app.run, name="ats-history", daemon=True)
        self.thread.start()
        kind, _, payload = self._next(CONNECT_TIMEOUT_S, wanted=("ready",))
        if kind != "ready":
            raise GatewayError(f"the gateway at {host}:{port} refused the API session: {payload}")

    def _next(self, timeout: float, wanted: tuple[str, ...], req_id: int | None = None) -> HistoryEvent:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GatewayError(f"the gateway at {self.host}:{self.port} did not answer within {timeout:.0f} s")
            try:
                kind, rid, payload = self.app.events.get(timeout=remaining)
            except queue.Empty:
                continue
            if kind == "closed":
                raise GatewayError(f"the gateway at {self.host}:{self.port} closed the connection")
            if kind == "error" and (rid in (req_id, -1) or req_id is None):
                code, text = payload
                if rid == -1 and code >= 2100:  # a notice, not an answer
                    continue
                return kind, rid, payload
            if kind in wanted and (req_id is None or rid == req_id):
                return kind, rid, payload

    def current_time(self) -> datetime:
        self.app.reqCurrentTime()
        kind, _, payload = self._next(REQUEST_TIMEOUT_S, wanted=("time",))
        if kind == "error":
            raise GatewayError(f"the gateway did not tell its time: error {payload[0]} {payload[1]}")
        return datetime.fromtimestamp(int(payload), tz=UTC)

    def bars(self, req_id: int, contract: Contract, request: FetchRequest) -> list[BarData] | None:
        """The bars of one request, or ``None`` when the gateway has no data for it."""
        self.app.reqHistoricalData(req_id, contract, request.end, request.duration, "1 day", "TRADES", 1, 1,
                                   False, [])
        kind, _, payload = self._next(REQUEST_TIMEOUT_S, wanted=("end",), req_id=req_id)
        if kind == "end":
            return payload
        code, text = payload
        if code == 162 and "pacing" in text.lower():
            raise GatewayError(f"the gateway reports a pacing violation (error 162: {text}); wait 10 minutes "
                               "and fetch again")
        if code == 162 and "no data" in text.lower():
            return None
        if code == 200:
            raise InputError(f"the gateway does not know {contract.symbol} on {contract.primaryExchange} "
                             f"(error 200: {text}); check the instrument id")
        raise GatewayError(f"the historical data request failed: error {code} {text}")

    def close(self) -> None:
        self.app.disconnect()
        self.thread.join(timeout=5)


def _contract(instrument_id: str) -> Contract:
    from ibapi.contract import Contract

    symbol, venue = instrument_id.rsplit(".", 1)
    contract = Contract()
    contract.symbol = symbol
    contract.secType = "STK"
    contract.exchange = "SMART"
    contract.primaryExchange = venue
    contract.currency = "USD"
    return contract


# --------------------------------------------------------------------------------------------
# The fetch
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FetchSummary:
    """What :func:`fetch_daily_bars` did: requests, bars received and kept, and what was stored."""

    instrument_id: str
    mode: str
    gateway: str
    requests: int
    bars: int
    dropped_forming: int
    paced_seconds: float
    stored: dict[str, Any]  # ats.research.catalog.MergeSummary.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {"instrument_id": self.instrument_id, "mode": self.mode, "gateway": self.gateway,
                "requests": self.requests, "bars": self.bars, "dropped_forming": self.dropped_forming,
                "paced_seconds": round(self.paced_seconds, 3), **self.stored}


def _session_closed(day: date, now: datetime) -> bool:
    close = datetime(day.year, day.month, day.day, SESSION_CLOSE_HOUR, tzinfo=NEW_YORK)
    return now >= close


def _bar_date(text: str) -> date:
    text = text.strip()
    try:
        return datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        raise GatewayError(f"the gateway sent a bar dated {text!r}, not YYYYMMDD") from None


def _price_text(value: float) -> str:
    return repr(float(value))


def _pacing_note(progress: Callable[[int, int, str], None], done: int, total: int, seconds: float) -> None:
    progress(done, total, f"pacing: waiting {seconds:.1f} s")


def fetch_daily_bars(instrument_id: str, *, mode: str, years: int, data_dir: Path | str, host: str, port: int,
                     client_id: int = HISTORY_CLIENT_ID, bar_spec: str = DEFAULT_BAR_SPEC,
                     progress: Callable[[int, int, str], None] | None = None,
                     pacer: Pacer | None = None) -> FetchSummary:
    """Fetch ``years`` years of daily bars of ``instrument_id`` from the gateway at ``host:port`` and
    merge them into the catalog under ``data_dir``.

    ``progress(done, total, note)`` is called after each request (and with a note while pacing
    waits).  Raises :class:`InputError` for bad input (nothing contacted) or bars that fail
    validation (nothing written), :class:`GatewayError` when the gateway fails (nothing written).
    """
    from ats.research.catalog import merge_series, validate_daily_records

    check_instrument_id(instrument_id)
    if mode not in ("paper", "live"):
        raise InputError(f"mode must be paper or live (got {mode!r})")
    if not 1 <= years <= MAX_YEARS:
        raise InputError(f"--years must be between 1 and {MAX_YEARS} (got {years})")
    if not CLIENT_ID_MIN <= client_id <= CLIENT_ID_MAX:
        raise InputError(f"--client-id must be a 32-bit integer, {CLIENT_ID_MIN} to {CLIENT_ID_MAX} (got {client_id})")
    if bar_spec != DEFAULT_BAR_SPEC:
        raise InputError(f"only daily bars ({DEFAULT_BAR_SPEC}) can be fetched (got {bar_spec})")
    pacer = pacer or Pacer(Path(data_dir) / "ib-pacing.json")
    contract = _contract(instrument_id)

    received: dict[date, Any] = {}
    requests = 0
    paced = 0.0
    connection = _Connection(host, port, client_id)
    try:
        now = connection.current_time()
        end = ""
        for k in range(years):
            request = FetchRequest(end)
            paced += pacer.wait_turn(request.key(instrument_id), instrument_id, on_wait=(
                partial(_pacing_note, progress, k, years) if progress else None))
            bars = connection.bars(1000 + k, contract, request)
            requests += 1
            if progress:
                progress(k + 1, years, "")
            if not bars:
                break
            for bar in bars:
                received.setdefault(_bar_date(bar.date), bar)
            earliest = min(_bar_date(bar.date) for bar in bars)
            end = (earliest - timedelta(days=1)).strftime("%Y%m%d") + "-23:59:59"
    finally:
        connection.close()

    days = sorted(received)
    complete = [d for d in days if _session_closed(d, now)]
    if not complete:
        raise GatewayError(f"the gateway at {host}:{port} sent no completed daily bars of {instrument_id}")
    data = validate_daily_records(
        (f"gateway bar {d}", {"date": d.isoformat(), "open": _price_text(received[d].open),
                              "high": _price_text(received[d].high), "low": _price_text(received[d].low),
                              "close": _price_text(received[d].close),
                              "volume": format(Decimal(str(received[d].volume)), "f")})
        for d in complete)
    merged = merge_series(instrument_id, data, data_dir, bar_spec)
    return FetchSummary(instrument_id=instrument_id, mode=mode, gateway=f"{host}:{port}", requests=requests,
                        bars=len(complete), dropped_forming=len(days) - len(complete), paced_seconds=paced,
                        stored=merged.to_dict())

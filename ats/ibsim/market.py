"""Stored daily bars replayed on a clock the caller controls.

The simulated market position is a trading day plus the fraction of that day's session already
replayed (0.0 = the open, 1.0 = the close).  Inside a day the price follows the usual OHLC path
open → nearer extreme → other extreme → close, linearly in thirds of the session, so a forming
bar, 5-second bars and limit-order crossings are all derived from the one daily bar.

Clock modes (:class:`SimClock`):

* ``manual``: the position moves only on :meth:`SimClock.advance`; every day is at its close
  (fraction 1.0), so the latest bar's close is the last price.
* ``accelerated``: one trading day per ``seconds_per_day`` seconds of wall time; the session
  starts at the open of the start day.  :meth:`SimClock.advance` still jumps whole days.
* ``realtime``: ``accelerated`` with a day lasting the 6.5 h regular session.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from ats.ibsim.errors import SimInputError
from ats.ibsim.outgoing import BarView
from ats.ibsim.wire import ContractSpec

SESSION_SECONDS = 23_400  # 09:30-16:00 America/New_York
_NEW_YORK = ZoneInfo("America/New_York")

# Contract facts for well-known symbols; anything else gets a stable synthetic conId.
_KNOWN: dict[str, dict[str, str | int]] = {
    "QQQ": {"con_id": 320227571, "long_name": "INVESCO QQQ TRUST SERIES 1", "isin": "US46090E1038",
            "stock_type": "ETF", "trading_class": "NMS"},
    "SPY": {"con_id": 756733, "long_name": "SPDR S&P 500 ETF TRUST", "isin": "US78462F1030",
            "stock_type": "ETF", "trading_class": "SPY"},
}


def default_data_path() -> Path:
    """The QQQ daily bars that ship with ats."""
    return Path(__file__).resolve().parent.parent / "data" / "QQQ_unadjusted.csv"


def _round_price(value: float) -> float:
    return float(Decimal(repr(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


@dataclass(frozen=True, slots=True)
class DailyBar:
    """One stored daily bar."""

    date: dt.date
    open: float
    high: float
    low: float
    close: float
    volume: int

    def price_at(self, fraction: float) -> float:
        """Price on the intraday path at ``fraction`` of the session (0 open, 1 close)."""
        points = self._points()
        f = min(max(fraction, 0.0), 1.0) * 3.0
        i = min(int(f), 2)
        return points[i] + (points[i + 1] - points[i]) * (f - i)

    def range_between(self, f0: float, f1: float) -> tuple[float, float]:
        """(low, high) of the intraday path between two fractions."""
        f0, f1 = sorted((min(max(f0, 0.0), 1.0), min(max(f1, 0.0), 1.0)))
        prices = [self.price_at(f0), self.price_at(f1)]
        prices += [p for k, p in enumerate(self._points()) if f0 < k / 3 < f1]
        return min(prices), max(prices)

    def forming(self, fraction: float) -> tuple[float, float, float, float, int]:
        """(open, high, low, close, volume) of the bar replayed up to ``fraction``."""
        if fraction >= 1.0:
            return self.open, self.high, self.low, self.close, self.volume
        low, high = self.range_between(0.0, fraction)
        close = self.price_at(fraction)
        return self.open, _round_price(high), _round_price(low), _round_price(close), int(self.volume * fraction)

    def _points(self) -> tuple[float, float, float, float]:
        if self.high - self.open <= self.open - self.low:
            return self.open, self.high, self.low, self.close
        return self.open, self.low, self.high, self.close


def load_daily_bars(path: Path) -> list[DailyBar]:
    """Read ``date,open,high,low,close,volume[,...]`` CSV rows, sorted by date."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise SimInputError(f"bar file {path} line {line}: not UTF-8 text ({exc.reason} at byte {exc.start}): "
                            "save the file as UTF-8") from None
    except OSError as exc:
        raise SimInputError(f"cannot read bar file {path}: {exc.strerror or exc}") from None
    bars: list[DailyBar] = []
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        missing = {"date", "open", "high", "low", "close", "volume"} - set(reader.fieldnames or [])
        if missing:
            raise SimInputError(f"bar file {path} lacks columns: {', '.join(sorted(missing))}")
        rows = list(reader)
    except csv.Error as exc:
        problem = (f"a field is longer than {csv.field_size_limit()} characters"
                   if "field larger than field limit" in str(exc) else f"not readable as CSV ({exc})")
        raise SimInputError(f"bar file {path} line {reader.reader.line_num}: {problem}") from None
    for line, row in enumerate(rows, start=2):
        try:
            bar = DailyBar(
                date=dt.date.fromisoformat(row["date"].strip()[:10]),
                open=_round_price(float(row["open"])),
                high=_round_price(float(row["high"])),
                low=_round_price(float(row["low"])),
                close=_round_price(float(row["close"])),
                volume=int(float(row["volume"] or 0)),
            )
        except (ValueError, TypeError) as exc:
            raise SimInputError(f"bar file {path} line {line}: {exc}") from exc
        if bar.open <= 0 or bar.low > bar.high:
            continue
        bars.append(bar)
    if not bars:
        raise SimInputError(f"bar file {path} has no bars")
    bars.sort(key=lambda b: b.date)
    return bars


def contract_for(symbol: str, venue: str) -> ContractSpec:
    """The contract the simulator serves for ``SYMBOL.VENUE``."""
    facts = _KNOWN.get(symbol, {})
    con_id = int(facts.get("con_id", 0)) or 10_000_000 + zlib.crc32(f"{symbol}.{venue}".encode()) % 90_000_000
    return ContractSpec(
        con_id=con_id,
        symbol=symbol,
        primary_exchange=venue,
        local_symbol=symbol,
        trading_class=str(facts.get("trading_class", symbol)),
        long_name=str(facts.get("long_name", symbol)),
        isin=str(facts.get("isin", "")),
        stock_type=str(facts.get("stock_type", "COMMON")),
    )


def parse_instrument_id(text: str) -> tuple[str, str]:
    """``SYMBOL.VENUE`` → (symbol, venue); raises :class:`SimInputError` otherwise."""
    symbol, dot, venue = text.strip().partition(".")
    if not dot or not symbol or not venue or not symbol.replace("-", "").isalnum() or not venue.isalnum():
        raise SimInputError(f"bad instrument {text!r}: expected SYMBOL.VENUE, e.g. QQQ.NASDAQ")
    return symbol.upper(), venue.upper()


class Instrument:
    """One contract with its bars, indexed by the market calendar."""

    def __init__(self, contract: ContractSpec, bars: list[DailyBar]) -> None:
        self.contract = contract
        self.bars = bars
        self._by_date = {b.date: b for b in bars}
        self._dates = [b.date for b in bars]

    def bar_on(self, day: dt.date) -> DailyBar | None:
        return self._by_date.get(day)

    def last_bar_until(self, day: dt.date) -> DailyBar | None:
        """The latest bar dated on or before ``day``."""
        from bisect import bisect_right

        i = bisect_right(self._dates, day)
        return self.bars[i - 1] if i else None

    def bars_between(self, first: dt.date, last: dt.date) -> list[DailyBar]:
        from bisect import bisect_left, bisect_right

        return self.bars[bisect_left(self._dates, first) : bisect_right(self._dates, last)]


class Market:
    """All instruments and the common trading calendar (union of their dates)."""

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        self.instruments = {i.contract.instrument_id: i for i in instruments}
        if not self.instruments:
            raise SimInputError("the simulator needs at least one instrument")
        self.calendar: list[dt.date] = sorted({b.date for i in self.instruments.values() for b in i.bars})

    @classmethod
    def from_files(cls, data: dict[str, Path | str] | None) -> Market:
        """Load ``{"SYMBOL.VENUE": csv_path}``; ``None`` or empty: the shipped QQQ.NASDAQ bars."""
        data = data or {"QQQ.NASDAQ": default_data_path()}
        instruments = []
        for instrument_id, path in data.items():
            symbol, venue = parse_instrument_id(instrument_id)
            instruments.append(Instrument(contract_for(symbol, venue), load_daily_bars(Path(path))))
        return cls(instruments)

    def index_of(self, start: str | dt.date | None) -> int:
        """Calendar index of the first trading day on or after ``start`` (default: a year before the end)."""
        if start is None:
            return max(0, len(self.calendar) - 252)
        day = start if isinstance(start, dt.date) else _parse_date(start)
        from bisect import bisect_left

        i = bisect_left(self.calendar, day)
        if i >= len(self.calendar):
            raise SimInputError(
                f"start {day} is after the last bar ({self.calendar[-1]}); pick a date in the data"
            )
        return i

    def find(self, *, con_id: int = 0, symbol: str = "", local_symbol: str = "", currency: str = "",
             primary_exchange: str = "", sec_type: str = "") -> Instrument | None:
        """Resolve a contract the ways clients ask: conId, localSymbol, or symbol (+currency)."""
        if sec_type and sec_type.upper() != "STK":
            return None
        for instrument in self.instruments.values():
            c = instrument.contract
            if con_id:
                if c.con_id == con_id:
                    return instrument
                continue
            name = local_symbol or symbol
            if not name or name.upper() != c.local.upper():
                continue
            if symbol and symbol.upper() != c.symbol.upper():
                continue
            if currency and currency.upper() != c.currency:
                continue
            if primary_exchange and primary_exchange.upper() not in (c.primary_exchange, "SMART"):
                continue
            return instrument
        return None


def _parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError as exc:
        raise SimInputError(f"bad date {text!r}: expected YYYY-MM-DD") from exc


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A clock position: calendar index and fraction of that day's session replayed."""

    day: int
    fraction: float


class SimClock:
    """The simulated market clock (see the module docstring for the modes).

    Thread-safe: tests and the control port call :meth:`advance` from other threads.
    """

    def __init__(self, mode: str = "manual", seconds_per_day: float | None = None) -> None:
        if mode not in ("manual", "accelerated", "realtime"):
            raise SimInputError(f"bad clock mode {mode!r}: manual, accelerated or realtime")
        if mode == "accelerated" and (seconds_per_day is None or seconds_per_day <= 0):
            raise SimInputError("accelerated clock needs seconds_per_day > 0")
        self.mode = mode
        self.seconds_per_day = float(SESSION_SECONDS if mode == "realtime" else (seconds_per_day or 0))
        self._lock = threading.Lock()
        self._start = 0
        self._last = 0
        self._offset = 0
        self._t0 = time.monotonic()

    @classmethod
    def from_speed(cls, speed: str | float | None) -> SimClock:
        """``manual``, ``realtime`` or seconds per trading day (a number)."""
        if speed is None or speed == "manual":
            return cls("manual")
        if speed == "realtime":
            return cls("realtime")
        try:
            seconds = float(speed)
        except (TypeError, ValueError):
            raise SimInputError(f"bad speed {speed!r}: manual, realtime or seconds per trading day") from None
        if not math.isfinite(seconds) or seconds <= 0:
            raise SimInputError(f"bad speed {speed!r}: seconds per trading day must be > 0")
        return cls("accelerated", seconds)

    def bind(self, start_index: int, last_index: int) -> None:
        """Attach to a calendar: the session starts at ``start_index``."""
        with self._lock:
            self._start, self._last, self._offset = start_index, last_index, 0
            self._t0 = time.monotonic()

    @property
    def tick_seconds(self) -> float:
        """How often the server should sample the clock."""
        if self.mode == "manual":
            return 0.0
        if self.mode == "realtime":
            return 5.0
        return max(0.05, min(1.0, self.seconds_per_day / 10))

    def position(self) -> Position:
        with self._lock:
            if self.mode == "manual":
                return Position(min(self._start + self._offset, self._last), 1.0)
            x = (time.monotonic() - self._t0) / self.seconds_per_day
            day = self._start + self._offset + int(x)
            if day > self._last:
                return Position(self._last, 1.0)
            return Position(day, x - int(x))

    def advance(self, days: int = 1) -> None:
        """Jump ``days`` trading days ahead (at the same point of the session)."""
        if days < 0:
            raise SimInputError("the clock cannot go backwards")
        with self._lock:
            self._offset += days

    @property
    def at_end(self) -> bool:
        p = self.position()
        return p.day >= self._last and p.fraction >= 1.0


def session_epoch(day: dt.date, fraction: float) -> int:
    """Unix seconds of ``fraction`` through the regular session of ``day`` (New York hours)."""
    open_ = dt.datetime.combine(day, dt.time(9, 30), tzinfo=_NEW_YORK)
    return int(open_.timestamp() + min(max(fraction, 0.0), 1.0) * SESSION_SECONDS)


def bar_view(date_text: str, o: float, h: float, l: float, c: float, v: int) -> BarView:
    wap = round((o + h + l + c) / 4, 4)
    return BarView(date=date_text, open=o, high=h, low=l, close=c, volume=v, wap=wap, count=max(1, v // 100))

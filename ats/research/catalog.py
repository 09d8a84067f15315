"""The daily-bar data catalog: CSV import, listing, and the bars the backtest reads.

Bars live in a Nautilus ``ParquetDataCatalog`` under ``<data_dir>/catalog`` together with the
instrument definition (an ``Equity`` quoted in USD, lot size 1).

Decisions, written down:

* **Timestamps.**  A daily bar of date D is stamped ``ts_event`` = midnight UTC of D and
  ``ts_init`` = the end of D (midnight UTC of D+1 minus 1 ns).  That is exactly what the IB
  adapter produces for historical daily bars (ib_sim_spec §2.5), so a bar a paper session
  received and a stored bar of the same day carry the same ``ts_event`` and date.
* **Price precision.**  The instrument's price precision is the largest number of decimals
  found in the file's prices (at least 2), so no stored price is rounded: the unadjusted QQQ
  file has 4 decimals (pre-2001 prices are on a 1/64 grid).
* **Validation before writing.**  The whole file is checked first; any problem is an
  :class:`~ats.core.errors.InputError` naming the line (the header is line 1) and nothing is
  written.  The new data is written to a scratch catalog and then moved into place, so a
  failure while writing also leaves the catalog as it was.
* **Open or close outside [low, high].**  ``high < low`` is refused.  An open or close outside
  the bar's range by at most 1 % is a vendor rounding slip (Yahoo's raw QQQ has open 193.84
  above high 193.83 on 2019-07-19); the range is widened to include it and a warning naming
  the line is returned in :attr:`ImportSummary.warnings`.  Further outside is refused.
* **Dividends.**  The optional ``dividend`` column is validated but not stored: bars carry
  prices only, and the backtest does not credit dividends.
* A re-import of the same instrument replaces its stored bars.
"""

from __future__ import annotations

import csv
import math
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ats.core.errors import InputError
from ats.core.params import DEFAULT_BAR_SPEC, parse_bar_type, parse_instrument_id

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from nautilus_trader.model.data import Bar, BarType
    from nautilus_trader.model.identifiers import InstrumentId
    from nautilus_trader.model.instruments import Equity, Instrument
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

REQUIRED_COLUMNS = ("date", "open", "high", "low", "close", "volume")
OPTIONAL_COLUMNS = ("dividend",)
DEFAULT_INSTRUMENT = "QQQ.NASDAQ"
# Relative slack allowed for an open/close outside [low, high] before the row is refused.
RANGE_SLACK = 0.01
NS_PER_DAY = 86_400 * 1_000_000_000
CSV_COLUMNS = f"columns {','.join(REQUIRED_COLUMNS)}[,dividend]"
# A bar is stamped in nanoseconds since 1970 (an unsigned 64-bit integer in Nautilus, read back
# through pandas, whose timestamps end on 2262-04-11): dates outside this range overflowed.
FIRST_DATE = date(1970, 1, 1)
LAST_DATE = date(2262, 4, 10)


def shipped_csv() -> Path:
    """The QQQ daily bars (unadjusted: quoted prices) that ship with the package."""
    return Path(__file__).resolve().parents[1] / "data" / "QQQ_unadjusted.csv"


def catalog_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / "catalog"


@dataclass(frozen=True)
class DailyRow:
    """One validated CSV row."""

    date: date
    open: float
    high: float
    low: float
    close: float
    volume: int


@dataclass
class DailyData:
    """A validated CSV file: rows in date order, the price precision, and any warnings."""

    rows: list[DailyRow]
    price_precision: int
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ImportSummary:
    """What :func:`import_csv` stored."""

    instrument_id: str
    bar_type: str
    rows: int
    first_date: str
    last_date: str
    price_precision: int
    catalog: str
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["warnings"] = list(self.warnings)
        return data


@dataclass(frozen=True)
class CatalogEntry:
    """One stored bar series: instrument, bar type, date range and bar count."""

    instrument_id: str
    bar_type: str
    first_date: str | None
    last_date: str | None
    bars: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# CSV validation
# --------------------------------------------------------------------------------------------
def _decimals(text: str) -> int:
    exponent = Decimal(text).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _number(text: str, column: str, line: str) -> float:
    raw = (text or "").strip()
    try:
        value = float(raw)
        Decimal(raw)
    except (ValueError, InvalidOperation):
        raise InputError(f"{line}: {column} {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{line}: {column} {raw!r} is not a finite number")
    return value


def read_daily_csv(csv_path: Path | str) -> DailyData:
    """Read and validate a daily OHLCV CSV (``date,open,high,low,close,volume[,dividend]``).

    Raises :class:`InputError` naming the line and the problem: empty file, missing column,
    wrong number of fields, a date that is not ``YYYY-MM-DD``, duplicate or unsorted dates,
    a non-numeric or non-positive price, a negative or fractional volume, ``high < low``, an
    open/close far outside the bar's range.
    """
    # The messages leave the path out: the caller names the file once (``ats data import``
    # prints ``FILE: message``).
    path = Path(csv_path)
    if path.is_dir():
        raise InputError("is a directory, not a CSV file: give the path of the CSV file")
    if not path.is_file():
        raise InputError(f"not found: give the path of a CSV file with {CSV_COLUMNS}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise InputError(f"line {line}: not UTF-8 text ({exc.reason} at byte {exc.start}): save the file as UTF-8") from None
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror or exc}): give a regular CSV file") from None
    reader = csv.reader(text.splitlines())
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise InputError(f"line 1: {_csv_problem(exc)}") from None
    if header is None or not any(cell.strip() for cell in header):
        raise InputError(f"line 1: empty file, expected a header {','.join(REQUIRED_COLUMNS)}[,dividend]")
    names = [cell.strip().lower() for cell in header]
    for column in REQUIRED_COLUMNS:
        if column not in names:
            raise InputError(
                f"line 1: missing column {column!r} (expected columns {','.join(REQUIRED_COLUMNS)}[,dividend],"
                f" got {','.join(names)})"
            )
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InputError(f"line 1: column {duplicated[0]!r} appears more than once")
    index = {name: names.index(name) for name in names}

    def rows_read() -> Iterator[list[str]]:
        while True:
            try:
                yield next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise InputError(f"line {reader.line_num}: {_csv_problem(exc)}") from None

    def records() -> Iterator[tuple[str, dict[str, str]]]:
        for line, record in enumerate(rows_read(), start=2):
            if not record or not any(cell.strip() for cell in record):
                raise InputError(f"line {line}: empty row")
            if len(record) != len(names):
                raise InputError(f"line {line}: expected {len(names)} fields, got {len(record)}")
            yield f"line {line}", {name: record[i] for name, i in index.items()}

    data = validate_daily_records(records())
    if not data.rows:
        raise InputError("line 2: no data rows after the header")
    return data


def _csv_problem(exc: csv.Error) -> str:
    if "field larger than field limit" in str(exc):
        return f"a field is longer than {csv.field_size_limit()} characters; expected {CSV_COLUMNS}"
    return f"not readable as CSV ({exc})"


def validate_daily_records(records: Iterable[tuple[str, dict[str, str]]]) -> DailyData:
    """Validate daily bars given as text, in order: ``(where, {"date": …, "open": …, …})``.

    The one set of rules for every source (a CSV file, the gateway): ``where`` names the row in
    the error (``line 7``).  The price precision is the most decimals written (at least 2).
    """
    # Nautilus' own bounds: a Price or Quantity beyond them is refused only when the bars are
    # built (a ValueError mid-import); refused here with the line instead.
    from nautilus_trader.model.objects import PRICE_MAX, QUANTITY_MAX

    rows: list[DailyRow] = []
    warnings: list[str] = []
    seen: dict[date, str] = {}
    precision = 2
    for line, record in records:
        raw_date = record["date"].strip()
        try:
            day = date.fromisoformat(raw_date)
            if len(raw_date) != 10:
                raise ValueError
        except ValueError:
            raise InputError(f"{line}: date {raw_date!r} is not a date (expected YYYY-MM-DD)") from None
        if not FIRST_DATE <= day <= LAST_DATE:
            raise InputError(f"{line}: date {day} is outside the dates a bar can be stamped with "
                             f"({FIRST_DATE} to {LAST_DATE})")
        if day in seen:
            raise InputError(f"{line}: duplicate date {day} (first on {seen[day]})")
        if rows and day < rows[-1].date:
            raise InputError(
                f"{line}: date {day} is before the previous row's {rows[-1].date} (dates must increase)"
            )
        seen[day] = line
        prices = {}
        for column in ("open", "high", "low", "close"):
            value = _number(record[column], column, line)
            if value <= 0:
                raise InputError(f"{line}: {column} {record[column].strip()} is not a positive price")
            if value > PRICE_MAX:
                raise InputError(f"{line}: {column} {record[column].strip()} is larger than a price "
                                 f"can be (at most {int(PRICE_MAX)})")
            prices[column] = value
            precision = max(precision, _decimals(record[column].strip()))
        volume = _number(record["volume"], "volume", line)
        if volume < 0 or volume != int(volume):
            raise InputError(f"{line}: volume {record['volume'].strip()} is not a whole number ≥ 0")
        if volume > QUANTITY_MAX:
            raise InputError(f"{line}: volume {record['volume'].strip()} is larger than a bar can hold "
                             f"(at most {int(QUANTITY_MAX)})")
        if "dividend" in record:
            dividend = _number(record["dividend"], "dividend", line)
            if dividend < 0:
                raise InputError(f"{line}: dividend {dividend} is negative")
        o, h, lo, c = prices["open"], prices["high"], prices["low"], prices["close"]
        if h < lo:
            raise InputError(f"{line}: high {h} is below low {lo}")
        for column, value in (("open", o), ("close", c)):
            if value > h:
                if value - h > RANGE_SLACK * h:
                    raise InputError(f"{line}: {column} {value} is above high {h} by more than 1%")
                warnings.append(f"{line}: {column} {value} above high {h}; high raised to {value}")
                h = value
            elif value < lo:
                if lo - value > RANGE_SLACK * lo:
                    raise InputError(f"{line}: {column} {value} is below low {lo} by more than 1%")
                warnings.append(f"{line}: {column} {value} below low {lo}; low lowered to {value}")
                lo = value
        rows.append(DailyRow(day, o, h, lo, c, int(volume)))
    if precision > 9:
        raise InputError(f"prices have {precision} decimals; at most 9 are supported")
    return DailyData(rows=rows, price_precision=precision, warnings=warnings)


# --------------------------------------------------------------------------------------------
# Nautilus objects
# --------------------------------------------------------------------------------------------
def make_equity(instrument_id: str | InstrumentId, price_precision: int = 2) -> Equity:
    """A USD ``Equity`` with lot size 1 and the given price precision."""
    from nautilus_trader.model.currencies import USD
    from nautilus_trader.model.identifiers import InstrumentId, Symbol
    from nautilus_trader.model.instruments import Equity
    from nautilus_trader.model.objects import Price, Quantity

    iid = instrument_id if isinstance(instrument_id, InstrumentId) else parse_instrument_id(str(instrument_id))
    return Equity(
        instrument_id=iid,
        raw_symbol=Symbol(iid.symbol.value),
        currency=USD,
        price_precision=price_precision,
        price_increment=Price(10.0 ** -price_precision, price_precision),
        lot_size=Quantity.from_int(1),
        ts_event=0,
        ts_init=0,
    )


def day_ns(day: date) -> int:
    """Midnight UTC of ``day`` in nanoseconds (a daily bar's ``ts_event``)."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000_000


def rows_to_bars(rows: list[DailyRow], bar_type: BarType, price_precision: int) -> list[Bar]:
    """Nautilus bars stamped like the IB adapter's daily bars (see the module docstring)."""
    from nautilus_trader.model.data import Bar
    from nautilus_trader.model.objects import Price, Quantity

    bars = []
    for row in rows:
        ts_event = day_ns(row.date)
        bars.append(Bar(
            bar_type,
            Price(row.open, price_precision),
            Price(row.high, price_precision),
            Price(row.low, price_precision),
            Price(row.close, price_precision),
            Quantity(row.volume, 0),
            ts_event,
            ts_event + NS_PER_DAY - 1,
        ))
    return bars


# --------------------------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------------------------
def _open_catalog(path: Path) -> ParquetDataCatalog:
    from nautilus_trader.persistence.catalog import ParquetDataCatalog

    return ParquetDataCatalog(str(path))


def _leaf_dirs(root: Path) -> list[Path]:
    """Directories under ``root/data`` that hold files: one per data class and identifier."""
    data = root / "data"
    if not data.is_dir():
        return []
    return sorted({p.parent for p in data.rglob("*") if p.is_file()})


def import_csv(csv_path: Path | str, instrument_id: str, data_dir: Path | str,
               bar_spec: str = DEFAULT_BAR_SPEC) -> ImportSummary:
    """Validate ``csv_path`` and store it as ``instrument_id`` daily bars under ``data_dir/catalog``.

    Nothing is written unless the whole file is valid (see :func:`read_daily_csv`).  An
    existing series of the same instrument is replaced.
    """
    iid = parse_instrument_id(instrument_id)
    bar_type = parse_bar_type(str(iid), bar_spec)
    return store_series(iid, bar_type, read_daily_csv(csv_path), data_dir)


def store_series(iid: InstrumentId, bar_type: BarType, data: DailyData, data_dir: Path | str) -> ImportSummary:
    """Write validated rows as the instrument's bar series (and its instrument), replacing a stored one.

    Written to a scratch catalog first and then moved into place, so a failure while writing
    leaves the catalog as it was.
    """
    instrument = make_equity(iid, data.price_precision)
    bars = rows_to_bars(data.rows, bar_type, data.price_precision)

    root = catalog_path(data_dir)
    _refuse_a_shared_place(iid, root)
    root.parent.mkdir(parents=True, exist_ok=True)
    scratch = root.parent / f".catalog-import-{uuid.uuid4().hex[:12]}"
    try:
        catalog = _open_catalog(scratch)
        catalog.write_data([instrument])
        catalog.write_data(bars)
        # Move each written series into place, replacing the same series if it was stored.
        for leaf in _leaf_dirs(scratch):
            target = root / leaf.relative_to(scratch)
            target.parent.mkdir(parents=True, exist_ok=True)
            backup = target.with_name(target.name + f".old-{uuid.uuid4().hex[:8]}")
            if target.exists():
                target.rename(backup)
            leaf.rename(target)
            if backup.exists():
                shutil.rmtree(backup)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    return ImportSummary(
        instrument_id=str(iid),
        bar_type=str(bar_type),
        rows=len(data.rows),
        first_date=data.rows[0].date.isoformat(),
        last_date=data.rows[-1].date.isoformat(),
        price_precision=data.price_precision,
        catalog=str(root),
        warnings=tuple(data.warnings),
    )


def _refuse_a_shared_place(iid: InstrumentId, root: Path) -> None:
    """The catalog names its directories after the instrument id without its ``/`` characters, so
    ``A/B.NASDAQ`` and ``AB.NASDAQ`` would share (and overwrite) one series: refuse the second."""
    from nautilus_trader.persistence.funcs import urisafe_identifier

    if not (root / "data").is_dir():
        return
    place = urisafe_identifier(iid)
    for stored in _open_catalog(root).instruments():
        if stored.id != iid and urisafe_identifier(stored.id) == place:
            raise InputError(f"instrument id {iid} would be stored in the same place as the stored {stored.id} "
                             f"(the catalog drops '/' from its names): import it under another id, or "
                             f"replace {stored.id} by importing with --instrument {stored.id}")


@dataclass(frozen=True)
class MergeSummary:
    """What :func:`merge_series` changed: new dates, stored dates replaced with other values, the same."""

    stored: ImportSummary
    added: int
    changed: int
    unchanged: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.stored.to_dict(), "added": self.added, "changed": self.changed, "unchanged": self.unchanged}


def merge_series(instrument_id: str, data: DailyData, data_dir: Path | str,
                 bar_spec: str = DEFAULT_BAR_SPEC) -> MergeSummary:
    """Merge validated rows into the stored series: their dates replace the stored bars of the
    same dates, other stored dates are kept; written like :func:`import_csv` (all or nothing)."""
    iid = parse_instrument_id(instrument_id)
    bar_type = parse_bar_type(str(iid), bar_spec)
    if not data.rows:
        raise InputError(f"no bars to merge into {bar_type}")
    stored = load_bars(str(iid), data_dir, bar_spec)
    instrument = load_instrument(str(iid), data_dir) if stored else None
    by_date = {datetime.fromtimestamp(b.ts_event / 1e9, tz=UTC).date():
               DailyRow(datetime.fromtimestamp(b.ts_event / 1e9, tz=UTC).date(), float(b.open), float(b.high),
                        float(b.low), float(b.close), int(b.volume)) for b in stored}
    added = changed = 0
    for row in data.rows:
        old = by_date.get(row.date)
        added += old is None
        changed += old is not None and old != row
        by_date[row.date] = row
    precision = max(data.price_precision, instrument.price_precision if instrument is not None else 2)
    merged = DailyData(rows=[by_date[d] for d in sorted(by_date)], price_precision=precision,
                       warnings=list(data.warnings))
    summary = store_series(iid, bar_type, merged, data_dir)
    return MergeSummary(summary, added, changed, len(data.rows) - added - changed)


def load_instrument(instrument_id: str, data_dir: Path | str) -> Instrument | None:
    """The stored instrument definition, or ``None``."""
    root = catalog_path(data_dir)
    if not (root / "data").is_dir():
        return None
    found = _open_catalog(root).instruments(instrument_ids=[str(instrument_id)])
    return found[0] if found else None


def load_bars(instrument_id: str, data_dir: Path | str, bar_spec: str = DEFAULT_BAR_SPEC) -> list[Bar]:
    """All stored bars of ``instrument_id`` for ``bar_spec``, in time order (may be empty)."""
    bar_type = parse_bar_type(str(instrument_id), bar_spec)
    root = catalog_path(data_dir)
    if not (root / "data" / "bar" / str(bar_type)).is_dir():
        return []
    return _open_catalog(root).bars(bar_types=[str(bar_type)])


def series_stamp(instrument_id: str, data_dir: Path | str, bar_spec: str = DEFAULT_BAR_SPEC) -> tuple:
    """What identifies the stored files of a bar series and of the instruments (name, size,
    mtime): equal stamps, equal data.  Imports and fetches replace files, so the stamp changes."""
    root = catalog_path(data_dir) / "data"
    bar_type = parse_bar_type(str(instrument_id), bar_spec)
    stamp = []
    for directory in (root / "bar" / str(bar_type), root / "equity"):
        if directory.is_dir():
            for path in sorted(p for p in directory.rglob("*") if p.is_file()):
                info = path.stat()
                stamp.append((str(path), info.st_size, info.st_mtime_ns))
    return tuple(stamp)


def has_bars(instrument_id: str, data_dir: Path | str, bar_spec: str = DEFAULT_BAR_SPEC) -> bool:
    """Whether a bar series of ``instrument_id`` is stored (without reading it)."""
    directory = catalog_path(data_dir) / "data" / "bar" / str(parse_bar_type(str(instrument_id), bar_spec))
    return directory.is_dir() and any(p.is_file() for p in directory.rglob("*.parquet"))


def list_catalog(data_dir: Path | str) -> list[CatalogEntry]:
    """Every stored bar series with its first and last date and bar count."""
    root = catalog_path(data_dir)
    bar_root = root / "data" / "bar"
    if not bar_root.is_dir():
        return []
    from nautilus_trader.model.data import BarType

    catalog = _open_catalog(root)
    entries = []
    for directory in sorted(p for p in bar_root.iterdir() if p.is_dir() and ".old-" not in p.name):
        bars = catalog.bars(bar_types=[directory.name])
        first = last = None
        if bars:
            first = datetime.fromtimestamp(bars[0].ts_event / 1e9, tz=UTC).date().isoformat()
            last = datetime.fromtimestamp(bars[-1].ts_event / 1e9, tz=UTC).date().isoformat()
        instrument_id = str(BarType.from_str(directory.name).instrument_id)
        entries.append(CatalogEntry(instrument_id, directory.name, first, last, len(bars)))
    return entries


def ensure_default_data(data_dir: Path | str) -> ImportSummary | None:
    """Import the shipped QQQ bars as ``QQQ.NASDAQ`` if the catalog has none; else ``None``."""
    if has_bars(DEFAULT_INSTRUMENT, data_dir):
        return None
    source = shipped_csv()
    if not source.is_file():
        raise InputError(f"the shipped QQQ data is missing ({source}); import bars with `ats data import`")
    return import_csv(source, DEFAULT_INSTRUMENT, data_dir)

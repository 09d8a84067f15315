"""CSV import into the bar catalog: good files stored, every malformed file refused with its line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ats.core.errors import InputError
from ats.research.catalog import (
    ensure_default_data,
    import_csv,
    list_catalog,
    load_bars,
    load_instrument,
    read_daily_csv,
    shipped_csv,
)

GOOD = """date,open,high,low,close,volume,dividend
2024-01-02,400.00,402.50,398.25,401.00,1000,0.0
2024-01-03,401.00,405.00,400.00,404.75,2000,0.0
2024-01-04,404.00,404.50,399.10,400.20,1500,0.5
"""


def write(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the hash of its content."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_good_csv_is_stored_with_the_instrument(tmp_path):
    summary = import_csv(write(tmp_path, GOOD), "QQQ.NASDAQ", tmp_path / "data")
    assert (summary.rows, summary.first_date, summary.last_date) == (3, "2024-01-02", "2024-01-04")
    bars = load_bars("QQQ.NASDAQ", tmp_path / "data")
    assert [float(b.close) for b in bars] == [401.0, 404.75, 400.2]
    # Stamped like the IB adapter's daily bars: ts_event = midnight UTC of the date.
    assert bars[0].ts_event == 1704153600 * 10**9
    assert bars[0].ts_init == bars[0].ts_event + 86_400 * 10**9 - 1
    instrument = load_instrument("QQQ.NASDAQ", tmp_path / "data")
    assert (instrument.price_precision, str(instrument.quote_currency), int(instrument.lot_size)) == (2, "USD", 1)


def test_an_id_that_would_share_a_stored_series_place_is_refused_and_nothing_changes(tmp_path):
    # Arrange: AB.NASDAQ stored; A/B.NASDAQ differs from it only by the '/' the catalog drops.
    data_dir = tmp_path / "data"
    import_csv(write(tmp_path, GOOD), "AB.NASDAQ", data_dir)
    before = snapshot(data_dir / "catalog")

    # Act
    with pytest.raises(InputError) as excinfo:
        import_csv(write(tmp_path, GOOD.splitlines()[0] + "\n" + GOOD.splitlines()[1] + "\n", "one.csv"),
                   "A/B.NASDAQ", data_dir)

    # Assert
    assert str(excinfo.value).startswith("instrument id A/B.NASDAQ would be stored in the same place as the "
                                         "stored AB.NASDAQ (the catalog drops '/' from its names)")
    assert snapshot(data_dir / "catalog") == before
    assert len(load_bars("AB.NASDAQ", data_dir)) == 3


def test_list_shows_each_series_with_its_range(tmp_path):
    import_csv(write(tmp_path, GOOD), "SPY.ARCA", tmp_path / "data")
    entries = list_catalog(tmp_path / "data")
    assert [e.to_dict() for e in entries] == [{
        "instrument_id": "SPY.ARCA", "bar_type": "SPY.ARCA-1-DAY-LAST-EXTERNAL",
        "first_date": "2024-01-02", "last_date": "2024-01-04", "bars": 3,
    }]


def test_empty_catalog_lists_nothing(tmp_path):
    assert list_catalog(tmp_path / "nothing") == []


def test_reimport_replaces_the_series(tmp_path):
    data = tmp_path / "data"
    import_csv(write(tmp_path, GOOD), "QQQ.NASDAQ", data)
    shorter = "\n".join(GOOD.splitlines()[:2]) + "\n"
    import_csv(write(tmp_path, shorter, "short.csv"), "QQQ.NASDAQ", data)
    assert len(load_bars("QQQ.NASDAQ", data)) == 1
    assert [e.bars for e in list_catalog(data)] == [1]


def test_the_shipped_qqq_file_imports_whole(tmp_path):
    summary = ensure_default_data(tmp_path / "data")
    assert summary is not None
    assert (summary.rows, summary.first_date, summary.last_date) == (6496, "1999-03-10", "2024-12-31")
    assert summary.price_precision == 4  # pre-2001 prices are on a 1/64 grid: nothing rounded
    assert summary.warnings == ()
    assert ensure_default_data(tmp_path / "data") is None  # already there: nothing to do


def test_shipped_file_is_the_unadjusted_series():
    assert shipped_csv().is_file()
    rows = read_daily_csv(shipped_csv()).rows
    spot = {r.date.isoformat(): r.close for r in rows}
    assert spot["2005-01-03"] == pytest.approx(39.50, abs=0.005)  # SOURCES.md spot values
    assert spot["2021-12-27"] == pytest.approx(403.48, abs=0.005)


def test_open_a_cent_above_high_widens_the_range_with_a_warning(tmp_path):
    # Yahoo's raw QQQ has exactly this on 2019-07-19: open 193.84 above high 193.83.
    text = "date,open,high,low,close,volume\n2019-07-19,193.84,193.83,190.81,191.01,29387900\n"
    summary = import_csv(write(tmp_path, text), "QQQ.NASDAQ", tmp_path / "data")
    assert summary.warnings == ("line 2: open 193.84 above high 193.83; high raised to 193.84",)
    assert float(load_bars("QQQ.NASDAQ", tmp_path / "data")[0].high) == 193.84


BAD_CASES = {
    "empty file": ("", "line 1: empty file"),
    "missing column": (GOOD.replace(",volume,", ",vol,"), "line 1: missing column 'volume'"),
    "high below low": (GOOD.replace("401.00,405.00,400.00", "401.00,399.00,400.00"),
                       "line 3: high 399.0 is below low 400.0"),
    "duplicate date": (GOOD.replace("2024-01-04", "2024-01-03"),
                       "line 4: duplicate date 2024-01-03 (first on line 3)"),
    "unsorted dates": (GOOD.replace("2024-01-03", "2024-01-05"),
                       "line 4: date 2024-01-04 is before the previous row's 2024-01-05"),
    "non-numeric price": (GOOD.replace("404.75", "abc"), "line 3: close 'abc' is not a number"),
    "non-numeric volume": (GOOD.replace(",1500,", ",lots,"), "line 4: volume 'lots' is not a number"),
    "bad date": (GOOD.replace("2024-01-03", "03/01/2024"), "line 3: date '03/01/2024' is not a date"),
    "short row": (GOOD.replace("404.75,2000,0.0", "404.75"), "line 3: expected 7 fields, got 5"),
    "negative price": (GOOD.replace("398.25", "-398.25"), "line 2: low -398.25 is not a positive price"),
    "close far above high": (GOOD.replace("400.20,1500", "450.20,1500"),
                             "line 4: close 450.2 is above high 404.5 by more than 1%"),
    "header only": ("date,open,high,low,close,volume\n", "line 2: no data rows"),
    "nan price": (GOOD.replace("402.50", "nan"), "line 2: high 'nan' is not a finite number"),
    # A bar's nanosecond stamp overflowed (OverflowError) for these:
    "date before 1970": (GOOD.replace("2024-01-02", "1960-01-04"),
                         "line 2: date 1960-01-04 is outside the dates a bar can be stamped with (1970-01-01 to 2262-04-10)"),
    "date in year 9999": (GOOD.replace("2024-01-04", "9999-12-31"),
                          "line 4: date 9999-12-31 is outside the dates a bar can be stamped with"),
    "oversized field": (GOOD.replace("404.75", "4" * 140_000),
                        "line 3: a field is longer than 131072 characters; expected columns date,open,high"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_malformed_csv_is_refused_with_its_line_and_nothing_written(tmp_path, case):
    data = tmp_path / "data"
    import_csv(write(tmp_path, GOOD, "first.csv"), "QQQ.NASDAQ", data)  # something already stored
    before = snapshot(data)
    text, message = BAD_CASES[case]
    with pytest.raises(InputError) as info:
        import_csv(write(tmp_path, text), "QQQ.NASDAQ", data)
    assert message in str(info.value)
    assert snapshot(data) == before
    assert sorted(p.name for p in data.iterdir()) == ["catalog"]  # no scratch left behind


def test_malformed_csv_into_an_empty_data_dir_creates_nothing(tmp_path):
    with pytest.raises(InputError, match="line 3"):
        import_csv(write(tmp_path, GOOD.replace("404.75", "x")), "QQQ.NASDAQ", tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(InputError, match="not found: give the path of a CSV file"):
        import_csv(tmp_path / "nope.csv", "QQQ.NASDAQ", tmp_path / "data")


def test_a_directory_is_refused_as_one(tmp_path):
    with pytest.raises(InputError, match="is a directory, not a CSV file"):
        import_csv(tmp_path, "QQQ.NASDAQ", tmp_path / "data")


def test_a_file_that_cannot_be_read_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"cannot be read \(Input/output error\)"):
        import_csv(Path("/proc/self/mem"), "QQQ.NASDAQ", tmp_path / "data")


def test_a_file_that_is_not_utf8_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "bars.csv"
    path.write_bytes(GOOD.replace("404.75", "404.75\xa0").encode("latin-1"))

    with pytest.raises(InputError) as info:
        import_csv(path, "QQQ.NASDAQ", tmp_path / "data")

    assert str(info.value).startswith("line 3: not UTF-8 text (invalid start byte at byte ")
    assert str(path) not in str(info.value)  # the caller names the file, once
    assert not (tmp_path / "data").exists()


def test_bad_instrument_id_is_refused_before_reading(tmp_path):
    with pytest.raises(InputError, match="expected SYMBOL.VENUE"):
        import_csv(write(tmp_path, GOOD), "QQQ", tmp_path / "data")

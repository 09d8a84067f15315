"""`ats data fetch`: daily bars through the gateway (the simulator), paced as IB requires, stored
exactly as `ats data import` stores the same bars."""

from __future__ import annotations

import csv
import json
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from ats.research.catalog import catalog_path, import_csv, load_bars, load_instrument, shipped_csv
from ats.research.history import BURST_S, IDENTICAL_SPACING_S, WINDOW_MAX, WINDOW_S, Pacer, _session_closed
from support import free_port, run_ats


def _csv(path: Path, first: str, last: str, alter: dict[str, dict[str, str]] | None = None) -> Path:
    """Shipped QQQ rows between two dates, prices in cents (what the simulator serves)."""
    with shipped_csv().open() as source, path.open("w", newline="") as target:
        writer = csv.writer(target)
        writer.writerow(["date", "open", "high", "low", "close", "volume"])
        for row in csv.DictReader(source):
            if first <= row["date"] <= last:
                cents = {k: str(Decimal(row[k]).quantize(Decimal("0.01"), ROUND_HALF_UP))
                         for k in ("open", "high", "low", "close")}
                cents.update((alter or {}).get(row["date"], {}))
                writer.writerow([row["date"], cents["open"], cents["high"], cents["low"], cents["close"], row["volume"]])
    return path


def _stored(data_dir: Path) -> tuple[int, list[tuple]]:
    bars = load_bars("QQQ.NASDAQ", data_dir)
    return (load_instrument("QQQ.NASDAQ", data_dir).price_precision,
            [(b.ts_event, b.ts_init, str(b.open), str(b.high), str(b.low), str(b.close), str(b.volume)) for b in bars])


def _fetch(port: int, *args: str):
    return run_ats("data", "fetch", "--instrument", "QQQ.NASDAQ", "--mode", "paper", *args,
                   env={"ATS_IB_PAPER_PORT": str(port)})


def test_fetching_from_the_simulator_stores_the_bars_importing_its_csv_stores(isolated_env: Path, sim_factory,
                                                                             tmp_path: Path) -> None:
    source = _csv(tmp_path / "qqq.csv", "2018-01-01", "2024-12-31")
    sim = sim_factory(data={"QQQ.NASDAQ": source}, start="2024-12-31")

    result = _fetch(sim.port, "--years", "10", "--json")

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    # A year per request, each ending the day before the earliest bar so far (the years do not fall on
    # January 1st): eight requests with bars, then one that found none and ended the fetch early.
    assert summary["requests"] == 9
    assert (summary["first_date"], summary["last_date"], summary["added"]) == ("2018-01-02", "2024-12-31", 1761)
    assert summary["paced_seconds"] > 0  # the sixth request within 2 s waited
    imported = tmp_path / "imported"
    import_csv(source, "QQQ.NASDAQ", imported)
    assert _stored(isolated_env) == _stored(imported)


def test_fetched_bars_replace_stored_ones_of_the_same_dates_and_keep_the_rest(isolated_env: Path, sim_factory,
                                                                            tmp_path: Path) -> None:
    truth = _csv(tmp_path / "truth.csv", "2022-01-01", "2024-12-31")
    sim = sim_factory(data={"QQQ.NASDAQ": truth}, start="2024-12-31")
    import_csv(_csv(tmp_path / "stale.csv", "2022-01-01", "2024-12-31", alter={"2024-06-03": {"close": "450.00"}}),
               "QQQ.NASDAQ", isolated_env)

    result = _fetch(sim.port, "--years", "1")

    assert result.returncode == 0, result.stderr
    assert "0 new, 1 changed, 251 unchanged" in result.stdout
    assert "now holds 753 bars (2022-01-03 to 2024-12-31)" in result.stdout
    imported = tmp_path / "imported"
    import_csv(truth, "QQQ.NASDAQ", imported)
    assert _stored(isolated_env) == _stored(imported)


def test_a_bar_the_import_would_refuse_is_refused_and_nothing_is_written(isolated_env: Path, sim_factory,
                                                                         tmp_path: Path) -> None:
    source = _csv(tmp_path / "bad.csv", "2024-01-01", "2024-12-31", alter={"2024-12-30": {"close": "600.00"}})
    sim = sim_factory(data={"QQQ.NASDAQ": source}, start="2024-12-31")

    result = _fetch(sim.port, "--years", "1")

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: gateway bar 2024-12-30: close 600.0 is above high 519.36 by more than 1%"]
    assert not catalog_path(isolated_env).exists()


def test_an_instrument_the_gateway_does_not_know_is_one_line(isolated_env: Path, sim_gateway) -> None:
    result = run_ats("data", "fetch", "--instrument", "SPY.ARCA", "--mode", "paper",
                     env={"ATS_IB_PAPER_PORT": str(sim_gateway.port)})

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the gateway does not know SPY on ARCA (error 200")


def test_no_gateway_is_one_line_and_nothing_written(isolated_env: Path) -> None:
    port = free_port()

    result = _fetch(port)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: cannot connect to the gateway at 127.0.0.1:{port} (Connection refused); is it running and is its "
        "API enabled?"]
    assert not catalog_path(isolated_env).exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--years", "0"], "--years must be between 1 and 50 (got 0)"),
    (["--years", "51"], "--years must be between 1 and 50 (got 51)"),
    (["--client-id", "2147483648"], "Invalid value for '--client-id': Input should be less than or equal to 2147483647 (see --help)"),
    (["--client-id", "-2147483649"],
     "Invalid value for '--client-id': Input should be greater than or equal to -2147483648 (see --help)"),
])
def test_bad_options_are_refused_before_connecting(isolated_env: Path, args: list[str], message: str) -> None:
    result = _fetch(free_port(), *args)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {message}"]


def test_a_client_id_beyond_32_bits_is_refused_before_connecting(tmp_path: Path) -> None:
    from ats.core.errors import InputError
    from ats.research.history import fetch_daily_bars

    with pytest.raises(InputError, match=r"--client-id must be a 32-bit integer, -2147483648 to 2147483647 \(got 2147483648\)"):
        fetch_daily_bars("QQQ.NASDAQ", mode="paper", years=1, data_dir=tmp_path, host="127.0.0.1", port=free_port(),
                         client_id=2**31)


# --- pacing (IB's rules; the clock is a parameter so nothing waits for real) -----------------------

class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def _pacer(tmp_path: Path, clock: _Clock) -> Pacer:
    return Pacer(tmp_path / "ib-pacing.json", clock=clock, sleep=clock.sleep)


def test_an_identical_request_waits_15_seconds(tmp_path: Path) -> None:
    clock = _Clock()
    pacer = _pacer(tmp_path, clock)
    pacer.wait_turn("QQQ|20241231|1 Y", "QQQ.NASDAQ")
    clock.now += 4

    waited = pacer.wait_turn("QQQ|20241231|1 Y", "QQQ.NASDAQ")

    assert waited == IDENTICAL_SPACING_S - 4


def test_a_sixth_request_for_one_contract_within_2_seconds_waits(tmp_path: Path) -> None:
    clock = _Clock()
    pacer = _pacer(tmp_path, clock)
    for k in range(5):
        assert pacer.wait_turn(f"QQQ|{k}", "QQQ.NASDAQ") == 0
        clock.now += 0.1

    other_contract = pacer.wait_turn("SPY|0", "SPY.ARCA")
    sixth = pacer.wait_turn("QQQ|5", "QQQ.NASDAQ")

    assert other_contract == 0
    assert sixth == pytest.approx(BURST_S - 0.5)


def test_the_61st_request_in_10_minutes_waits_for_the_oldest_to_age_out(tmp_path: Path) -> None:
    clock = _Clock()
    pacer = _pacer(tmp_path, clock)
    start = clock.now
    for k in range(WINDOW_MAX):
        pacer.wait_turn(f"R{k}", f"C{k}")  # different contracts: only the 10-minute rule applies
        clock.now += 1

    waited = pacer.wait_turn("R60", "C60")

    assert clock.now == pytest.approx(start + WINDOW_S)
    assert waited == pytest.approx(WINDOW_S - WINDOW_MAX)


def test_requests_of_another_process_count(tmp_path: Path) -> None:
    clock = _Clock()
    _pacer(tmp_path, clock).wait_turn("QQQ|x", "QQQ.NASDAQ")

    waited = _pacer(tmp_path, clock).wait_turn("QQQ|x", "QQQ.NASDAQ")  # a second Pacer on the same ledger

    assert waited == IDENTICAL_SPACING_S


def test_a_daily_bar_counts_once_its_session_has_closed_in_new_york() -> None:
    day = date(2024, 7, 1)  # EDT: the close is 20:00 UTC

    assert not _session_closed(day, datetime(2024, 7, 1, 19, 59, tzinfo=UTC))
    assert _session_closed(day, datetime(2024, 7, 1, 20, 0, tzinfo=UTC))
    assert _session_closed(date(2024, 12, 2), datetime(2024, 12, 2, 21, 0, tzinfo=UTC))  # EST: 21:00 UTC

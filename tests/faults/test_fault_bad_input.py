"""Bad input everywhere a user types, through the real command line: one clear line, non-zero, nothing written.

Every case runs the real command (``python -m ats.paper|ats.live|ats.cli``) in a subprocess with
a fresh data directory of its own and no ``ATS_*`` variable but the case's.  Each must print
exactly one line on stderr saying what is wrong, exit non-zero, and leave nothing behind: no
database, or one with an empty audit log and no session; no bars in the catalog.

The cases run concurrently (a few at a time) once per module; each test checks one case.  As a
safety net a case that wrongly starts a session finds no gateway (``docker`` controller, closed
ports) and is killed after :data:`TIMEOUT_S`.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support import refused_port

# The first test pays for the module's fixture: every case's CLI process (about 85, 3 at a time; 9 min
# on a loaded 2-core machine); the others only read its results.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TIMEOUT_S = 90
SLEEVE = ("--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ")
GOOD_ITEM = '{"strategy": "ibs_reversion", "instrument": "QQQ.NASDAQ"}'
CSV_HEADER = "date,open,high,low,close,volume\n"


@dataclass(frozen=True)
class Case:
    """One command a user might type, and the line that must refuse it."""

    id: str
    argv: tuple[str, ...]  # after ``python -m``; ``{dir}`` is the case's directory
    message: str  # must appear in the one stderr line
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str | bytes] = field(default_factory=dict)  # written into the case's directory first
    code: int = 2
    secret: str = ""  # must not appear anywhere in the output (an account id, a password)


def paper(*args: str) -> tuple[str, ...]:
    return ("ats.paper", *args)


def live(*args: str) -> tuple[str, ...]:
    return ("ats.live", *args)


def ats(*args: str) -> tuple[str, ...]:
    return ("ats.cli", *args)


CASES = [
    # --params
    Case("params-malformed-json", paper(*SLEEVE, "--params", '{"buy_threshold": 0.15'),
         "params are not valid JSON: Expecting ',' delimiter at line 1 column 23"),
    Case("params-not-an-object", paper(*SLEEVE, "--params", "[0.15]"),
         "params must be a JSON object like"),
    Case("params-unknown-key", paper(*SLEEVE, "--params", '{"buy_treshold": 0.15}'),
         "unknown parameter 'buy_treshold' for ibs_reversion (did you mean buy_threshold?)"),
    Case("params-wrong-type", paper(*SLEEVE, "--params", '{"buy_threshold": "low"}'),
         'parameter buy_threshold for ibs_reversion must be a number, got "low"'),
    Case("params-out-of-range", paper(*SLEEVE, "--params", '{"buy_threshold": 5}'),
         "params for ibs_reversion: buy_threshold must be between 0 and 1"),
    Case("live-params-unknown-key", live(*SLEEVE, "--params", '{"x": 1}'),
         "unknown parameter 'x' for ibs_reversion"),
    Case("params-nan", paper(*SLEEVE, "--params", '{"buy_threshold": NaN}'),
         "params for ibs_reversion: NaN is not a number a strategy can use: give a finite number for buy_threshold"),
    Case("params-infinity", paper(*SLEEVE, "--params", '{"notional": Infinity}'),
         "params for ibs_reversion: Infinity is not a number a strategy can use: give a finite number for notional"),
    Case("live-params-overflowing-number", live(*SLEEVE, "--params", '{"notional": -1e999}'),
         "params for ibs_reversion: -Infinity is not a number a strategy can use: give a finite number for notional"),
    Case("ladder-params-nan", ats("ladder", "run", *SLEEVE, "--params", '{"sell_threshold": NaN}'),
         "params for ibs_reversion: NaN is not a number a strategy can use: give a finite number for sell_threshold"),
    # --sleeves-json
    Case("sleeves-bad-json", paper("--sleeves-json", "[{"), "--sleeves-json is not valid JSON"),
    Case("sleeves-bad-json-file", paper("--sleeves-json", "{dir}/book.json"), "book.json is not valid JSON",
         files={"book.json": "[" + GOOD_ITEM + ","}),
    Case("sleeves-not-a-list", paper("--sleeves-json", GOOD_ITEM),
         "--sleeves-json must be a non-empty JSON list of {strategy, instrument, bar_spec, params}"),
    Case("sleeves-empty-list", paper("--sleeves-json", "[]"), "--sleeves-json must be a non-empty JSON list"),
    Case("sleeves-item-not-an-object", paper("--sleeves-json", '["ibs_reversion"]'),
         "--sleeves-json item 0 must be an object"),
    Case("sleeves-unknown-key", paper("--sleeves-json", '[{"strategy": "ibs_reversion", "instrument": "QQQ.NASDAQ", '
                                                        '"colour": "red"}]'),
         "--sleeves-json item 0: unknown key 'colour'; allowed: strategy, instrument, bar_spec, params"),
    Case("sleeves-missing-strategy", paper("--sleeves-json", '[{"instrument": "QQQ.NASDAQ"}]'),
         "--sleeves-json item 0: missing 'strategy'"),
    Case("sleeves-duplicate", paper("--sleeves-json", f"[{GOOD_ITEM}, {GOOD_ITEM}]"),
         "--sleeves-json: sleeve ibs_reversion@QQQ.NASDAQ appears twice"),
    Case("sleeves-bad-params-in-item", paper("--sleeves-json", '[{"strategy": "ibs_reversion", "instrument": '
                                                               '"QQQ.NASDAQ", "params": {"nope": 1}}]'),
         "--sleeves-json item 0: unknown parameter 'nope' for ibs_reversion"),
    Case("sleeves-nan-in-item", paper("--sleeves-json", '[{"strategy": "ibs_reversion", "instrument": '
                                                        '"QQQ.NASDAQ", "params": {"buy_threshold": NaN}}]'),
         "--sleeves-json item 0: params for ibs_reversion: NaN is not a number a strategy can use"),
    Case("sleeves-file-not-utf8", paper("--sleeves-json", "{dir}/book.json"),
         "book.json is not a UTF-8 text file (invalid start byte at byte 0): save it as UTF-8",
         files={"book.json": f"[{GOOD_ITEM}]".encode("utf-16")}),
    Case("sleeves-neither-json-nor-file", paper("--sleeves-json", "book.json"),
         "--sleeves-json: 'book.json' is neither JSON nor an existing file"),
    Case("sleeves-and-strategy", paper(*SLEEVE, "--sleeves-json", f"[{GOOD_ITEM}]"),
         "give either --sleeves-json or --strategy/--instrument, not both"),
    # strategy, instrument, bar spec, stop time
    Case("unknown-strategy", paper("--strategy", "ibs_reverse", "--instrument", "QQQ.NASDAQ"),
         "unknown strategy 'ibs_reverse'; known strategies: ibs_reversion, order_check"),
    Case("live-unknown-strategy", live("--strategy", "nope", "--instrument", "QQQ.NASDAQ"),
         "unknown strategy 'nope'"),
    Case("instrument-without-venue", paper("--strategy", "ibs_reversion", "--instrument", "QQQ"),
         "instrument id 'QQQ' is malformed: expected SYMBOL.VENUE, e.g. QQQ.NASDAQ"),
    Case("instrument-too-long", paper("--strategy", "ibs_reversion", "--instrument", "Q" * 94 + ".NASDAQ"),
         "instrument id 'QQQQQQQQQQQQQQQQQQQQ'… is longer than 100 characters"),
    Case("instrument-with-spaces", paper("--strategy", "ibs_reversion", "--instrument", "QQQ NASDAQ"),
         "instrument id 'QQQ NASDAQ' is malformed"),
    Case("bar-spec-malformed", paper(*SLEEVE, "--bar-spec", "daily"),
         "bar spec 'daily' is malformed: expected STEP-AGGREGATION-PRICE_TYPE, e.g. 1-DAY-LAST"),
    Case("bar-spec-unknown-aggregation", paper(*SLEEVE, "--bar-spec", "1-FORTNIGHT-LAST"),
         "bar spec '1-FORTNIGHT-LAST': unknown aggregation 'FORTNIGHT'"),
    Case("until-not-a-time", paper(*SLEEVE, "--until", "25:99"),
         "--until '25:99': expected HH:MM (America/New_York) or an ISO date-time"),
    Case("missing-strategy", paper("--instrument", "QQQ.NASDAQ"),
         "give --strategy and --instrument (or --sleeves-json FILE|JSON)"),
    # account ids for each mode
    Case("paper-runner-live-account", paper(*SLEEVE), "ATS_IB_PAPER_ACCOUNT_ID: expected a paper account id: DU",
         env={"ATS_IB_PAPER_ACCOUNT_ID": "U7654321"}),
    Case("paper-runner-garbage-account", paper(*SLEEVE), "ATS_IB_PAPER_ACCOUNT_ID: expected a paper account id",
         env={"ATS_IB_PAPER_ACCOUNT_ID": "DU12x4567"}),
    Case("live-runner-paper-account", live(*SLEEVE, "--i-understand", "DU1234567"),
         "ATS_IB_LIVE_ACCOUNT_ID: expected a live account id: U followed by digits (a DU… id is a paper account)",
         env={"ATS_ENABLE_LIVE_TRADING": "true", "ATS_IB_LIVE_ACCOUNT_ID": "DU1234567"}, secret="1234567"),
    Case("paper-runner-account-with-newline", paper(*SLEEVE),
         "ATS_IB_PAPER_ACCOUNT_ID: expected a paper account id: DU followed by digits only (this one has whitespace",
         env={"ATS_IB_PAPER_ACCOUNT_ID": "DU1234567\n"}, secret="1234567"),
    Case("live-runner-account-with-newline", live(*SLEEVE, "--i-understand", "U1234567"),
         "ATS_IB_LIVE_ACCOUNT_ID: expected a live account id: U followed by digits only (this one has whitespace",
         env={"ATS_ENABLE_LIVE_TRADING": "true", "ATS_IB_LIVE_ACCOUNT_ID": "U1234567\n"}, secret="1234567"),
    Case("live-runner-garbage-account", live(*SLEEVE), "ATS_IB_LIVE_ACCOUNT_ID: expected a live account id",
         env={"ATS_ENABLE_LIVE_TRADING": "true", "ATS_IB_LIVE_ACCOUNT_ID": "u-1234567"}),
    # ATS_* values
    Case("env-port-out-of-range", paper(*SLEEVE), "ATS_IB_PAPER_PORT: expected a TCP port between 1 and 65535",
         env={"ATS_IB_PAPER_PORT": "70000"}),
    Case("env-port-not-a-number", paper(*SLEEVE), "ATS_IB_LIVE_PORT: Input should be a valid integer",
         env={"ATS_IB_LIVE_PORT": "four-thousand"}),
    Case("env-same-ports", paper(*SLEEVE), "ATS_IB_LIVE_PORT must differ from ATS_IB_PAPER_PORT",
         env={"ATS_IB_PAPER_PORT": "4002", "ATS_IB_LIVE_PORT": "4002"}),
    Case("env-negative-risk-cap", paper(*SLEEVE), "ATS_PAPER_RISK_MAX_NOTIONAL_PER_ORDER: expected a number greater than 0",
         env={"ATS_PAPER_RISK_MAX_NOTIONAL_PER_ORDER": "-5"}),
    Case("env-bad-submit-rate", live(*SLEEVE), "ATS_LIVE_RISK_MAX_ORDER_SUBMIT_RATE: expected a Nautilus rate N/HH:MM:SS",
         env={"ATS_LIVE_RISK_MAX_ORDER_SUBMIT_RATE": "2 per second"}),
    Case("env-zero-interval-submit-rate", live(*SLEEVE),
         "ATS_LIVE_RISK_MAX_ORDER_SUBMIT_RATE: expected a Nautilus rate N/HH:MM:SS with an interval above 00:00:00",
         env={"ATS_LIVE_RISK_MAX_ORDER_SUBMIT_RATE": "2/00:00:00"}),
    Case("env-zero-interval-submit-rate-paper", paper(*SLEEVE),
         "ATS_PAPER_RISK_MAX_ORDER_SUBMIT_RATE: expected a Nautilus rate N/HH:MM:SS with an interval above 00:00:00",
         env={"ATS_PAPER_RISK_MAX_ORDER_SUBMIT_RATE": "100/00:00:00"}),
    Case("env-operator-too-long", ats("kill", "--mode", "paper"),
         "ATS_OPERATOR: expected at most 200 characters (the audit log's actor), got 201",
         env={"ATS_OPERATOR": "o" * 201}),
    Case("env-database-url-without-driver", ats("kill", "--mode", "paper"),
         "ATS_DATABASE_URL: the psycopg2 driver (the default of postgresql://) is not installed: "
         "write postgresql+psycopg://…", env={"ATS_DATABASE_URL": "postgresql://ats:hunter2@127.0.0.1:1/ats"},
         secret="hunter2"),
    Case("env-bad-edition-flag", live(*SLEEVE), "ATS_ENABLE_LIVE_TRADING: Input should be a valid boolean",
         env={"ATS_ENABLE_LIVE_TRADING": "maybe"}),
    Case("env-unknown-variable", paper(*SLEEVE), "ATS_PAPER_MAX_NOTIONAL: unknown ats variable; did you mean",
         env={"ATS_PAPER_MAX_NOTIONAL": "1000"}),
    Case("env-bad-database-url", paper(*SLEEVE), "ATS_DATABASE_URL: expected an SQLAlchemy URL",
         env={"ATS_DATABASE_URL": "mysql://db/ats"}),
    Case("env-bad-redis-url", paper(*SLEEVE), "ATS_REDIS_URL: expected a Redis URL",
         env={"ATS_REDIS_URL": "localhost-redis"}),
    Case("env-bad-redis-url-with-password", paper(*SLEEVE), "ATS_REDIS_URL: expected a Redis URL",
         env={"ATS_REDIS_URL": "redis://:hunter2@127.0.0.1:99999/0"}, secret="hunter2"),
    Case("env-bad-gateway-controller", paper(*SLEEVE), "ATS_GATEWAY_CONTROLLER: Input should be",
         env={"ATS_GATEWAY_CONTROLLER": "k8s"}),
    Case("env-bad-node-id", paper(*SLEEVE), "ATS_NODE_ID: expected 1 to 16 letters or digits",
         env={"ATS_NODE_ID": "node 1"}),
    Case("env-bad-timezone", paper(*SLEEVE), "ATS_HEALTH_RESTART_TIMEZONE: unknown timezone 'Mars/Olympus'",
         env={"ATS_HEALTH_RESTART_TIMEZONE": "Mars/Olympus"}),
    Case("env-bad-restart-time", ats("gateway", "status"), "ATS_HEALTH_DAILY_RESTART_TIME: Input should be in a valid time format",
         env={"ATS_HEALTH_DAILY_RESTART_TIME": "25:00"}),
    Case("env-bad-drawdown", ats("ladder", "run", *SLEEVE), "ATS_LADDER_MAX_DRAWDOWN: expected a fraction",
         env={"ATS_LADDER_MAX_DRAWDOWN": "35"}),
    Case("env-bad-value-blocks-kill", ats("kill", "--mode", "paper"), "ATS_IB_PAPER_PORT: Input should be a valid integer",
         env={"ATS_IB_PAPER_PORT": "x"}),
    Case("env-bad-value-in-dotenv", paper(*SLEEVE), "ATS_PAPER_RISK_MAX_NOTIONAL_PER_ORDER: expected a number greater than 0",
         files={".env": "ATS_PAPER_RISK_MAX_NOTIONAL_PER_ORDER=0\n"}),
    # ats ladder run
    Case("ladder-params-malformed", ats("ladder", "run", *SLEEVE, "--params", '{"buy_threshold":'),
         "params are not valid JSON"),
    Case("ladder-params-unknown-key", ats("ladder", "run", *SLEEVE, "--params", '{"bogus": 1}'),
         "unknown parameter 'bogus' for ibs_reversion"),
    Case("ladder-unknown-strategy", ats("ladder", "run", "--strategy", "nope", "--instrument", "QQQ.NASDAQ"),
         "unknown strategy 'nope'"),
    Case("ladder-bad-instrument", ats("ladder", "run", "--strategy", "ibs_reversion", "--instrument", "QQQ"),
         "instrument id 'QQQ' is malformed"),
    # ats data import
    Case("csv-not-a-number", ats("data", "import", "--csv", "{dir}/bars.csv", "--instrument", "QQQ.NASDAQ"),
         "line 3: high 'zz' is not a number",
         files={"bars.csv": CSV_HEADER + "2024-01-02,1,2,0.5,1.5,100\n2024-01-03,1,zz,0.5,1.5,100\n"}),
    Case("csv-missing-columns", ats("data", "import", "--csv", "{dir}/bars.csv", "--instrument", "QQQ.NASDAQ"),
         "line 1: missing column 'date'", files={"bars.csv": "when,o\n2024-01-02,1\n"}),
    Case("csv-high-below-low", ats("data", "import", "--csv", "{dir}/bars.csv", "--instrument", "QQQ.NASDAQ"),
         "line 2: high 0.5 is below low 0.7", files={"bars.csv": CSV_HEADER + "2024-01-02,1,0.5,0.7,0.6,100\n"}),
    Case("csv-volume-too-large", ats("data", "import", "--csv", "{dir}/bars.csv", "--instrument", "QQQ.NASDAQ"),
         "line 3: volume 1e30 is larger than a bar can hold (at most 34028236692093)",
         files={"bars.csv": CSV_HEADER + "2024-01-02,1,2,0.5,1.5,100\n2024-01-03,1,2,0.5,1.5,1e30\n"}),
    Case("csv-price-too-large", ats("data", "import", "--csv", "{dir}/bars.csv", "--instrument", "QQQ.NASDAQ"),
         "line 2: high 1e20 is larger than a price can be (at most 17014118346046)",
         files={"bars.csv": CSV_HEADER + "2024-01-02,1,1e20,0.5,1.5,100\n"}),
    Case("csv-missing-file", ats("data", "import", "--csv", "{dir}/nope.csv", "--instrument", "QQQ.NASDAQ"),
         "nope.csv: not found: give the path of a CSV file"),
    Case("csv-bad-instrument", ats("data", "import", "--csv", "{dir}/bars.csv", "--instrument", "QQQ"),
         "instrument id 'QQQ' is malformed", files={"bars.csv": CSV_HEADER + "2024-01-02,1,2,0.5,1.5,100\n"}),
    # ats approve-live
    Case("approve-unknown-strategy", ats("approve-live", "--strategy", "nope", "--instrument", "QQQ.NASDAQ", "--note", "ok"),
         "unknown strategy 'nope'"),
    Case("approve-bad-instrument", ats("approve-live", "--strategy", "ibs_reversion", "--instrument", "QQQ", "--note", "ok"),
         "instrument id 'QQQ' is malformed"),
    Case("approve-instrument-too-long", ats("approve-live", "--strategy", "ibs_reversion", "--instrument",
                                            "Q" * 94 + ".NASDAQ", "--note", "ok"),
         "instrument id 'QQQQQQQQQQQQQQQQQQQQ'… is longer than 100 characters"),
    Case("approve-empty-note", ats("approve-live", *SLEEVE, "--note", "  "),
         "--note is empty: say why this sleeve may trade real money"),
    # ats kill
    Case("kill-no-target", ats("kill"), "give exactly one of --session ID, --mode paper|live, --all"),
    Case("kill-two-targets", ats("kill", "--mode", "paper", "--all"), "give exactly one of --session ID, --mode paper|live, --all"),
    Case("kill-bad-mode", ats("kill", "--mode", "demo"), "--mode 'demo': expected paper or live"),
    Case("kill-empty-reason", ats("kill", "--mode", "paper", "--reason", ""), "--reason is empty"),
    Case("kill-unknown-session", ats("kill", "--session", "no-such-session"), "no session 'no-such-session'"),
    Case("kill-clear-without-mode", ats("kill", "--clear", "--reason", "fixed"), "--clear needs exactly --mode paper|live"),
    Case("kill-clear-without-reason", ats("kill", "--clear", "--mode", "paper"),
         "--clear needs --reason: say why it is safe to trade again"),
    Case("kill-clear-nothing-latched", ats("kill", "--clear", "--mode", "live", "--reason", "fixed"),
         "the live kill switch is not latched: nothing to clear"),
]

USAGE_ERRORS = [
    Case("kill-unknown-flag", ats("kill", "--force"), "No such option: --force"),
    Case("approve-missing-note", ats("approve-live", *SLEEVE), "Missing option '--note'"),
    Case("paper-unknown-flag", paper(*SLEEVE, "--paramz", "{}"), "No such option: --paramz"),
]

@dataclass(frozen=True)
class Ran:
    data_dir: Path
    returncode: int | None  # None: timed out (killed)
    stdout: str
    stderr: str


def _run(case: Case, root: Path) -> Ran:
    root.mkdir(parents=True)
    for name, content in case.files.items():
        if isinstance(content, bytes):
            (root / name).write_bytes(content)
        else:
            (root / name).write_text(content, encoding="utf-8")
    data_dir = root / "ats-data"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ATS_")}
    # Safety net only (see the module docstring); a case's own env wins.
    env.update({"ATS_GATEWAY_CONTROLLER": "docker", "ATS_IB_PAPER_PORT": str(refused_port()),
                "ATS_IB_LIVE_PORT": str(refused_port()), "ATS_DATA_DIR": str(data_dir), "COLUMNS": "200"})
    env.update(case.env)
    argv = [part.replace("{dir}", str(root)) for part in case.argv]
    try:
        done = subprocess.run([sys.executable, "-m", *argv], env=env, cwd=root, capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        return Ran(data_dir, None, str(exc.stdout or ""), str(exc.stderr or ""))
    return Ran(data_dir, done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ran]:
    base = tmp_path_factory.mktemp("bad-input")
    cases = CASES + USAGE_ERRORS
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {case.id: pool.submit(_run, case, base / case.id) for case in cases}
        return {case_id: future.result() for case_id, future in futures.items()}


def _nothing_written(data_dir: Path) -> None:
    from ats.research.catalog import list_catalog

    database = data_dir / "ats.sqlite3"
    if database.exists():
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table in ("audit_log", "sessions", "kill_switch", "approvals"):
                if table in tables:
                    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table  # noqa: S608
    if data_dir.exists():
        assert list_catalog(data_dir) == []


def _check(case: Case, result: Ran) -> None:
    assert result.returncode is not None, f"still running after {TIMEOUT_S} s (not refused): {result.stderr[-500:]}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and case.message in lines[0], lines[0]
    assert result.returncode == case.code, result.stderr
    if case.secret:
        assert case.secret not in result.stdout + result.stderr
    _nothing_written(result.data_dir)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_with_one_line_and_nothing_written(case: Case, ran: dict[str, Ran]) -> None:
    _check(case, ran[case.id])


@pytest.mark.parametrize("case", USAGE_ERRORS,
                         ids=[c.id for c in USAGE_ERRORS])
def test_usage_errors_are_refused_with_one_line(case: Case, ran: dict[str, Ran]) -> None:
    _check(case, ran[case.id])


def test_kill_clear_without_reason_leaves_the_switch_latched(tmp_path: Path) -> None:
    # Arrange: a latched paper kill switch (through the real CLI).
    from ats.governance import audit, killswitch
    from ats.store import open_store
    from support import run_ats

    env = {"ATS_DATA_DIR": str(tmp_path / "ats-data")}
    assert run_ats("kill", "--mode", "paper", "--reason", "drill", env=env).returncode == 0

    # Act
    cleared = run_ats("kill", "--clear", "--mode", "paper", env=env)

    # Assert: refused with one line; still latched; nothing audited but the latch.
    assert cleared.returncode == 2
    assert cleared.stderr.strip().splitlines() == ["error: --clear needs --reason: say why it is safe to trade again"]
    store = open_store(f"sqlite:///{tmp_path / 'ats-data' / 'ats.sqlite3'}")
    assert killswitch.latched("paper", store=store) is not None
    assert [row.action for row in audit.list_rows(store=store)] == ["kill.latch"]

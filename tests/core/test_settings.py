"""Settings: defaults, validation (one line naming the variable), config show masking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from ats.core.errors import ConfigError
from ats.core.settings import known_env_names, load_settings, mask_account
from support import run_ats


def test_defaults_match_the_design_table() -> None:
    settings = load_settings({})

    assert settings.enable_live_trading is False
    assert (settings.ib.host, settings.ib.paper_port, settings.ib.live_port) == ("127.0.0.1", 4002, 4001)
    assert settings.paper_risk.max_notional_per_order == 25_000
    assert settings.live_risk.max_notional_per_order == 5_000
    assert settings.paper_risk.max_order_submit_rate == "100/00:00:01"
    assert settings.live_risk.max_order_submit_rate == "2/00:00:01"
    assert settings.gateway.controller == "sim"
    assert settings.data_dir == Path(".ats")
    assert "@" in settings.operator
    assert settings.resolved_database_url.endswith(".ats/ats.sqlite3")


def test_each_variable_is_a_field_of_its_section() -> None:
    settings = load_settings({"ATS_IB_PAPER_PORT": "4102", "ATS_PAPER_RISK_MAX_NOTIONAL_PER_ORDER": "7",
                              "ATS_GATEWAY_START_TIMEOUT_SECONDS": "9", "ATS_SESSION_STARTUP_TIMEOUT_SECONDS": "8",
                              "ATS_AUDIT_KEY_FILE": "/keys/audit.key", "ATS_LADDER_PARITY_MIN": "0.5",
                              "ATS_HEALTH_WEEKLY_RESTART_DAY": "Saturday", "ATS_HEALTH_DAILY_RESTART_TIME": ""})

    assert (settings.ib.paper_port, settings.ib.live_port) == (4102, 4001)
    assert (settings.paper_risk.max_notional_per_order, settings.paper_risk.max_order_submit_rate) == (7, "100/00:00:01")
    assert (settings.live_risk.max_notional_per_order, settings.live_risk.max_order_submit_rate) == (5_000, "2/00:00:01")
    assert (settings.gateway.start_timeout_seconds, settings.session.startup_timeout_seconds) == (9, 8)
    assert settings.audit.resolved_anchor_file == Path("/keys/audit.anchor.json")
    assert (settings.ladder.parity_min, settings.ladder.min_trades) == (0.5, 20)
    assert (settings.health.weekly_restart_day, settings.health.daily_restart_time) == ("sat", None)
    assert settings.mode("paper").port == 4102


def test_config_show_lists_every_variable_once() -> None:
    names = known_env_names()

    assert list(load_settings({}).display()) == names
    assert len(set(names)) == len(names) == 38


def test_with_account_changes_only_that_modes_account() -> None:
    settings = load_settings({"ATS_IB_LIVE_ACCOUNT_ID": "U7654321"})

    paper = settings.with_account("paper", "DU1234567")

    assert (paper.ib.paper_account_id, paper.ib.live_account_id) == ("DU1234567", "U7654321")
    assert settings.ib.paper_account_id is None
    assert paper.mode("paper").account_id == "DU1234567"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ATS_IB_PAPER_PORT": "99999"}, "ATS_IB_PAPER_PORT: expected a TCP port between 1 and 65535"),
        ({"ATS_IB_LIVE_PORT": "0"}, "ATS_IB_LIVE_PORT: expected a TCP port between 1 and 65535"),
        ({"ATS_IB_LIVE_PORT": "4002"}, "ATS_IB_LIVE_PORT must differ from ATS_IB_PAPER_PORT"),
        ({"ATS_IB_LIVE_ACCOUNT_ID": "DU1234567"}, "ATS_IB_LIVE_ACCOUNT_ID: expected a live account id: U followed by digits"),
        ({"ATS_IB_PAPER_ACCOUNT_ID": "U1234567"}, "ATS_IB_PAPER_ACCOUNT_ID: expected a paper account id: DU followed by digits"),
        ({"ATS_LIVE_RISK_MAX_ORDER_SUBMIT_RATE": "2 per second"}, "ATS_LIVE_RISK_MAX_ORDER_SUBMIT_RATE: expected a Nautilus rate N/HH:MM:SS"),
        ({"ATS_PAPER_RISK_MAX_ORDER_SUBMIT_RATE": "0/00:00:01"}, "ATS_PAPER_RISK_MAX_ORDER_SUBMIT_RATE: expected a Nautilus rate"),
        ({"ATS_LIVE_RISK_MAX_NOTIONAL_PER_ORDER": "0"}, "ATS_LIVE_RISK_MAX_NOTIONAL_PER_ORDER: expected a number greater than 0"),
        ({"ATS_PAPER_RISK_MAX_NOTIONAL_PER_ORDER": "-5"}, "ATS_PAPER_RISK_MAX_NOTIONAL_PER_ORDER: expected a number greater than 0"),
        ({"ATS_ENABLE_LIVE_TRADING": "maybe"}, "ATS_ENABLE_LIVE_TRADING: Input should be a valid boolean"),
        ({"ATS_IB_HOST": "h" * 81}, "ATS_IB_HOST: String should have at most 80 characters"),
        ({"ATS_SESSION_STARTUP_TIMEOUT_SECONDS": "0"}, "ATS_SESSION_STARTUP_TIMEOUT_SECONDS: Input should be greater than 0"),
        # Infinity or NaN passed once and overflowed later (a socket timeout, a timedelta):
        ({"ATS_HEALTH_PROBE_TIMEOUT_SECONDS": "inf"}, "ATS_HEALTH_PROBE_TIMEOUT_SECONDS: Input should be a finite number"),
        ({"ATS_HEALTH_DAILY_RESTART_TOLERANCE_MINUTES": "inf"},
         "ATS_HEALTH_DAILY_RESTART_TOLERANCE_MINUTES: Input should be a finite number"),
        ({"ATS_HEALTH_INTERVAL_SECONDS": "nan"}, "ATS_HEALTH_INTERVAL_SECONDS: Input should be a finite number"),
        ({"ATS_GATEWAY_START_TIMEOUT_SECONDS": "inf"}, "ATS_GATEWAY_START_TIMEOUT_SECONDS: Input should be a finite number"),
        ({"ATS_GATEWAY_START_TIMEOUT_SECONDS": "1e9"}, "ATS_GATEWAY_START_TIMEOUT_SECONDS: Input should be less than or equal to 3600"),
        ({"ATS_HEALTH_REMINDER_MINUTES": "1e300"}, "ATS_HEALTH_REMINDER_MINUTES: Input should be less than or equal to 10080"),
        ({"ATS_HEALTH_HISTORY_DAYS": "99999999999"}, "ATS_HEALTH_HISTORY_DAYS: Input should be less than or equal to 3660"),
        ({"ATS_HEALTH_PROBE_CLIENT_ID": "2147483648"}, "ATS_HEALTH_PROBE_CLIENT_ID: Input should be less than or equal to 2147483647"),
        ({"ATS_GATEWAY_CONTROLLER": "kubernetes"}, "ATS_GATEWAY_CONTROLLER: Input should be 'sim', 'docker' or 'external'"),
        ({"ATS_DATABASE_URL": "mysql://x"}, "ATS_DATABASE_URL: expected an SQLAlchemy URL"),
        ({"ATS_LIVE_RISK_MAX_NOTIONAL": "5"}, "ATS_LIVE_RISK_MAX_NOTIONAL: unknown ats variable; did you mean ATS_LIVE_RISK_MAX_NOTIONAL_PER_ORDER?"),
        # Accepted once, failing only when the node is built (Nautilus' throttler refuses them):
        ({"ATS_LIVE_RISK_MAX_ORDER_SUBMIT_RATE": "2/00:00:00"},
         "ATS_LIVE_RISK_MAX_ORDER_SUBMIT_RATE: expected a Nautilus rate N/HH:MM:SS with an interval above 00:00:00"),
        ({"ATS_PAPER_RISK_MAX_ORDER_SUBMIT_RATE": "3000000000/00:00:01"},
         "ATS_PAPER_RISK_MAX_ORDER_SUBMIT_RATE: expected a Nautilus rate N/HH:MM:SS with N at most 2147483647"),
        ({"ATS_LIVE_RISK_MAX_ORDER_SUBMIT_RATE": "2/00:00:01\n"}, "ATS_LIVE_RISK_MAX_ORDER_SUBMIT_RATE: expected a Nautilus rate"),
        ({"ATS_LIVE_RISK_MAX_ORDER_SUBMIT_RATE": "\u0662/00:00:01"}, "ATS_LIVE_RISK_MAX_ORDER_SUBMIT_RATE: expected a Nautilus rate"),
        # Account ids with a stray newline, space or control character (a pasted value):
        ({"ATS_IB_LIVE_ACCOUNT_ID": "U1234567\n"},
         "ATS_IB_LIVE_ACCOUNT_ID: expected a live account id: U followed by digits only (this one has whitespace or a control character"),
        ({"ATS_IB_LIVE_ACCOUNT_ID": " U1234567"}, "ATS_IB_LIVE_ACCOUNT_ID: expected a live account id: U followed by digits only"),
        ({"ATS_IB_PAPER_ACCOUNT_ID": "DU1234567\r\n"},
         "ATS_IB_PAPER_ACCOUNT_ID: expected a paper account id: DU followed by digits only (this one has whitespace"),
        ({"ATS_IB_PAPER_ACCOUNT_ID": "DU1234567\t"}, "ATS_IB_PAPER_ACCOUNT_ID: expected a paper account id: DU followed by digits only (this one"),
        ({"ATS_IB_LIVE_ACCOUNT_ID": "U\u0661\u0662\u0663\u0664\u0665"}, "ATS_IB_LIVE_ACCOUNT_ID: expected a live account id"),
        # The audit log's actor column holds 200 characters (PostgreSQL enforces it):
        ({"ATS_OPERATOR": "a" * 201}, "ATS_OPERATOR: expected at most 200 characters (the audit log's actor), got 201"),
        ({"ATS_OPERATOR": "  "}, "ATS_OPERATOR: expected who is acting, e.g. alice@desk (got an empty name)"),
        ({"ATS_OPERATOR": ""}, "ATS_OPERATOR: expected who is acting, e.g. alice@desk (got an empty name)"),
        ({"ATS_OPERATOR": "alice\nbob"}, "ATS_OPERATOR: expected who is acting, without control characters"),
        # A URL SQLAlchemy would give a driver that is not installed (psycopg2 for postgresql://):
        ({"ATS_DATABASE_URL": "postgresql://ats:pa55@127.0.0.1/ats"},
         "ATS_DATABASE_URL: the psycopg2 driver (the default of postgresql://) is not installed: "
         "write postgresql+psycopg://… (psycopg 3 ships with ats)"),
        ({"ATS_DATABASE_URL": "postgresql+nosuchdriver://127.0.0.1/ats"},
         "ATS_DATABASE_URL: unknown database driver 'nosuchdriver' for postgresql: write postgresql+psycopg://…"),
    ],
)
def test_bad_value_is_refused_naming_the_variable(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(env)

    assert str(excinfo.value).startswith(expected)
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize(("below", "says"), [("", "a file"), ("sub", "under a file ({afile})")])
def test_a_data_dir_that_is_or_is_under_a_file_is_refused(tmp_path: Path, below: str, says: str) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    data_dir = afile / below

    with pytest.raises(ConfigError) as excinfo:
        load_settings({"ATS_DATA_DIR": str(data_dir)})

    assert str(excinfo.value) == (f"ATS_DATA_DIR: expected a directory (created if missing), not "
                                  f"{says.format(afile=afile)} (got {str(data_dir)!r})")


@pytest.mark.parametrize(("env", "line"), [
    ({"ATS_OPERATOR": ""}, "ATS_OPERATOR: expected who is acting, e.g. alice@desk (got an empty name)"),
    ({"ATS_HEALTH_WEEKLY_RESTART_DAY": "funday"},
     "ATS_HEALTH_WEEKLY_RESTART_DAY: Input should be 'mon', 'tue', 'wed', 'thu', 'fri', 'sat' or 'sun' (got 'funday')"),
])
def test_a_refusal_says_what_it_got_once_as_given(env: dict[str, str], line: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(env)

    assert str(excinfo.value) == line


def test_a_weekly_restart_day_may_be_written_in_full() -> None:
    assert load_settings({"ATS_HEALTH_WEEKLY_RESTART_DAY": "Saturday"}).health.weekly_restart_day == "sat"


def test_operator_of_200_characters_is_accepted() -> None:
    assert load_settings({"ATS_OPERATOR": "a" * 200}).operator == "a" * 200


def test_a_long_bad_value_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings({"ATS_OPERATOR": "x" * 5000})

    assert "xxxxxxxxxx" not in str(excinfo.value)


def test_postgresql_with_psycopg_is_accepted() -> None:
    url = "postgresql+psycopg://ats@127.0.0.1:5432/ats"

    assert load_settings({"ATS_DATABASE_URL": url}).resolved_database_url == url


@hyp_settings(max_examples=60, deadline=None)
@given(limit=st.integers(1, 2**31 - 1), hours=st.integers(0, 99), minutes=st.integers(0, 59),
       seconds=st.integers(0, 59))
def test_every_submit_rate_the_settings_accept_builds_the_nautilus_risk_engine(
        limit: int, hours: int, minutes: int, seconds: int) -> None:
    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.config import LoggingConfig, RiskEngineConfig

    rate = f"{limit}/{hours:02d}:{minutes:02d}:{seconds:02d}"
    interval = hours * 3600 + minutes * 60 + seconds
    try:
        accepted = load_settings({"ATS_LIVE_RISK_MAX_ORDER_SUBMIT_RATE": rate}).live_risk.max_order_submit_rate
    except ConfigError:
        assert interval == 0, f"{rate} refused"
        return

    engine = BacktestEngine(BacktestEngineConfig(risk_engine=RiskEngineConfig(max_order_submit_rate=accepted),
                                                 logging=LoggingConfig(log_level="ERROR", bypass_logging=True)))
    try:
        built_limit, built_interval = engine.kernel.risk_engine.max_order_submit_rate()
    finally:
        engine.dispose()
    assert (built_limit, built_interval.total_seconds()) == (limit, interval)


def test_account_id_never_appears_in_a_refusal() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings({"ATS_IB_LIVE_ACCOUNT_ID": "DU9876543"})

    assert "9876543" not in str(excinfo.value)


def test_dotenv_values_are_read_and_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / "x.env"
    dotenv.write_text("ATS_IB_PAPER_PORT=4102\nATS_IB_LIVE_PORT=4101\n# comment\n")

    settings = load_settings({"ATS_IB_LIVE_PORT": "4201"}, dotenv)

    assert (settings.ib.paper_port, settings.ib.live_port) == (4102, 4201)


def test_unknown_variable_in_dotenv_is_refused(tmp_path: Path) -> None:
    dotenv = tmp_path / "x.env"
    dotenv.write_text("ATS_ENABLE_LIVE_TRADIN=true\n")

    with pytest.raises(ConfigError, match="ATS_ENABLE_LIVE_TRADIN: unknown ats variable; did you mean ATS_ENABLE_LIVE_TRADING"):
        load_settings({}, dotenv)


def test_a_dotenv_that_is_not_utf8_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes("ATS_OPERATOR=alice\nNOTE=café\n".encode("latin-1"))

    result = run_ats("config", "show", cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / '.env'}: line 2 is not UTF-8 text (invalid continuation byte): save the .env file as UTF-8"]


@pytest.mark.parametrize(("account", "masked"), [("U1234567", "U***4567"), ("DU7654321", "DU***4321"), (None, "(not set)")])
def test_mask_account(account: str | None, masked: str) -> None:
    assert mask_account(account) == masked


def test_config_show_masks_accounts_and_hides_secrets() -> None:
    env = {
        "ATS_IB_LIVE_ACCOUNT_ID": "U1234567",
        "ATS_IB_PAPER_ACCOUNT_ID": "DU7654321",
        "ATS_ALERT_URLS": "json://127.0.0.1:9/secret-token",
        "ATS_REDIS_URL": "redis://:hunter2@127.0.0.1:6379/0",
        "ATS_DATABASE_URL": "postgresql+psycopg://ats:pa55word@db.example/ats",
    }

    result = run_ats("config", "show", "--json", env=env)

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["ATS_IB_LIVE_ACCOUNT_ID"] == "U***4567"
    assert shown["ATS_IB_PAPER_ACCOUNT_ID"] == "DU***4321"
    assert shown["ATS_ALERT_URLS"] == "(hidden)"
    assert shown["ATS_REDIS_URL"] == "(hidden)"
    assert shown["ATS_DATABASE_URL"] == "postgresql+psycopg://ats:***@db.example/ats"
    for secret in ("1234567", "7654321", "secret-token", "hunter2", "pa55word"):
        assert secret not in result.stdout


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql+psycopg://bob@127.0.0.1:1/x?password=s3cretpw&sslmode=require",
     "postgresql+psycopg://bob@127.0.0.1:1/x?password=***&sslmode=require"),
    ("postgresql+psycopg://:s3cretpw@127.0.0.1:1/x", "postgresql+psycopg://:***@127.0.0.1:1/x"),
    ("postgresql+psycopg://bob:SEC@s3cretpw@127.0.0.1:1/x", "postgresql+psycopg://bob:***@127.0.0.1:1/x"),
])
def test_a_database_password_in_any_url_form_is_never_shown(url: str, shown: str) -> None:
    # Act: the settings as shown, and the one line of a store that cannot be opened.
    config = run_ats("config", "show", "--json", env={"ATS_DATABASE_URL": url})
    opened = run_ats("approvals", env={"ATS_DATABASE_URL": url})

    # Assert
    assert config.returncode == 0, config.stderr
    assert json.loads(config.stdout)["ATS_DATABASE_URL"] == shown
    assert opened.returncode != 0 and f"cannot open the store at {shown}:" in opened.stderr
    assert "s3cretpw" not in config.stdout + config.stderr + opened.stdout + opened.stderr


def test_the_anchor_file_beside_the_data_holds_no_database_password(isolated_env: Path) -> None:
    # Arrange: a SQLite store whose URL carries a password parameter (kept by the driver's URL).
    url = f"sqlite:///{isolated_env}/q.db?password=SECRETPW"

    # Act
    approved = run_ats("approve-live", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", "--note", "ok",
                       env={"ATS_DATABASE_URL": url})

    # Assert
    assert approved.returncode == 0, approved.stderr
    anchor_file = isolated_env.parent / "ats-config" / "audit.anchor.json"
    [entry] = json.loads(anchor_file.read_text())["stores"].values()
    assert entry["store"] == f"sqlite:///{isolated_env}/q.db?password=***"
    assert "SECRETPW" not in anchor_file.read_text()


def test_cli_bad_setting_exits_non_zero_with_one_line() -> None:
    result = run_ats("config", "show", env={"ATS_IB_PAPER_PORT": "70000"})

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: ATS_IB_PAPER_PORT: expected a TCP port between 1 and 65535 (got '70000')"
    ]

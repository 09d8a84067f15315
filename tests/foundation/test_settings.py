"""Settings: defaults, validation (one line naming the variable), config show masking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ats.errors import ConfigError
from ats.settings import load_settings, mask_account
from support import run_ats


def test_defaults_match_the_design_table() -> None:
    settings = load_settings({})

    assert settings.enable_live_trading is False
    assert (settings.ib_host, settings.ib_paper_port, settings.ib_live_port) == ("127.0.0.1", 4002, 4001)
    assert settings.paper_risk_max_notional_per_order == 25_000
    assert settings.live_risk_max_notional_per_order == 5_000
    assert settings.paper_risk_max_order_submit_rate == "100/00:00:01"
    assert settings.live_risk_max_order_submit_rate == "2/00:00:01"
    assert settings.gateway_controller == "sim"
    assert settings.data_dir == Path(".ats")
    assert "@" in settings.operator
    assert settings.resolved_database_url.endswith(".ats/ats.sqlite3")


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
        ({"ATS_GATEWAY_CONTROLLER": "kubernetes"}, "ATS_GATEWAY_CONTROLLER: Input should be 'sim', 'docker' or 'external'"),
        ({"ATS_DATABASE_URL": "mysql://x"}, "ATS_DATABASE_URL: expected an SQLAlchemy URL"),
        ({"ATS_LIVE_RISK_MAX_NOTIONAL": "5"}, "ATS_LIVE_RISK_MAX_NOTIONAL: unknown ats variable; did you mean ATS_LIVE_RISK_MAX_NOTIONAL_PER_ORDER?"),
    ],
)
def test_bad_value_is_refused_naming_the_variable(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(env)

    assert str(excinfo.value).startswith(expected)
    assert "\n" not in str(excinfo.value)


def test_account_id_never_appears_in_a_refusal() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings({"ATS_IB_LIVE_ACCOUNT_ID": "DU9876543"})

    assert "9876543" not in str(excinfo.value)


def test_dotenv_values_are_read_and_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / "x.env"
    dotenv.write_text("ATS_IB_PAPER_PORT=4102\nATS_IB_LIVE_PORT=4101\n# comment\n")

    settings = load_settings({"ATS_IB_LIVE_PORT": "4201"}, dotenv)

    assert (settings.ib_paper_port, settings.ib_live_port) == (4102, 4201)


def test_unknown_variable_in_dotenv_is_refused(tmp_path: Path) -> None:
    dotenv = tmp_path / "x.env"
    dotenv.write_text("ATS_ENABLE_LIVE_TRADIN=true\n")

    with pytest.raises(ConfigError, match="ATS_ENABLE_LIVE_TRADIN: unknown ats variable; did you mean ATS_ENABLE_LIVE_TRADING"):
        load_settings({}, dotenv)


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


def test_cli_bad_setting_exits_non_zero_with_one_line() -> None:
    result = run_ats("config", "show", env={"ATS_IB_PAPER_PORT": "70000"})

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: ATS_IB_PAPER_PORT: expected a TCP port between 1 and 65535 (got '70000')"
    ]

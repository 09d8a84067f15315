"""``ats gateway probe|check|status`` (through typer's CliRunner on an app with our register()),
and the Prefect wiring: the task's function and the deployment spec."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from ats.ibsim import SimGateway
from support import free_port, run_ats


@pytest.fixture
def app() -> typer.Typer:
    from ats.cli import gateway

    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """test root"""

    gateway.register(root)
    return root


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimGateway]:
    from ats.core.settings import get_settings

    gateway = SimGateway(mode="paper", account="DU1234567", port=0).start()
    monkeypatch.setenv("ATS_IB_PAPER_PORT", str(gateway.port))
    monkeypatch.setenv("ATS_IB_PAPER_ACCOUNT_ID", "DU1234567")
    get_settings.cache_clear()
    yield gateway
    gateway.stop()


def _invoke(app: typer.Typer, *args: str):  # noqa: ANN202
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_probe_healthy_exits_0_with_masked_json(app, sim) -> None:
    result = _invoke(app, "gateway", "probe", "--mode", "paper", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["healthy"], data["reason"], data["accounts"], data["port"]) == (True, "ok", ["DU***4567"], sim.port)
    assert "DU1234567" not in result.output


def test_probe_refused_exits_1(app, monkeypatch) -> None:
    from ats.core.settings import get_settings

    monkeypatch.setenv("ATS_IB_LIVE_PORT", str(free_port()))
    get_settings.cache_clear()
    result = _invoke(app, "gateway", "probe", "--mode", "live")
    assert result.exit_code == 1
    assert "refused" in result.output


def test_probe_timeout_option(app, sim) -> None:
    sim.stall(True)
    result = _invoke(app, "gateway", "probe", "--mode", "paper", "--timeout", "0.2", "--json")
    assert result.exit_code == 1
    assert json.loads(result.output)["reason"] == "timeout"


@pytest.mark.parametrize("timeout", ["inf", "1e9"])
def test_probe_refuses_a_timeout_above_an_hour_with_one_line(timeout: str) -> None:
    result = run_ats("gateway", "probe", "--mode", "paper", "--timeout", timeout)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: Invalid value for '--timeout': Input should be less than or equal to 3600 (see --help)"
    ]


def test_check_then_status_show_state_and_history(app, sim) -> None:
    ok = _invoke(app, "gateway", "check", "--json")  # auto: paper, no swap recorded
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["state"]["state"] == "healthy"
    sim.outage(3600)
    for _ in range(2):
        down = _invoke(app, "gateway", "check", "--mode", "paper", "--json")
        assert down.exit_code == 1
    outcome = json.loads(down.output)
    assert (outcome["state"]["state"], outcome["state"]["consecutive_failures"]) == ("broken", 2)

    status = _invoke(app, "gateway", "status", "--json")
    assert status.exit_code == 0
    data = json.loads(status.output)
    assert data["paper"]["state"] == "broken" and data["live"]["state"] == "unknown"
    assert [p["healthy"] for p in data["paper"]["history"]] == [False, False, True]
    assert data["paper"]["history"][0]["reason"].startswith("refused: connection refused")

    table = _invoke(app, "gateway", "status")
    assert table.exit_code == 0 and "broken" in table.output and "last 3 probes" in table.output


def test_task_function_watches_until_its_end(sim, monkeypatch: pytest.MonkeyPatch) -> None:
    from ats.core.settings import get_settings
    from tasks.gateway import watch_gateway_health

    monkeypatch.setenv("ATS_HEALTH_INTERVAL_SECONDS", "0.1")
    get_settings.cache_clear()

    result = watch_gateway_health.fn("auto", watch_seconds=0.5)

    assert (result["ended"], result["alerts"], result["errors"]) == ("until reached", [], 0)
    assert result["probes"] >= 1
    from ats.gateway.health import gateway_status

    assert gateway_status()["paper"]["state"] == "healthy"


def test_the_deployment_is_one_watch_run_a_day_at_midnight_new_york() -> None:
    from flows.gateway_health import gateway_health, to_deployment

    deployment = to_deployment()

    schedule = deployment.schedules[0].schedule
    assert (deployment.name, gateway_health.name) == ("gateway-health", "gateway-health")
    assert (schedule.cron, schedule.timezone) == ("0 0 * * *", "America/New_York")
    assert deployment.parameters == {"mode": "auto"}
    # No Prefect concurrency limit: the day's runs overlap for two minutes; the store lease keeps
    # one of them probing.
    assert deployment.concurrency_limit is None

"""A paper rung earned on a simulator never admits a live session against a real gateway
(issue 17, finding 2); every session records the gateway it traded against.

The "real gateway" here is the simulator answering ``reqCurrentTime`` with this machine's clock,
as IB does (``wall_clock_time=True``): a real IB Gateway cannot run here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ats.governance import approvals, audit
from ats.governance.sessions import list_sessions
from ats.ibsim.versions import DEFAULT_VERSION as DEFAULT_SERVER_VERSION
from ats.research import ladder
from ats.store import open_store
from ats.strategies import get_strategy
from support import free_port, refused_port

pytestmark = pytest.mark.slow

LIVE_ACCOUNT = "U1234567"
SLEEVE = ["--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ"]


def _live(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ats.live", *SLEEVE, "--i-understand", LIVE_ACCOUNT, *args],
                          capture_output=True, text=True, env={**os.environ, **env, "COLUMNS": "200"}, timeout=180)


def _ready_for_live(evidence: str, trading_days: int) -> None:
    """A passing paper verdict (with its evidence) and an approval, through the audited APIs."""
    ladder.record_verdict("paper", "ibs_reversion", "QQQ.NASDAQ", passed=True, reasons=["test setup"],
                          metrics={"evidence": evidence, "trading_days": trading_days}, params={},
                          bar_spec="1-DAY-LAST", data_start=None, data_end=None,
                          fingerprint=get_strategy("ibs_reversion").fingerprint(), actor="test", store=open_store())
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "reviewed", "alice", store=open_store())


def _live_env(data_dir: Path, port: int) -> dict[str, str]:
    return {"ATS_DATA_DIR": str(data_dir), "ATS_ENABLE_LIVE_TRADING": "true", "ATS_IB_LIVE_ACCOUNT_ID": LIVE_ACCOUNT,
            "ATS_IB_LIVE_PORT": str(port), "ATS_IB_PAPER_PORT": str(refused_port()), "ATS_GATEWAY_CONTROLLER": "docker"}


@pytest.mark.parametrize("controller", ["docker", "sim"])
def test_live_against_a_real_gateway_refuses_a_rung_earned_on_a_simulator(sim_factory, isolated_env: Path,
                                                                           controller: str) -> None:
    # Arrange: the rung of a 75 s accelerated replay (238 "days"); a live gateway on the real clock
    # already up (with the sim controller too: the runner did not start this one, so it is not
    # taken for its own simulator)
    _ready_for_live("simulator", 238)
    live = sim_factory(mode="live", account=LIVE_ACCOUNT, clock="manual", wall_clock_time=True)

    # Act
    result = _live({**_live_env(isolated_env, live.port), "ATS_GATEWAY_CONTROLLER": controller}, "--for", "3s")

    # Assert: refused at the paper-rung gate, audited, no session, no node on the gateway
    assert result.returncode == 3, result.stderr
    [line] = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert line.startswith("error: [gate: paper-rung] ibs_reversion@QQQ.NASDAQ: the paper rung was earned on a "
                           "simulator (238 replayed days), and the live gateway is a real one")
    refusals = [r.payload_obj() for r in audit.list_rows(action="gate.refused", store=open_store())]
    assert [r["gate"] for r in refusals] == ["paper-rung"]
    assert audit.list_rows(action="confirmation.accepted", store=open_store()) == []  # refused before it
    assert list_sessions("live", store=open_store()) == []
    assert live.bar_subscriptions == 0


def test_live_against_a_real_gateway_runs_on_a_rung_earned_on_a_real_gateway(sim_factory, isolated_env: Path) -> None:
    # Arrange
    _ready_for_live("gateway", 12)
    live = sim_factory(mode="live", account=LIVE_ACCOUNT, clock="manual", wall_clock_time=True)

    # Act
    result = _live(_live_env(isolated_env, live.port), "--for", "2s", "--json")

    # Assert: it ran, and the session records the real-time gateway it traded against
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "stopped"
    [session] = list_sessions("live", store=open_store())
    assert session.gateway_info["kind"] == "gateway" and session.gateway_info["real_time"] is True
    assert session.gateway_info["server_version"] == DEFAULT_SERVER_VERSION and abs(session.gateway_info["clock_offset_s"]) < 5


def test_live_against_a_simulator_admits_a_rung_earned_on_a_simulator(sim_factory, isolated_env: Path) -> None:
    # Arrange: all simulated, as in the demo
    _ready_for_live("simulator", 238)
    live = sim_factory(mode="live", account=LIVE_ACCOUNT, clock="manual")

    # Act
    result = _live(_live_env(isolated_env, live.port), "--for", "2s")

    # Assert
    assert result.returncode == 0, result.stderr
    [session] = list_sessions("live", store=open_store())
    assert session.gateway_info["kind"] == "simulator" and session.gateway_info["real_time"] is False


def test_a_paper_session_on_the_embedded_simulator_records_it(isolated_env: Path) -> None:
    # Arrange: the sim controller (default): the runner starts the simulator itself
    env = {"ATS_DATA_DIR": str(isolated_env), "ATS_IB_PAPER_PORT": str(free_port())}

    # Act
    result = subprocess.run([sys.executable, "-m", "ats.paper", *SLEEVE, "--for", "2s", "--sim-speed", "0.5"],
                            capture_output=True, text=True, env={**os.environ, **env}, timeout=180)

    # Assert
    assert result.returncode == 0, result.stderr
    [session] = list_sessions("paper", store=open_store())
    assert session.gateway_info["kind"] == "simulator" and session.gateway_info["started_by_ats"] is True
    start = audit.list_rows(action="session.start", store=open_store())[0].payload_obj()
    assert start["gateway_info"]["kind"] == "simulator"

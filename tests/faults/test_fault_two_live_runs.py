"""Two go-live runs at once against the same live gateway: the second must be refused.

DESIGN.md gate 6: "one gateway at a time; one live session at a time".  Both runs pass every
other gate (edition flag, U… account, paper rung, approval, paper gateway down, typed
confirmation by ``--i-understand``); the first is trading when the second starts.  The store
holds at most one running session per mode (a partial unique index), so the second run is
refused before its node is built: it never connects to the gateway.
"""

from __future__ import annotations

import datetime as dt
import signal
from pathlib import Path

import pytest

from ats import approvals, audit, ladder
from ats.sessions import list_sessions
from ats.store import open_store
from ats.strategies import get_strategy
from fault_support import placed, start_runner, stop_process, wait_until
from support import free_port

pytestmark = pytest.mark.slow

LIVE_ACCOUNT = "U1234567"
SLEEVE = ["--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", "--i-understand", LIVE_ACCOUNT]


def _until(seconds: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat(timespec="seconds")


def _live_sessions(store) -> list:  # noqa: ANN001
    return list_sessions("live", store=store)


def _refusals(store) -> list[dict]:  # noqa: ANN001
    return [row.payload_obj() for row in audit.list_rows(action="gate.refused", store=store)]


def test_second_live_run_is_refused_while_one_is_running(sim_factory, isolated_env: Path) -> None:
    # Arrange: every gate satisfied, one live simulator.
    store = open_store()
    ladder.record_verdict("paper", "ibs_reversion", "QQQ.NASDAQ", passed=True, reasons=["fault test setup"],
                          metrics={}, params={}, data_start=None, data_end=None,
                          fingerprint=get_strategy("ibs_reversion").fingerprint(), actor="test", store=store)
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "fault test", "alice", store=store)
    live = sim_factory(mode="live", account=LIVE_ACCOUNT, clock="manual")
    env = {"ATS_DATA_DIR": str(isolated_env), "ATS_ENABLE_LIVE_TRADING": "true",
           "ATS_IB_LIVE_ACCOUNT_ID": LIVE_ACCOUNT, "ATS_IB_LIVE_PORT": str(live.port),
           "ATS_IB_PAPER_PORT": str(free_port()), "ATS_GATEWAY_CONTROLLER": "docker"}
    first = start_runner("ats.live", [*SLEEVE, "--until", _until(60)], env)
    second = None
    try:
        wait_until(lambda: [s.status for s in _live_sessions(store)] == ["running"] and live.bar_subscriptions >= 1,
                   what="the first live session trading")

        # Act
        second = start_runner("ats.live", [*SLEEVE, "--until", _until(15)], env)
        _, second_err = second.communicate(timeout=60)
        first_still_running = first.poll() is None
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGINT)
        stop_process(second)
        first_out, first_err = first.communicate(timeout=60)
        stop_process(first)

    # Assert: refused at a gate, with one line, before a second session existed.
    assert second.returncode == 3, second_err
    [first_session] = _live_sessions(store)
    assert second_err.strip().splitlines() == [
        f"error: [gate: one-session] another live session is running: {first_session.id} "
        f"(pid {first.pid} on {first_session.host}, since {first_session.started_at}) — "
        "stop it first (ats kill --mode live --reason …), one IB session at a time"]
    assert [r["gate"] for r in _refusals(store)] == ["one-session"]
    assert live.api_connections == 1  # the second run never connected to the gateway
    assert first_still_running, first_out + first_err
    assert placed(live) == []

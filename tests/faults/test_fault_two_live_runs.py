"""Two go-live runs at once against the same live gateway: the second must be refused.

DESIGN.md gate 6: "one gateway at a time; one live session at a time".  Both runs pass every
other gate (edition flag, U… account, paper rung, approval, paper gateway down, typed
confirmation by ``--i-understand``); the first is trading when the second starts.  The store
holds at most one running session per mode (a partial unique index), so the second run is
refused before its node is built: it never connects to the gateway.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from pathlib import Path

import pytest
from fault_support import placed, start_runner, wait_until

from ats.governance import approvals, audit
from ats.governance.sessions import list_sessions
from ats.research import ladder
from ats.store import open_store
from ats.strategies import get_strategy
from support import reap, refused_port

pytestmark = pytest.mark.slow

LIVE_ACCOUNT = "U1234567"
SLEEVE = ["--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", "--i-understand", LIVE_ACCOUNT]


def _live_sessions(store) -> list:  # noqa: ANN001
    return list_sessions("live", store=store)


def _refusals(store) -> list[dict]:  # noqa: ANN001
    return [row.payload_obj() for row in audit.list_rows(action="gate.refused", store=store)]


def _ready_for_live(data_dir: Path):  # noqa: ANN202
    """The store under ``data_dir`` with the paper rung passed and the sleeve approved."""
    store = open_store(f"sqlite:///{(data_dir / 'ats.sqlite3').resolve()}")
    ladder.record_verdict("paper", "ibs_reversion", "QQQ.NASDAQ", passed=True, reasons=["fault test setup"],
                          metrics={}, params={}, data_start=None, data_end=None,
                          fingerprint=get_strategy("ibs_reversion").fingerprint(), actor="test", store=store)
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "fault test", "alice", store=store)
    return store


def _live_env(data_dir: Path, live_port: int) -> dict[str, str]:
    return {"ATS_DATA_DIR": str(data_dir), "ATS_ENABLE_LIVE_TRADING": "true",
            "ATS_IB_LIVE_ACCOUNT_ID": LIVE_ACCOUNT, "ATS_IB_LIVE_PORT": str(live_port),
            "ATS_IB_PAPER_PORT": str(refused_port()), "ATS_GATEWAY_CONTROLLER": "docker"}


def test_second_live_run_is_refused_while_one_is_running(sim_factory, isolated_env: Path) -> None:
    # Arrange: every gate satisfied, one live simulator.
    store = _ready_for_live(isolated_env)
    live = sim_factory(mode="live", account=LIVE_ACCOUNT, clock="manual")
    env = _live_env(isolated_env, live.port)
    first = start_runner("ats.live", [*SLEEVE, "--for", "10m"], env)
    second = None
    try:
        wait_until(lambda: [s.status for s in _live_sessions(store)] == ["running"] and live.bar_subscriptions >= 1,
                   what="the first live session trading")

        connections_before = live.api_connections  # the first run's client-id check and its node

        # Act
        second = start_runner("ats.live", [*SLEEVE, "--for", "15s"], env)
        _, second_err = second.communicate(timeout=60)
        first_still_running = first.poll() is None
        connections_after_second = live.api_connections  # before the first ends (and probes once more)
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGINT)
        reap(second)
        first_out, first_err = first.communicate(timeout=60)
        reap(first)

    # Assert: refused at a gate, with one line, before a second session existed.
    assert second.returncode == 3, second_err
    [first_session] = _live_sessions(store)
    assert second_err.strip().splitlines() == [
        f"error: [gate: one-session] another live session is running: {first_session.id} "
        f"(pid {first.pid} on {first_session.host}, since {first_session.started_at}) — "
        "stop it first (ats kill --mode live --reason …), one IB session at a time"]
    assert [r["gate"] for r in _refusals(store)] == ["one-session"]
    assert connections_after_second == connections_before  # the second run never connected to the gateway
    assert first_still_running, first_out + first_err
    assert placed(live) == []


def test_second_live_run_with_another_store_is_refused(sim_factory, isolated_env: Path, tmp_path: Path) -> None:
    # Arrange: two stores, both ready for live; one live gateway.
    first_dir, second_dir = isolated_env, tmp_path / "other-ats-data"
    first_store, second_store = _ready_for_live(first_dir), _ready_for_live(second_dir)
    live = sim_factory(mode="live", account=LIVE_ACCOUNT, clock="manual")
    first = start_runner("ats.live", [*SLEEVE, "--for", "10m"], _live_env(first_dir, live.port))
    second = None
    try:
        wait_until(lambda: [s.status for s in _live_sessions(first_store)] == ["running"]
                   and live.bar_subscriptions >= 1, what="the first live session trading")

        # Act: the second run either ends (refused) or starts a live session of its own.
        second = start_runner("ats.live", [*SLEEVE, "--for", "10m"], _live_env(second_dir, live.port))
        wait_until(lambda: second.poll() is not None or _live_sessions(second_store),
                   what="the second run to be refused or to start a session")
        started = _live_sessions(second_store)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in (first, second):
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.communicate(timeout=30)
                reap(proc)

    # Assert: refused at a gate, before any live session was started from the second store.
    assert started == [], [s.as_dict() for s in started]
    assert second.returncode == 3

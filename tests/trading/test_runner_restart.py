"""A runner killed with SIGKILL mid-session and started again adopts the position: no duplicate order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from runner_support import counts, wait_until

from ats.governance.sessions import list_sessions, session_detail
from ats.store import open_store
from support import later, reap

pytestmark = pytest.mark.slow

# buy_threshold 0.99: the first bar with a range buys; sell_threshold 1.0: never sells.
ARGS = ["--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ",
        "--params", '{"buy_threshold": 0.99, "sell_threshold": 1.0}', "--until", later()]


def _start_runner(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ats.paper", *ARGS], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _running_session(store) -> str:  # noqa: ANN001
    running = [s for s in list_sessions("paper", store=store) if s.status == "running"]
    return running[0].id if running else ""


def test_sigkill_then_restart_adopts_the_position_without_a_duplicate_order(sim_factory, isolated_env: Path) -> None:
    # Arrange
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    env = {"ATS_DATA_DIR": str(isolated_env), "ATS_IB_PAPER_PORT": str(sim.port),
           "ATS_IB_PAPER_ACCOUNT_ID": sim.account, "ATS_GATEWAY_CONTROLLER": "docker"}
    store = open_store()
    first = _start_runner(env)
    second = None
    try:
        wait_until(lambda: sim.bar_subscriptions >= 1, what="the first runner's bar subscription")
        sim.advance(1)
        wait_until(lambda: any(r.get("result") == "filled" for r in sim.ledger), what="the entry fill")
        first_session = _running_session(store)
        wait_until(lambda: counts(store, first_session).get("filled", 0) == 1, what="the fill recorded")

        # Act: SIGKILL the runner, start it again, let three more days trade.
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        wait_until(lambda: sim.clients == [], what="the simulator to see the dead client")
        second = _start_runner(env)
        wait_until(lambda: _running_session(store) not in ("", first_session), what="the second session")
        second_session = _running_session(store)
        wait_until(lambda: sim.bar_subscriptions >= 1, what="the second runner's bar subscription")
        for _ in range(3):
            before = counts(store, second_session)["bars"]
            sim.advance(1)
            wait_until(lambda b=before: counts(store, second_session)["bars"] > b, what="a bar in session 2")
        second.send_signal(signal.SIGINT)
        output, _ = second.communicate(timeout=60)
    finally:
        reap(first)
        reap(second)

    # Assert
    placed = [r for r in sim.ledger if r["kind"] == "place"]
    assert len(placed) == 1, placed
    detail = session_detail(second_session, store=store)
    assert detail["status"] == "killed" and "SIGINT" in detail["reason"], output
    assert [e for e in detail["order_events"] if e["event"] == "intent"] == []
    assert detail["bars_received"] == 3
    positions = detail["last_snapshot"]["positions"]
    assert [(p["side"], p["quantity"]) for p in positions] == [("LONG", float(placed[0]["quantity"]))]
    killed = session_detail(first_session, store=store)
    assert killed["status"] == "error" and "died without stopping the session" in killed["reason"]

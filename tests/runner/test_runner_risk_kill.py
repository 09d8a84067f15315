"""Risk caps deny inside the node; the kill switch halts a running session from another process."""

from __future__ import annotations

from pathlib import Path

import pytest

from ats import audit, killswitch
from ats.alert_sink import AlertEndpoint
from ats.errors import KillLatched
from ats.runner import SessionRequest, check_gates
from ats.sessions import get_session, session_detail
from ats.sleeves import Sleeve
from runner_support import drive_session, session_settings, wait_until
from support import run_ats

pytestmark = pytest.mark.slow


def test_order_above_the_cap_and_a_burst_above_the_rate_never_reach_the_broker(sim_factory, isolated_env: Path) -> None:
    # Arrange: live-like caps on the paper simulator: 5000 USD per order, 2 orders per second.
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    settings = session_settings(sim, isolated_env, ATS_PAPER_RISK_MAX_NOTIONAL_PER_ORDER="5000",
                                ATS_PAPER_RISK_MAX_ORDER_SUBMIT_RATE="2/00:00:01")
    # 20 shares of QQQ (~450 USD) = ~9000 USD > cap; then a burst of five 1-share orders.
    request = SessionRequest("paper", [Sleeve("order_check", "QQQ.NASDAQ", "1-DAY-LAST",
                                              {"quantities": [20, 1, 1, 1, 1, 1]})])

    # Act
    driven = drive_session(sim, settings, request, days=1)

    # Assert
    outcome, store = driven.outcome, driven.store
    events = session_detail(outcome.session_id, store=store)["order_events"]
    intents = [e for e in events if e["event"] == "intent"]
    denied = [e for e in events if e["event"] == "denied"]
    assert len(intents) == 6
    assert any(e["quantity"] == 20 and "NOTIONAL" in e["details"]["reason"].upper() for e in denied)
    burst_denied = [e for e in denied if e["quantity"] == 1]
    assert burst_denied, "the burst above 2 orders/s must be throttled/denied"
    placed = [row for row in sim.ledger if row["kind"] == "place"]
    assert all(row["quantity"] == "1" for row in placed), placed
    assert len(placed) == 5 - len(burst_denied)
    actions = [r.action for r in audit.list_rows(store=store, limit=1000)]
    assert actions.count("order.intent") == 6
    assert actions.count("order.denied") == len(denied)


def test_ats_kill_from_another_process_halts_the_session_and_latches(sim_factory, isolated_env: Path) -> None:
    # Arrange
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    endpoint = AlertEndpoint()
    settings = session_settings(sim, isolated_env, ATS_ALERT_URLS=endpoint.url)
    request = SessionRequest("paper", [Sleeve("order_check", "QQQ.NASDAQ", "1-DAY-LAST",
                                              {"quantities": [1], "limit_price": 100.0})])
    env = {"ATS_DATA_DIR": str(isolated_env)}
    killed = {}

    def kill_after_first_day(guard, day: int) -> None:
        # A resting limit order is open at the broker: the kill must cancel it.
        wait_until(lambda: any(r["kind"] == "place" for r in sim.ledger), what="the limit order at the broker")
        killed["result"] = run_ats("kill", "--mode", "paper", "--reason", "test kill", env=env)

    # Act
    try:
        driven = drive_session(sim, settings, request, days=1, during=kill_after_first_day, stop=False,
                              settle=False)
        titles = endpoint.titles()
    finally:
        endpoint.close()

    # Assert
    outcome, store = driven.outcome, driven.store
    assert killed["result"].returncode == 0, killed["result"].stderr
    assert outcome.status == "killed"
    assert "kill switch by" in outcome.reason and "test kill" in outcome.reason
    assert get_session(outcome.session_id, store=store).status == "killed"
    assert [r["kind"] for r in sim.ledger] == ["place", "cancel"]
    assert titles == ["ats: KILL SWITCH (paper)", "ats: paper session killed"]
    actions = [r.action for r in audit.list_rows(store=store, limit=1000)]
    assert {"kill.latch", "session.halted", "session.killed"} <= set(actions)
    with pytest.raises(KillLatched, match="the paper kill switch is latched"):
        check_gates(request, settings, store)
    cleared = run_ats("kill", "--clear", "--mode", "paper", "--reason", "investigated", env=env)
    assert cleared.returncode == 0, cleared.stderr
    assert killswitch.latched("paper", store=store) is None
    check_gates(request, settings, store)

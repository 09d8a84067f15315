"""An IBC-style gateway restart inside the maintenance window, in the middle of a paper session.

The simulator restarts like IBC's nightly restart (connections dropped, refused for a few
seconds, same account state after).  The health check runs beside the session with the real
probe, the default policy (daily restart window 23:45 America/New_York ± 10 min) and a clock
injected inside that window: the probes fail long enough to mark the gateway broken, yet nobody
is paged, and the recovery pages nobody either.  The node reconnects and trades on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fault_support import advance_one_day, bar_dates, placed, run_scripted_session, wait_until
from health_support import AlertEndpoint, FakeClock
from runner_support import session_settings

from ats.core.sleeves import Sleeve
from ats.gateway.health import HealthPolicy, run_health_check
from ats.governance.sessions import session_detail
from ats.trading.runner import SessionRequest

pytestmark = pytest.mark.slow

BUY_ONCE = Sleeve("ibs_reversion", "QQQ.NASDAQ", "1-DAY-LAST", {"buy_threshold": 0.99, "sell_threshold": 1.0})
# 23:40 America/New_York (EST) on Tuesday 2026-11-24: inside the default daily window 23:35–23:55.
INSIDE_DAILY_WINDOW = datetime(2026, 11, 25, 4, 40, tzinfo=UTC)
RESTART_SECONDS = 5.0


def test_ibc_restart_in_the_window_pages_nobody_and_the_session_resumes(sim_factory, isolated_env: Path) -> None:
    # Arrange
    endpoint = AlertEndpoint()
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    # The endpoint receives the health check's alerts only (not the session's own notifications).
    settings = session_settings(sim, isolated_env)
    health_settings = session_settings(sim, isolated_env, ATS_ALERT_URLS=endpoint.url)
    policy = HealthPolicy()  # the shipped defaults, windows included
    clock = FakeClock(INSIDE_DAILY_WINDOW)
    checks = []

    def check(store) -> None:  # noqa: ANN001
        clock.advance(30)
        checks.append(run_health_check("paper", store=store, settings=health_settings, policy=policy,
                                       clock=clock))

    def script(guard, store, results) -> None:  # noqa: ANN001
        sid = guard.session_id
        advance_one_day(sim, store, sid)  # the entry order fills before the restart
        check(store)
        connections = sim.api_connections

        # Act: IBC restarts the gateway; the scheduled checks go on while it is down.
        sim.restart(RESTART_SECONDS)
        for _ in range(3):
            check(store)
        assert sim.wait_listening(RESTART_SECONDS + 10)
        wait_until(lambda: sim.api_connections > connections and 1 in sim.clients and sim.bar_subscriptions >= 1,
                   what="the node to reconnect after the restart")
        check(store)
        results["after"] = [advance_one_day(sim, store, sid) for _ in range(2)]

    try:
        # Act
        driven = run_scripted_session(sim, settings, SessionRequest("paper", [BUY_ONCE], monitor_gateway=False), script)

        # Assert: the restart was seen (broken after K=2 refused probes, then recovered) …
        assert all(policy.window_at(o.state.last_probe_at) is not None for o in checks)
        assert [(o.probe.reason, o.state.state, o.transition) for o in checks] == [
            ("ok", "healthy", "healthy"), ("refused", "healthy", None), ("refused", "broken", "broken"),
            ("refused", "broken", None), ("ok", "healthy", "recovered")]
        assert "alert suppressed: IBC daily restart window" in checks[2].note
        # … and nobody was paged, neither for the outage nor for its end.
        assert [o.alerts for o in checks] == [[]] * 5
        assert endpoint.posts == [] and endpoint.rejected == 0

        # The session resumed: bars after the restart recorded, the position kept, no second order.
        outcome, store = driven.outcome, driven.store
        assert outcome.status == "stopped", outcome.reason
        assert bar_dates(store, outcome.session_id)[-2:] == driven.results["after"]
        assert len(placed(sim)) == 1, placed(sim)
        detail = session_detail(outcome.session_id, store=store)
        assert [e["event"] for e in detail["order_events"]].count("intent") == 1
        assert [p["side"] for p in detail["last_snapshot"]["positions"]] == ["LONG"]
    finally:
        endpoint.close()

"""The gateway connection lost in the middle of a paper session.

The real node (TradingNode + IB adapter) runs against the simulator, with the real probe, the
real store and real apprise posting to a local HTTP endpoint.  Two watchers of the gateway:

* the session's own connection monitor (every second, on the real clock): the last two tests —
  an outage pages once and its recovery once within seconds, with no health watch running; a
  dropped socket the adapter re-opens pages nobody;
* the scheduled health check on an injected clock (30 s between checks): the first two tests,
  with the session's monitor off (both feed one state machine; two clocks in it would make the
  sequence of alerts meaningless).  Two faults, two policies:

* ``drop_connections()``: every socket closed, the listener stays up (a network blip, the
  gateway kicking its clients).  A probe right after it connects fine, so the health check
  never sees a failed probe and correctly pages nobody; the node reconnects by itself (the
  adapter waits ~5 s, ib_sim_spec §3).
* ``outage()``: sockets closed *and* connections refused until the gateway is back.  That is
  what K=2 consecutive failed probes detect: exactly one alert, then one recovery alert.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fault_support import advance_one_day, bar_dates, placed, run_scripted_session, wait_until
from health_support import AlertEndpoint, FakeClock
from runner_support import session_settings

from ats.core.sleeves import Sleeve
from ats.gateway.health import HealthPolicy, gateway_status, run_health_check
from ats.governance.sessions import session_detail
from ats.trading.runner import SessionRequest

pytestmark = pytest.mark.slow

# buy_threshold 0.99: the first bar with a range buys; sell_threshold 1.0: it never sells, and
# holding a position it never buys again — so any second order would be a duplicate.
BUY_ONCE = Sleeve("ibs_reversion", "QQQ.NASDAQ", "1-DAY-LAST", {"buy_threshold": 0.99, "sell_threshold": 1.0})
NODE_CLIENT_ID = 1
# Tuesday 2026-11-24 14:00 America/New_York: far from IBC's default restart windows.
TUESDAY_2PM_NY = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)
DOWN, RECOVERED = "ats: paper IB gateway is DOWN", "ats: paper IB gateway recovered"


class HealthChecks:
    """Scheduled health checks of the paper gateway, 30 s apart on an injected clock."""

    def __init__(self, settings, store) -> None:  # noqa: ANN001
        self.settings, self.store = settings, store
        self.clock = FakeClock(TUESDAY_2PM_NY)
        self.outcomes = []

    def run(self):  # noqa: ANN201
        self.clock.advance(30)
        outcome = run_health_check("paper", store=self.store, settings=self.settings, policy=HealthPolicy(),
                                   clock=self.clock)
        self.outcomes.append(outcome)
        return outcome


def _node_reconnected(sim, connections_before: int) -> bool:  # noqa: ANN001
    return (sim.api_connections > connections_before and NODE_CLIENT_ID in sim.clients
            and sim.bar_subscriptions >= 1)


def test_dropped_connections_reconnect_without_a_duplicate_order_or_an_alert(
        sim_factory, isolated_env: Path, endpoint: AlertEndpoint) -> None:
    # Arrange
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    # The endpoint receives the health check's alerts only (not the session's own notifications).
    settings = session_settings(sim, isolated_env)
    health_settings = session_settings(sim, isolated_env, ATS_ALERT_URLS=endpoint.url)

    def script(guard, store, results) -> None:  # noqa: ANN001
        health = HealthChecks(health_settings, store)
        results["health"] = health
        sid = guard.session_id
        results["before"] = [advance_one_day(sim, store, sid)]  # the entry order fills here
        health.run()
        connections = sim.api_connections

        # Act: drop every connection mid-session; probe straight after, as the schedule might.
        sim.drop_connections()
        results["dropped_clients"] = sim.clients
        health.run()
        wait_until(lambda: _node_reconnected(sim, connections), what="the node to reconnect")
        health.run()
        results["after"] = [advance_one_day(sim, store, sid) for _ in range(2)]

    # Act
    driven = run_scripted_session(sim, settings, SessionRequest("paper", [BUY_ONCE], monitor_gateway=False), script)

    # Assert: the node came back and kept trading the same position, no order twice.
    outcome, store, results = driven.outcome, driven.store, driven.results
    assert outcome.status == "stopped", outcome.reason
    assert results["dropped_clients"] == []
    assert bar_dates(store, outcome.session_id)[-2:] == results["after"]
    assert len(placed(sim)) == 1, placed(sim)
    detail = session_detail(outcome.session_id, store=store)
    assert [e["event"] for e in detail["order_events"] if e["event"] in ("intent", "filled")] == ["intent", "filled"]
    assert [(p["side"], p["quantity"]) for p in detail["last_snapshot"]["positions"]] == [
        ("LONG", float(placed(sim)[0]["quantity"]))]
    # The health policy: every probe connected (the listener never went away), so no failure
    # was counted and nobody was paged — a pure socket drop heals itself within seconds.
    health = results["health"]
    assert [(o.probe.reason, o.state.state, o.state.consecutive_failures) for o in health.outcomes] == [
        ("ok", "healthy", 0)] * 3
    assert endpoint.posts == [] and endpoint.rejected == 0


def test_gateway_outage_alerts_once_recovers_once_and_the_node_resumes(
        sim_factory, isolated_env: Path, endpoint: AlertEndpoint) -> None:
    # Arrange
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    # The endpoint receives the health check's alerts only (not the session's own notifications).
    settings = session_settings(sim, isolated_env)
    health_settings = session_settings(sim, isolated_env, ATS_ALERT_URLS=endpoint.url)

    def script(guard, store, results) -> None:  # noqa: ANN001
        health = HealthChecks(health_settings, store)
        results["health"] = health
        sid = guard.session_id
        advance_one_day(sim, store, sid)
        health.run()
        connections = sim.api_connections

        # Act: the gateway goes down for ten scheduled checks (five minutes), then comes back.
        sim.outage(3600)
        for _ in range(10):
            health.run()
        results["during"] = list(endpoint.titles())
        sim.outage(0)  # the listener reopens now
        assert sim.wait_listening(10)
        health.run()
        wait_until(lambda: _node_reconnected(sim, connections), what="the node to reconnect")
        health.run()
        results["after"] = [advance_one_day(sim, store, sid) for _ in range(2)]

    # Act
    driven = run_scripted_session(sim, settings, SessionRequest("paper", [BUY_ONCE], monitor_gateway=False), script)

    # Assert
    outcome, store, results = driven.outcome, driven.store, driven.results
    assert outcome.status == "stopped", outcome.reason
    assert bar_dates(store, outcome.session_id)[-2:] == results["after"]
    assert len(placed(sim)) == 1, placed(sim)
    health = results["health"]
    reasons = [o.probe.reason for o in health.outcomes]
    assert reasons == ["ok"] + ["refused"] * 10 + ["ok", "ok"]
    assert [o.alerts for o in health.outcomes] == (
        [[], [], ["gateway_broken"]] + [[]] * 8 + [["gateway_recovered"], []])
    assert results["during"] == ["ats: paper IB gateway is DOWN"]
    assert endpoint.titles() == ["ats: paper IB gateway is DOWN", "ats: paper IB gateway recovered"]
    assert "Outage: 5 min" in endpoint.posts[1]["message"]
    assert gateway_status(store=store)["paper"]["state"] == "healthy"


def _monitored_session(sim_factory, data_dir: Path, endpoint: AlertEndpoint, fault):  # noqa: ANN001, ANN202
    """A paper session watching its own connection (alerts to ``endpoint``; IBC's restart
    windows off: the real clock is used; no health watch runs): one day traded, then
    ``fault(sim, store, results)`` and, once the node is back, two more days (``results["after"]``)."""
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    settings = session_settings(sim, data_dir, ATS_ALERT_URLS=endpoint.url, ATS_HEALTH_DAILY_RESTART_TIME="",
                                ATS_HEALTH_WEEKLY_RESTART_DAY="")

    def script(guard, store, results) -> None:  # noqa: ANN001
        advance_one_day(sim, store, guard.session_id)
        connections = sim.api_connections
        fault(sim, store, results)
        wait_until(lambda: _node_reconnected(sim, connections), what="the node to reconnect")
        results["after"] = [advance_one_day(sim, store, guard.session_id) for _ in range(2)]

    driven = run_scripted_session(sim, settings, SessionRequest("paper", [BUY_ONCE], for_seconds=1800), script)
    assert driven.outcome.status == "stopped", driven.outcome.reason
    assert bar_dates(driven.store, driven.outcome.session_id)[-2:] == driven.results["after"]
    return sim, driven


def test_the_running_sessions_own_monitor_pages_an_outage_once_and_its_recovery_once(
        sim_factory, isolated_env: Path, endpoint: AlertEndpoint) -> None:
    def outage(sim, store, results) -> None:  # noqa: ANN001
        # Act: the gateway goes down (sockets closed, connections refused), then comes back.
        sim.outage(3600)
        wait_until(lambda: DOWN in endpoint.titles(), what="the session's DOWN alert")
        results["state_down"] = gateway_status(store=store)["paper"]["state"]
        sim.outage(0)
        assert sim.wait_listening(10)
        wait_until(lambda: RECOVERED in endpoint.titles(), what="the session's recovery alert")

    sim, driven = _monitored_session(sim_factory, isolated_env, endpoint, outage)

    # Assert: one page per transition (then the session's own end), the node kept trading.
    assert driven.results["state_down"] == "broken"
    assert endpoint.titles() == [DOWN, RECOVERED, "ats: paper session stopped"]
    assert "Reason: connection refused" in endpoint.posts[0]["message"]
    assert "DU1234567" not in str(endpoint.posts) and "DU***4567" in endpoint.posts[0]["message"]
    assert len(placed(sim)) == 1, placed(sim)
    assert gateway_status(store=driven.store)["paper"]["state"] == "healthy"


def test_a_dropped_socket_the_adapter_reopens_pages_nobody(sim_factory, isolated_env: Path,
                                                           endpoint: AlertEndpoint) -> None:
    def drop(sim, store, results) -> None:  # noqa: ANN001
        sim.drop_connections()  # Act: every socket closed, the listener stays: the monitor's probe connects

    _sim, driven = _monitored_session(sim_factory, isolated_env, endpoint, drop)

    # Assert: no gateway alert, only the session's own end.
    assert endpoint.titles() == ["ats: paper session stopped"]
    assert gateway_status(store=driven.store)["paper"]["state"] in ("unknown", "healthy")

"""The health check end to end: the real probe against the simulator, the real store, real apprise
delivering to a real local HTTP endpoint.  Time is an injected clock; nothing sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from health_support import AlertEndpoint, FakeClock, make_settings

from ats.gateway.health import HealthPolicy, gateway_status, run_health_check
from ats.ibsim import SimGateway
from ats.store import open_store
from support import free_port

NO_WINDOWS = HealthPolicy(daily_restart_time=None, weekly_restart_day=None)
# Tuesday 2026-11-24 14:00 America/New_York: far from every default maintenance window.
TUESDAY_2PM_NY = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)


@pytest.fixture
def sim() -> Iterator[SimGateway]:
    gateway = SimGateway(mode="paper", account="DU1234567", port=0).start()
    yield gateway
    gateway.stop()


class Harness:
    """One gateway, one store, one clock: ``run()`` is one scheduled health check."""

    def __init__(self, data_dir: Path, endpoint: AlertEndpoint, port: int, policy: HealthPolicy,
                 mode: str = "paper", start: datetime = TUESDAY_2PM_NY, alert_urls: str | None = None,
                 database_url: str | None = None) -> None:
        port_var = "ib_paper_port" if mode == "paper" else "ib_live_port"
        env = {port_var: str(port), "alert_urls": alert_urls if alert_urls is not None else endpoint.url}
        if database_url:
            env["database_url"] = database_url
        if mode == "paper":
            env["ib_paper_account_id"] = "DU1234567"
        else:
            env["ib_live_account_id"] = "U7654321"
            env["ib_paper_port"] = str(free_port())
        self.settings = make_settings(data_dir, **env)
        self.store = open_store(self.settings.resolved_database_url)
        self.clock = FakeClock(start)
        self.policy = policy
        self.mode = mode
        self.endpoint = endpoint

    def run(self):  # noqa: ANN201
        return run_health_check(self.mode, store=self.store, settings=self.settings, policy=self.policy,
                                clock=self.clock)

    def run_every(self, seconds: float, count: int) -> list[int]:
        """``count`` runs ``seconds`` apart (advancing first); returns the indexes that posted alerts."""
        posted = []
        for index in range(count):
            self.clock.advance(seconds)
            before = len(self.endpoint.posts)
            self.run()
            if len(self.endpoint.posts) > before:
                posted.append(index)
        return posted


def _restore(sim: SimGateway) -> None:
    sim.outage(0)  # reopen the listener now
    assert sim.wait_listening(10)


def test_outage_of_many_probes_sends_one_alert_then_one_recovery(isolated_env, endpoint, sim) -> None:
    h = Harness(isolated_env, endpoint, sim.port, HealthPolicy())  # default windows, far away
    assert h.run().probe.healthy
    sim.outage(3600)
    outage_start = h.clock.advance(30)

    first = h.run()
    assert (first.probe.reason, first.state.state, endpoint.posts) == ("refused", "healthy", [])
    posted = h.run_every(30, 18)  # 9 more minutes of failing probes

    assert posted == [0]  # only the second failed probe (K=2) alerted
    assert len(endpoint.posts) == 1
    alert = endpoint.posts[0]
    assert alert["title"] == "ats: paper IB gateway is DOWN"
    assert f"127.0.0.1:{sim.port}" in alert["message"]
    assert "DU***4567" in alert["message"] and "DU1234567" not in alert["message"]
    assert "connection refused" in alert["message"]
    assert f"{outage_start:%Y-%m-%d %H:%M:%S} UTC" in alert["message"]  # since the first failed probe

    _restore(sim)
    h.clock.advance(30)
    recovered = h.run()
    assert recovered.transition == "recovered"
    assert [p["title"] for p in endpoint.posts] == ["ats: paper IB gateway is DOWN",
                                                   "ats: paper IB gateway recovered"]
    assert "Outage: 9 min 30 s" in endpoint.posts[1]["message"]
    assert h.run_every(30, 5) == []  # healthy again: silence


def test_single_failed_probe_does_not_alert(isolated_env, endpoint, sim) -> None:
    h = Harness(isolated_env, endpoint, sim.port, NO_WINDOWS)
    h.run()
    sim.outage(3600)
    h.clock.advance(30)
    assert h.run().state.consecutive_failures == 1
    _restore(sim)
    assert h.run_every(30, 4) == []
    assert endpoint.posts == []


def test_reminders_every_fifteen_minutes_while_broken(isolated_env, endpoint, sim) -> None:
    h = Harness(isolated_env, endpoint, sim.port, NO_WINDOWS)
    h.run()
    sim.outage(3600)
    posted = h.run_every(30, 100)  # 50 minutes down, probes at 30 s … 3000 s

    # broken alert at the 2nd failure (t=60 s), reminders every ≥ 15 min after the last alert:
    # t=960, 1860, 2760 s, i.e. run indexes 1, 31, 61, 91.
    assert posted == [1, 31, 61, 91]
    assert endpoint.titles() == ["ats: paper IB gateway is DOWN"] + ["ats: paper IB gateway still down"] * 3
    assert "Still DOWN for 15 min 30 s" in endpoint.posts[1]["message"]


def test_no_alert_for_an_outage_inside_the_daily_restart_window(isolated_env, endpoint, sim) -> None:
    policy = HealthPolicy(daily_restart_time="23:45", daily_restart_tolerance_minutes=10, weekly_restart_day=None)
    # 23:36 America/New_York (EST, UTC-5) on Tuesday 2026-11-24.
    h = Harness(isolated_env, endpoint, sim.port, policy, start=datetime(2026, 11, 25, 4, 36, tzinfo=UTC))
    h.run()
    sim.outage(3600)  # IBC restart at 23:36:30 …
    assert h.run_every(30, 30) == []  # … down until 23:51: broken, but inside the window
    assert h.run().state.state == "broken"
    _restore(sim)
    h.clock.advance(30)
    assert h.run().transition == "recovered"
    assert endpoint.posts == []  # nobody was paged, so no recovery message either


def test_alert_when_still_broken_after_the_window_ends(isolated_env, endpoint, sim) -> None:
    policy = HealthPolicy(daily_restart_time="23:45", daily_restart_tolerance_minutes=10, weekly_restart_day=None)
    h = Harness(isolated_env, endpoint, sim.port, policy, start=datetime(2026, 11, 25, 4, 40, tzinfo=UTC))
    h.run()  # 23:40 NY
    sim.outage(3600)
    posted = h.run_every(30, 40)  # probes 23:40:30 … 00:00:00; the window ends at 23:55:00

    assert posted == [29]  # the probe at 23:55:00, the first one outside the window
    assert len(endpoint.posts) == 1
    message = endpoint.posts[0]["message"]
    assert "Still broken after the IBC daily restart window ended." in message
    assert "2026-11-25 04:40:30 UTC" in message  # since the first failed probe, inside the window
    _restore(sim)
    h.clock.advance(30)
    h.run()
    assert endpoint.titles()[-1] == "ats: paper IB gateway recovered"


def test_weekly_cold_restart_window_suppresses_then_alerts(isolated_env, endpoint, sim) -> None:
    policy = HealthPolicy(daily_restart_time=None, weekly_restart_day="sun", weekly_restart_time="07:05",
                          weekly_restart_tolerance_minutes=30)
    # Sunday 2026-11-29 06:50 NY (11:50 UTC); the window is 06:35–07:35 NY.
    h = Harness(isolated_env, endpoint, sim.port, policy, start=datetime(2026, 11, 29, 11, 50, tzinfo=UTC))
    h.run()
    sim.outage(3600)
    posted = h.run_every(60, 60)  # probes 06:51 … 07:50
    assert posted == [44, 59]  # 07:35, the end of the window; a reminder 15 min later
    assert "weekly cold restart" in endpoint.posts[0]["message"]
    assert endpoint.titles()[1] == "ats: paper IB gateway still down"


def test_reminders_are_suppressed_inside_a_window_and_resume_after(isolated_env, endpoint, sim) -> None:
    policy = HealthPolicy(daily_restart_time="23:45", daily_restart_tolerance_minutes=10, weekly_restart_day=None)
    # Broken from 23:00 NY (alerted at 23:00:30), still broken across the 23:35–23:55 window.
    h = Harness(isolated_env, endpoint, sim.port, policy, start=datetime(2026, 11, 25, 3, 59, 30, tzinfo=UTC))
    h.run()
    sim.outage(3600)
    posted = h.run_every(30, 120)  # probes 23:00:00 … 00:59:30
    # alert at 23:00:30 (index 1); reminders 23:15:30 (31), 23:30:30 (61); none 23:35–23:55;
    # the first probe after the window, 23:55:00 (110) — its due reminder was held back.
    assert posted == [1, 31, 61, 110]


def test_wrong_account_on_the_live_port_has_an_alert_of_its_own(isolated_env, endpoint, sim) -> None:
    # The simulator is a paper gateway (DU…) but it listens where the live gateway should be.
    h = Harness(isolated_env, endpoint, sim.port, NO_WINDOWS, mode="live")
    first = h.run()
    assert (first.probe.reason, first.state.state, first.transition) == ("wrong_account", "broken", "wrong_account")
    assert endpoint.titles() == ["ats: WRONG ACCOUNT on the live gateway"]
    message = endpoint.posts[0]["message"]
    assert "DU***4567" in message and "U***4321" in message
    assert "DU1234567" not in message and "U7654321" not in message
    assert h.run_every(30, 20) == []  # no repeat within R
    assert h.run_every(30, 20) == [9]  # reminder 15 min after the alert
    assert endpoint.titles()[-1] == "ats: live IB gateway still down"


def test_failed_notification_is_kept_and_delivered_on_a_later_run(isolated_env, endpoint, sim) -> None:
    h = Harness(isolated_env, endpoint, sim.port, NO_WINDOWS)
    h.run()
    endpoint.status = 500  # the notification service is failing
    sim.outage(3600)
    h.clock.advance(30)
    h.run()
    h.clock.advance(30)
    second = h.run()  # the alert is decided here, and cannot be delivered
    assert (second.alerts, second.pending, endpoint.posts) == (["gateway_broken"], 1, [])
    assert endpoint.rejected == 1
    status = gateway_status(store=h.store)["paper"]
    assert (status["state"], status["alerted"], status["pending_alerts"]) == ("broken", True, 1)

    h.clock.advance(30)
    third = h.run()  # still failing: retried, still pending, no second alert decided
    assert (third.alerts, third.pending, endpoint.rejected) == ([], 1, 2)

    endpoint.status = 200
    h.clock.advance(30)
    fourth = h.run()
    assert (fourth.alerts, fourth.pending, fourth.delivered) == ([], 0, 1)
    assert endpoint.titles() == ["ats: paper IB gateway is DOWN"]
    h.run_every(30, 3)
    assert len(endpoint.posts) == 1  # delivered exactly once


def test_endpoint_down_then_up_on_the_same_port_gets_the_alert(isolated_env, endpoint, sim) -> None:
    port = free_port()  # nothing listens here yet: connection refused
    h = Harness(isolated_env, endpoint, sim.port, NO_WINDOWS, alert_urls=f"json://127.0.0.1:{port}/alerts")
    h.run()
    sim.outage(3600)
    h.run_every(30, 2)
    assert gateway_status(store=h.store)["paper"]["pending_alerts"] == 1

    late = AlertEndpoint(port)
    try:
        h.clock.advance(30)
        outcome = h.run()
        assert (outcome.delivered, outcome.pending) == (1, 0)
        assert late.titles() == ["ats: paper IB gateway is DOWN"]
    finally:
        late.close()


def test_only_the_failed_target_is_retried(isolated_env, endpoint, sim) -> None:
    broken = AlertEndpoint()
    broken.status = 503
    try:
        h = Harness(isolated_env, endpoint, sim.port, NO_WINDOWS, alert_urls=f"{endpoint.url},{broken.url}")
        h.run()
        sim.outage(3600)
        h.run_every(30, 2)
        assert len(endpoint.posts) == 1 and broken.rejected == 1
        broken.status = 200
        h.run_every(30, 1)
        assert len(endpoint.posts) == 1  # the good target is not sent a duplicate
        assert broken.titles() == ["ats: paper IB gateway is DOWN"]
    finally:
        broken.close()


def test_state_survives_between_processes_of_the_store(isolated_env, endpoint, sim) -> None:
    """Each run reloads the state from the store: a new store object continues the same outage."""
    from ats.store.engine import forget_stores

    h = Harness(isolated_env, endpoint, sim.port, NO_WINDOWS)
    h.run()
    sim.outage(3600)
    h.run_every(30, 3)
    forget_stores()
    h.store = open_store(h.settings.resolved_database_url)
    assert h.run_every(30, 5) == []
    assert len(endpoint.posts) == 1


def test_outage_alert_retry_and_recovery_on_sqlite_and_postgresql(store_url, isolated_env, endpoint, sim) -> None:
    h = Harness(isolated_env, endpoint, sim.port, NO_WINDOWS, database_url=store_url)
    h.run()
    endpoint.status = 503
    sim.outage(3600)
    h.run_every(30, 4)
    status = gateway_status(store=h.store)["paper"]
    assert (status["state"], status["consecutive_failures"], status["pending_alerts"]) == ("broken", 4, 1)
    endpoint.status = 200
    _restore(sim)
    h.run_every(30, 2)
    assert endpoint.titles() == ["ats: paper IB gateway is DOWN", "ats: paper IB gateway recovered"]
    status = gateway_status(store=h.store)["paper"]
    assert (status["state"], status["pending_alerts"], len(status["history"])) == ("healthy", 0, 7)

    from ats.governance import audit

    actions = [row.action for row in audit.list_rows(store=h.store)]
    assert actions == ["gateway.healthy", "gateway.broken", "gateway.recovered"]

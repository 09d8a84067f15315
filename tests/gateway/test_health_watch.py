"""The gateway-health watch (one long-running run a day, a probe every few seconds): one alert per
outage and one on recovery at a real apprise endpoint, one watcher at a time (a store lease), a
watcher taking over from one that died, and the day's end handed over to the next run.

Real parts: the simulator, the real probe, the store, apprise posting to a local HTTP endpoint.
IBC's restart windows are switched off in the settings, so nothing depends on the hour."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from health_support import AlertEndpoint, FakeClock, hold_client_id, make_settings, wait_until

from ats.gateway.health import (
    WATCH_LEASE,
    SessionConnectionCheck,
    gateway_status,
    next_watch_end,
    watch_gateway,
)
from ats.store import leases, open_store

DOWN, RECOVERED = "ats: paper IB gateway is DOWN", "ats: paper IB gateway recovered"
FAR = datetime(2100, 1, 1, tzinfo=UTC)


class Watcher:
    """``watch_gateway`` on a thread until :meth:`stop`; its outcome (or error) kept."""

    def __init__(self, settings, holder: str, clock=None) -> None:  # noqa: ANN001
        self.stopped = threading.Event()
        self.holder, self.outcome, self.error = holder, None, None
        self.checks: list = []
        store = open_store(settings.resolved_database_url)

        def run() -> None:
            try:
                self.outcome = watch_gateway("paper", until=FAR, holder=holder, store=store, settings=settings,
                                             stop=self.stopped, on_check=self.checks.append,
                                             **({"clock": clock} if clock is not None else {}))
            except BaseException as exc:  # noqa: BLE001 - raised in the test thread by stop()
                self.error = exc

        self.thread = threading.Thread(target=run, name=f"watch {holder}", daemon=True)
        self.thread.start()

    def stop(self):  # noqa: ANN201
        self.stopped.set()
        self.thread.join(timeout=60)
        if self.error is not None:
            raise self.error
        return self.outcome


def _settings(tmp_path: Path, sim, endpoint: AlertEndpoint, **env: str):  # noqa: ANN001, ANN202
    """Probes every 0.2 s; IBC's restart windows off unless ``env`` sets them."""
    return make_settings(tmp_path, **{"ib_paper_port": str(sim.port), "ib_paper_account_id": sim.account,
                                      "alert_urls": endpoint.url, "health_interval_seconds": "0.2",
                                      "health_probe_timeout_seconds": "2", "health_daily_restart_time": "",
                                      "health_weekly_restart_day": "", **env})


def test_two_watchers_probe_one_at_a_time_and_alert_once_per_outage_and_once_on_recovery(
        tmp_path: Path, sim_factory, endpoint: AlertEndpoint) -> None:
    # Arrange: two watch runs at once (the next day's run during the overlap, or a restarted serve).
    sim = sim_factory(mode="paper")
    settings = _settings(tmp_path, sim, endpoint)
    store = open_store(settings.resolved_database_url)
    first = Watcher(settings, "watch A")
    wait_until(lambda: len(first.checks) >= 2, what="the first watcher's probes")
    second = Watcher(settings, "watch B")

    # Act: the gateway goes down for a while, then comes back.
    wait_until(lambda: gateway_status(store=store)["paper"]["state"] == "healthy", what="a healthy gateway")
    sim.outage(3600)
    wait_until(lambda: DOWN in endpoint.titles(), what="the DOWN alert")
    probes_down = len(first.checks)
    wait_until(lambda: len(first.checks) >= probes_down + 5, what="five more probes while down")
    sim.outage(0)
    assert sim.wait_listening(10)
    wait_until(lambda: RECOVERED in endpoint.titles(), what="the recovery alert")
    probes_up = len(first.checks)
    wait_until(lambda: len(first.checks) >= probes_up + 3, what="three more probes once recovered")
    b, a = second.stop(), first.stop()  # the standby first: it would take over the released lease

    # Assert: one alert per transition; only the lease holder probed; the lease was given up.
    assert endpoint.titles() == [DOWN, RECOVERED]
    assert (a.alerts, a.errors, a.ended) == (["gateway_broken", "gateway_recovered"], 0, "stopped")
    assert (b.probes, b.alerts, b.errors) == (0, [], 0) and b.standby_ticks > 0
    assert leases.holder_of(store, WATCH_LEASE) is None
    status = gateway_status(store=store)["paper"]
    assert (status["state"], status["pending_alerts"]) == ("healthy", 0)


def test_an_outage_inside_ibcs_restart_window_pages_only_if_it_outlasts_the_window(
        tmp_path: Path, sim_factory, endpoint: AlertEndpoint) -> None:
    # Arrange: the checks' clock at 23:50 New York on a Tuesday, inside the daily restart window
    # (23:45 ± 10 min); the probes themselves are real.
    sim = sim_factory(mode="paper")
    settings = _settings(tmp_path, sim, endpoint, health_daily_restart_time="23:45")
    clock = FakeClock(datetime(2026, 11, 25, 4, 50, tzinfo=UTC))
    watcher = Watcher(settings, "watch", clock=clock)
    wait_until(lambda: any(c.state.state == "healthy" for c in watcher.checks), what="a healthy probe")

    # Act: IBC restarts the gateway; it is still down when the window ends (23:55).
    sim.outage(3600)
    wait_until(lambda: sum(c.probe.reason == "refused" for c in watcher.checks) >= 5, what="five failed probes")
    inside = list(endpoint.titles())
    clock.advance(6 * 60)  # 23:56
    wait_until(lambda: DOWN in endpoint.titles(), what="the DOWN alert after the window")
    sim.outage(0)
    assert sim.wait_listening(10)
    wait_until(lambda: RECOVERED in endpoint.titles(), what="the recovery alert")
    outcome = watcher.stop()

    # Assert: silent inside the window, one alert saying it outlasted it, one recovery.
    assert inside == []
    assert endpoint.titles() == [DOWN, RECOVERED]
    assert "Still broken after the IBC daily restart window ended." in endpoint.posts[0]["message"]
    assert outcome.alerts == ["gateway_broken", "gateway_recovered"]


def test_a_watcher_takes_over_from_a_holder_that_died(tmp_path: Path, sim_factory, endpoint: AlertEndpoint) -> None:
    # Arrange: a holder that stopped renewing its lease (its process was killed): it expires soon.
    sim = sim_factory(mode="paper")
    settings = _settings(tmp_path, sim, endpoint)
    store = open_store(settings.resolved_database_url)
    assert leases.acquire(store, WATCH_LEASE, "a killed run", timedelta(seconds=1))

    # Act
    watcher = Watcher(settings, "the restarted run")
    wait_until(lambda: len(watcher.checks) >= 2, what="the new watcher to take over and probe")
    holder_while_running = leases.holder_of(store, WATCH_LEASE)
    outcome = watcher.stop()

    # Assert
    assert holder_while_running == "the restarted run"
    assert outcome.standby_ticks >= 1 and outcome.probes >= 2
    assert leases.holder_of(store, WATCH_LEASE) is None


def test_the_watch_ends_after_the_next_daily_run_starts() -> None:
    tuesday_2pm_ny = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)
    before_dst_ends = datetime(2026, 10, 31, 12, 0, tzinfo=UTC)  # the next midnight is EDT, the one after EST

    assert next_watch_end(tuesday_2pm_ny) == datetime(2026, 11, 25, 5, 2, tzinfo=UTC)  # 00:02 New York
    assert next_watch_end(before_dst_ends) == datetime(2026, 11, 1, 4, 2, tzinfo=UTC)


def test_a_lease_has_one_holder_until_released_or_expired(store_url: str) -> None:
    store = open_store(store_url)
    now = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)
    ttl = timedelta(seconds=30)

    taken = leases.acquire(store, "job", "A", ttl, now)
    refused = leases.acquire(store, "job", "B", ttl, now + timedelta(seconds=10))
    renewed = leases.acquire(store, "job", "A", ttl, now + timedelta(seconds=20))
    still_refused = leases.acquire(store, "job", "B", ttl, now + timedelta(seconds=45))  # A renewed at 20 s
    taken_over = leases.acquire(store, "job", "B", ttl, now + timedelta(seconds=51))  # A's expired at 50 s
    leases.release(store, "job", "A")  # no longer A's: nothing happens
    holder = leases.holder_of(store, "job", now + timedelta(seconds=52))
    leases.release(store, "job", "B")

    assert (taken, refused, renewed, still_refused, taken_over) == (True, False, True, False, True)
    assert holder == "B"
    assert leases.holder_of(store, "job", now + timedelta(seconds=53)) is None


def test_a_sessions_probe_is_not_refused_while_the_watchs_probe_holds_its_client_id(
        tmp_path: Path, sim_factory, endpoint: AlertEndpoint) -> None:
    # Arrange: the watch's probe connected (its client id in use) when the session checks.
    sim = sim_factory(mode="paper")
    settings = _settings(tmp_path, sim, endpoint)
    check = SessionConnectionCheck("paper", settings, open_store(settings.resolved_database_url))

    # Act: the session's socket is gone; it probes the gateway.
    with hold_client_id(sim, settings.health.probe_client_id):
        outcome = check("disconnected")

    # Assert: its own client id: not refused (326), no failed check counted.
    assert (outcome.probe.healthy, outcome.probe.reason) == (True, "ok"), outcome.probe.detail
    assert outcome.state.consecutive_failures == 0

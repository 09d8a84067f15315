"""The alert endpoint down while the gateway breaks: the health watch carries on, keeps the
state and the undelivered alert, and delivers it once the endpoint is back — once.

The real watch (:func:`ats.gateway.health.watch_gateway`, what the ``gateway-health`` flow runs
all day) probes the simulator for real and sends through real apprise to a ``json://`` URL on
127.0.0.1 where, at first, nothing listens (connection refused).  IBC's maintenance windows are
switched off in the settings, so nothing depends on the hour.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from health_support import AlertEndpoint, make_settings, wait_until

from ats.gateway.health import gateway_status, watch_gateway
from ats.store import open_store
from support import free_port

pytestmark = pytest.mark.slow

DOWN, RECOVERED = "ats: paper IB gateway is DOWN", "ats: paper IB gateway recovered"


def test_health_watch_keeps_the_alert_while_the_endpoint_is_down_and_delivers_it_later(
        sim_factory, tmp_path: Path) -> None:
    # Arrange: the alert endpoint's port has nothing listening yet; the watch probes every 0.2 s.
    sim = sim_factory(mode="paper")
    alert_port = free_port()
    settings = make_settings(tmp_path, ib_paper_port=str(sim.port), ib_paper_account_id=sim.account,
                             alert_urls=f"json://127.0.0.1:{alert_port}/alerts", health_interval_seconds="0.2",
                             health_daily_restart_time="", health_weekly_restart_day="")
    store = open_store(settings.resolved_database_url)
    checks: list = []
    stop = threading.Event()
    result: dict = {}
    watch = threading.Thread(target=lambda: result.update(outcome=watch_gateway(
        "paper", until=datetime(2100, 1, 1, tzinfo=UTC), holder="test watch", store=store, settings=settings,
        stop=stop, on_check=checks.append)), daemon=True)
    watch.start()
    endpoint = None
    try:
        wait_until(lambda: any(c.state.state == "healthy" for c in checks), what="a healthy probe")

        # Act: the gateway goes down with the endpoint down too; the alert is decided, kept.
        sim.outage(3600)
        wait_until(lambda: any("gateway_broken" in c.alerts for c in checks), what="the DOWN alert decided")
        decided_at = len(checks)
        wait_until(lambda: len(checks) >= decided_at + 5, what="five more probes while nothing is delivered")
        kept = gateway_status(store=store)["paper"]
        endpoint = AlertEndpoint(alert_port)  # the endpoint comes back
        wait_until(lambda: endpoint.titles() == [DOWN], what="the kept alert delivered")
        sim.outage(0)
        assert sim.wait_listening(10)
        wait_until(lambda: RECOVERED in endpoint.titles(), what="the recovery alert")
        recovered_at = len(checks)
        wait_until(lambda: len(checks) >= recovered_at + 3, what="three more probes once recovered")
    finally:
        stop.set()
        watch.join(timeout=60)
        if endpoint is not None:
            titles = endpoint.titles()
            endpoint.close()

    # Assert: decided once, kept while undeliverable, delivered once, the watch never failed.
    outcome = result["outcome"]
    assert (outcome.alerts, outcome.errors) == (["gateway_broken", "gateway_recovered"], 0)
    assert (kept["state"], kept["alerted"], kept["pending_alerts"]) == ("broken", True, 1)
    assert titles == [DOWN, RECOVERED]
    assert gateway_status(store=store)["paper"]["pending_alerts"] == 0

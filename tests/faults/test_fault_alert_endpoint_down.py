"""The alert endpoint down while the gateway breaks: the health flow carries on, keeps the
state and the undelivered alert, and delivers it once the endpoint is back.

The real ``gateway-health`` Prefect flow runs in-process against a real local Prefect server;
its task probes the simulator for real and sends through real apprise to a ``json://`` URL on
127.0.0.1 where, at first, nothing listens (connection refused).  The real clock is used, so
IBC's maintenance windows are switched off in the settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ats.gateway.health import gateway_status
from ats.store import open_store
from fault_support import prefect_server
from health_support import AlertEndpoint
from support import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prefect_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prefect_server(tmp_path_factory.mktemp("prefect-home")) as url:
        yield url


@pytest.fixture
def prefect_api(prefect_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("PREFECT_API_URL", prefect_url)
    with temporary_settings(updates={PREFECT_API_URL: prefect_url}):
        yield prefect_url
        _drain_prefect_workers()


def _drain_prefect_workers() -> None:
    """Send the buffered run logs and events while the server is still up (as Prefect's own test
    harness does): otherwise the process retries them against a stopped server when it exits."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        try:
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        except RuntimeError:
            pass  # never started
        result = EventsWorker.drain_all()
        if inspect.isawaitable(result):
            await result

    run_coro_as_sync(drain())


def test_health_flow_keeps_the_alert_while_the_endpoint_is_down_and_delivers_it_later(
        prefect_api: str, sim_factory, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: the alert endpoint's port has nothing listening yet.
    from ats.settings import get_settings
    from flows.gateway_health import gateway_health

    sim = sim_factory(mode="paper")
    alert_port = free_port()
    for name, value in {"ATS_IB_PAPER_PORT": str(sim.port), "ATS_IB_PAPER_ACCOUNT_ID": sim.account,
                        "ATS_ALERT_URLS": f"json://127.0.0.1:{alert_port}/alerts",
                        "ATS_HEALTH_DAILY_RESTART_TIME": "", "ATS_HEALTH_WEEKLY_RESTART_DAY": ""}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    store = open_store()

    def run() -> dict:
        state = gateway_health(return_state=True)
        assert state.is_completed(), state  # the flow never fails for the notification service
        return state.result()

    # Act: healthy, then the gateway goes down for three runs with the endpoint down too.
    first = run()
    sim.outage(3600)
    down = [run() for _ in range(3)]
    kept = gateway_status(store=store)["paper"]
    endpoint = AlertEndpoint(alert_port)  # the endpoint comes back
    try:
        delivered = run()
        sim.outage(0)
        assert sim.wait_listening(10)
        recovered = run()
        titles = endpoint.titles()
    finally:
        endpoint.close()

    # Assert
    assert first["state"]["state"] == "healthy"
    assert [(r["probe"]["reason"], r["state"]["state"], r["alerts"], r["delivered"], r["pending"]) for r in down] == [
        ("refused", "healthy", [], 0, 0),
        ("refused", "broken", ["gateway_broken"], 0, 1),  # decided, not delivered: kept
        ("refused", "broken", [], 0, 1),  # retried, still down: still kept, not decided again
    ]
    assert (kept["state"], kept["consecutive_failures"], kept["alerted"], kept["pending_alerts"]) == (
        "broken", 3, True, 1)
    assert (delivered["alerts"], delivered["delivered"], delivered["pending"]) == ([], 1, 0)
    assert (recovered["alerts"], recovered["delivered"], recovered["pending"]) == (["gateway_recovered"], 1, 0)
    assert titles == ["ats: paper IB gateway is DOWN", "ats: paper IB gateway recovered"]
    assert gateway_status(store=store)["paper"]["pending_alerts"] == 0

"""The served ``gateway-health`` deployment on a real Prefect server: ``ats serve`` starts one
watch run at once (not at the next midnight), that one run probes every interval — no flow run
per probe — and pages a gateway outage once and its recovery once at a real apprise endpoint;
Ctrl-C stops serve and the watch with it."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from flow_support import PAPER_ACCOUNT, deployment_named, serve_deployments, served_store
from runner_support import wait_until
from sqlalchemy import func, select

from ats.core.alert_sink import AlertEndpoint
from ats.store.models import gateway_probes

pytestmark = pytest.mark.slow

DOWN, RECOVERED = "ats: paper IB gateway is DOWN", "ats: paper IB gateway recovered"


def _runs_of(name: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    async def read() -> list:
        async with get_client() as client:
            deployment = await deployment_named(client, name)
            return await client.read_flow_runs(deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[deployment.id])))

    return asyncio.run(read())


def _probes(store) -> int:  # noqa: ANN001
    with store.read() as conn:
        return conn.execute(select(func.count()).select_from(gateway_probes)).scalar_one()


def test_serve_starts_one_watch_run_that_pages_an_outage_once_and_its_recovery_once(
        prefect_server, prefect_api: str, sim_factory, tmp_path_factory: pytest.TempPathFactory) -> None:
    # Arrange
    sim = sim_factory(mode="paper", account=PAPER_ACCOUNT)
    endpoint = AlertEndpoint()
    serve_started = datetime.now(UTC)  # earlier modules' serves registered the same deployment on this server
    try:
        with serve_deployments(prefect_server, tmp_path_factory.mktemp("served-watch"),
                               ATS_IB_PAPER_PORT=str(sim.port), ATS_IB_PAPER_ACCOUNT_ID=PAPER_ACCOUNT,
                               ATS_ALERT_URLS=endpoint.url, ATS_HEALTH_INTERVAL_SECONDS="0.5",
                               ATS_HEALTH_DAILY_RESTART_TIME="", ATS_HEALTH_WEEKLY_RESTART_DAY="") as served:
            store = served_store(served)
            wait_until(lambda: any(r.state.is_running() and r.created >= serve_started
                                   for r in _runs_of("gateway-health/gateway-health")),
                       timeout=120, what="a running gateway-health run, started by serve")
            wait_until(lambda: _probes(store) >= 3, what="the watch's first probes")

            # Act: the gateway goes down, then comes back.
            sim.outage(3600)
            wait_until(lambda: DOWN in endpoint.titles(), what="the DOWN alert")
            probes_down = _probes(store)
            wait_until(lambda: _probes(store) >= probes_down + 5, what="more probes while down")
            sim.outage(0)
            assert sim.wait_listening(10)
            wait_until(lambda: RECOVERED in endpoint.titles(), what="the recovery alert")
            probes_up = _probes(store)
            wait_until(lambda: _probes(store) >= probes_up + 3, what="more probes once recovered")
            runs = _runs_of("gateway-health/gateway-health")
            probes = _probes(store)
        serve_exit = served["proc"].returncode
    finally:
        titles = endpoint.titles()
        endpoint.close()

    # Assert: one run made every probe (the others wait for their midnight); one alert per
    # transition; Ctrl-C ended serve and the watch (no SIGKILL).
    started = [r for r in runs if not r.state.is_scheduled() and r.created >= serve_started]
    assert len(started) == 1 and started[0].state.is_running(), [(r.name, r.state.name) for r in runs]
    upcoming = [r.expected_start_time.astimezone(ZoneInfo("America/New_York")) for r in runs if r.state.is_scheduled()]
    assert upcoming and {(t.hour, t.minute) for t in upcoming} == {(0, 0)}
    assert len({t.date() for t in upcoming}) == len(upcoming)  # one a day
    assert probes >= probes_up + 3
    assert titles == [DOWN, RECOVERED]
    assert serve_exit != -signal.SIGKILL

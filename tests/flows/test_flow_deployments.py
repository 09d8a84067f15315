"""Deployments: schedules (holidays, DST), a served deployment gets scheduled runs, go-live only
when enabled, and cancelling a served go-live run is the kill switch."""

from __future__ import annotations

import asyncio
import datetime as dt
import os

import pytest
from flow_support import (
    LIVE_ACCOUNT,
    approve,
    deployment_named,
    final_state_of,
    pass_paper_rung,
    run_until_an_order_rests,
    serve_deployments,
)
from runner_support import wait_until

from ats.core.settings import load_settings
from ats.store import open_store
from support import later


def _next_runs(rrule: str, start: dt.datetime, n: int) -> list[dt.datetime]:
    from prefect.server.schemas.schedules import RRuleSchedule

    schedule = RRuleSchedule(rrule=rrule, timezone="America/New_York")
    return asyncio.run(schedule.get_dates(n=n, start=start))


def test_paper_session_schedule_skips_exchange_holidays() -> None:
    from deployments import paper_session_rrule

    runs = _next_runs(paper_session_rrule(dt.date(2026, 11, 20)), dt.datetime(2026, 11, 20, tzinfo=dt.UTC), 6)

    days = [r.date() for r in runs]
    assert dt.date(2026, 11, 26) not in days  # Thanksgiving
    assert days == [dt.date(2026, 11, d) for d in (20, 23, 24, 25, 27, 30)]
    assert {(r.hour, r.minute) for r in runs} == {(9, 25)}


def test_paper_session_schedule_follows_dst() -> None:
    from deployments import paper_session_rrule

    runs = _next_runs(paper_session_rrule(dt.date(2027, 3, 10)), dt.datetime(2027, 3, 10, tzinfo=dt.UTC), 4)

    utc = [(r.date(), r.astimezone(dt.UTC).strftime("%H:%M")) for r in runs]
    assert utc == [(dt.date(2027, 3, 10), "14:25"), (dt.date(2027, 3, 11), "14:25"),
                   (dt.date(2027, 3, 12), "14:25"), (dt.date(2027, 3, 15), "13:25")]


def test_go_live_is_served_only_when_live_trading_is_enabled() -> None:
    from deployments import build_deployments

    disabled = build_deployments(load_settings({}))
    enabled = build_deployments(load_settings({"ATS_ENABLE_LIVE_TRADING": "true"}))

    assert "go-live" not in [d.name for d in disabled]
    [go_live] = [d for d in enabled if d.name == "go-live"]
    assert go_live.tags == ["real-money"]
    assert go_live.concurrency_limit == 1
    assert go_live.concurrency_options.collision_strategy.value == "CANCEL_NEW"
    assert {d.name for d in disabled} == {"paper-session", "research-ladder", "gateway-health", "kill-switch",
                                          "audit-anchor"}


@pytest.fixture(scope="module")
def served(prefect_server, tmp_path_factory: pytest.TempPathFactory):
    """``python -m deployments`` serving against the test Prefect server, live trading enabled."""
    with serve_deployments(prefect_server, tmp_path_factory.mktemp("served-data"), ATS_ENABLE_LIVE_TRADING="true",
                           ATS_IB_LIVE_ACCOUNT_ID=LIVE_ACCOUNT) as serving:
        yield serving


@pytest.mark.slow
def test_served_paper_session_gets_scheduled_runs(served, prefect_api: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    async def scheduled() -> list:
        async with get_client() as client:
            deployment = await deployment_named(client, "paper-session/paper-session")
            for _ in range(900):
                runs = await client.read_flow_runs(deployment_filter=DeploymentFilter(
                    id=DeploymentFilterId(any_=[deployment.id])))
                # The scheduler's runs (other tests on this server start runs of the deployment by hand).
                runs = [r for r in runs if r.auto_scheduled]
                if runs:
                    return runs
                await asyncio.sleep(0.1)
            return []

    runs = asyncio.run(scheduled())

    assert runs, "the server's scheduler created no runs for the served paper-session deployment"
    starts = sorted(r.expected_start_time.astimezone(dt.UTC) for r in runs)
    import exchange_calendars as xcals

    calendar = xcals.get_calendar("XNYS")
    for start in starts:
        local = start.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
        assert (local.hour, local.minute) == (9, 25)
        assert calendar.is_session(local.date().isoformat())


@pytest.mark.slow
def test_cancelling_a_served_go_live_run_halts_the_node(served, prefect_api: str, sim_factory) -> None:
    # Arrange: gates satisfied in the served process's store; the live gateway is this test's simulator.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelling

    from ats.governance import audit
    from ats.governance.sessions import list_sessions

    store = open_store(f"sqlite:///{served['data_dir'] / 'ats.sqlite3'}")
    os.environ["ATS_DATA_DIR"] = str(served["data_dir"])
    os.environ["ATS_AUDIT_KEY_FILE"] = served["env"]["ATS_AUDIT_KEY_FILE"]  # one key per audit log
    sleeve_params = {"quantities": [1], "limit_price": 100.0}
    try:
        from ats.core.settings import get_settings

        get_settings.cache_clear()
        pass_paper_rung("order_check", params=sleeve_params)
        approve("order_check", params=sleeve_params)
    finally:
        os.environ["ATS_DATA_DIR"] = served["env"]["ATS_DATA_DIR"]
    live = sim_factory(mode="live", account=LIVE_ACCOUNT, port=int(served["env"]["ATS_IB_LIVE_PORT"]))
    params = {"strategy": "order_check", "instrument": "QQQ.NASDAQ",
              "params": sleeve_params, "i_understand": LIVE_ACCOUNT, "until": later()}

    run = run_until_an_order_rests("go-live/go-live", params, live)

    # Act: cancel the run as the Prefect UI does.
    async def cancel() -> None:
        async with get_client() as client:
            await client.set_flow_run_state(run.id, Cancelling(), force=True)

    asyncio.run(cancel())
    wait_until(lambda: list_sessions("live", store=store)[0].status != "running", timeout=60,
               what="the session to end")
    live.advance(2)

    async def final_state():  # noqa: ANN202
        async with get_client() as client:
            return await final_state_of(client, run.id)

    state = asyncio.run(final_state())

    # Assert
    [session] = list_sessions("live", store=store)
    # The runner's SIGTERM or the session's own read of the run's state (Cancelling), whichever came first.
    cause = "SIGTERM" in (session.reason or "") or "Cancelling" in (session.reason or "")
    assert (session.status, cause) == ("killed", True), (session.reason, live.ledger)
    assert [r["kind"] for r in live.ledger] == ["place", "cancel"]
    actions = [r.action for r in audit.list_rows(store=store, limit=500)]
    assert {"session.halted", "session.killed", "order.canceled"} <= set(actions)
    assert state.type in (StateType.CANCELLED, StateType.COMPLETED, StateType.CRASHED), state

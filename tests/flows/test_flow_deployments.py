"""Deployments: schedules (holidays, DST), a served deployment gets scheduled runs, go-live only
when enabled, and cancelling a served go-live run is the kill switch."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ats.settings import load_settings
from ats.store import open_store
from flow_support import LIVE_ACCOUNT, approve, pass_paper_rung
from runner_support import wait_until
from support import free_port, later

REPO = Path(__file__).resolve().parents[2]


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
    assert {d.name for d in disabled} == {"paper-session", "research-ladder", "gateway-health"}


@pytest.fixture(scope="module")
def served(prefect_server, tmp_path_factory: pytest.TempPathFactory):
    """``python -m deployments`` serving against the test Prefect server, live trading enabled."""
    data_dir = tmp_path_factory.mktemp("served-data")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ATS_")},
           "PREFECT_API_URL": prefect_server["url"], "PREFECT_HOME": str(prefect_server["home"]),
           "ATS_DATA_DIR": str(data_dir), "ATS_ENABLE_LIVE_TRADING": "true",
           "ATS_IB_LIVE_ACCOUNT_ID": LIVE_ACCOUNT, "ATS_IB_PAPER_PORT": str(free_port()),
           "ATS_IB_LIVE_PORT": str(free_port()), "ATS_GATEWAY_CONTROLLER": "external",
           "ATS_GATEWAY_START_TIMEOUT_SECONDS": "20", "ATS_HEALTH_INTERVAL_SECONDS": "3600"}
    log = open(data_dir / "serve.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "deployments"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield {"env": env, "data_dir": data_dir, "proc": proc, "log": data_dir / "serve.log"}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


async def _deployment(client, name: str):  # noqa: ANN001, ANN202
    for _ in range(600):
        try:
            return await client.read_deployment_by_name(name)
        except Exception:  # noqa: BLE001 - not registered yet
            await asyncio.sleep(0.1)
    raise TimeoutError(f"deployment {name} never appeared")


@pytest.mark.slow
def test_served_paper_session_gets_scheduled_runs(served, prefect_api: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    async def scheduled() -> list:
        async with get_client() as client:
            deployment = await _deployment(client, "paper-session/paper-session")
            for _ in range(900):
                runs = await client.read_flow_runs(deployment_filter=DeploymentFilter(
                    id=DeploymentFilterId(any_=[deployment.id])))
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

    from ats import audit
    from ats.sessions import list_sessions

    store = open_store(f"sqlite:///{served['data_dir'] / 'ats.sqlite3'}")
    os.environ["ATS_DATA_DIR"] = str(served["data_dir"])
    try:
        from ats.settings import get_settings

        get_settings.cache_clear()
        pass_paper_rung("order_check")
        approve("order_check")
    finally:
        os.environ["ATS_DATA_DIR"] = served["env"]["ATS_DATA_DIR"]
    live = sim_factory(mode="live", account=LIVE_ACCOUNT, port=int(served["env"]["ATS_IB_LIVE_PORT"]))
    params = {"strategy": "order_check", "instrument": "QQQ.NASDAQ",
              "params": {"quantities": [1], "limit_price": 100.0}, "i_understand": LIVE_ACCOUNT, "until": later()}

    async def start_run():  # noqa: ANN202
        async with get_client() as client:
            deployment = await _deployment(client, "go-live/go-live")
            return await client.create_flow_run_from_deployment(deployment.id, parameters=params)

    run = asyncio.run(start_run())
    wait_until(lambda: live.bar_subscriptions >= 1, timeout=120, what="the served live node's bar subscription")
    live.advance(1)
    wait_until(lambda: [r["kind"] for r in live.ledger] == ["place"], what="the resting order at the broker")

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
            for _ in range(600):
                current = await client.read_flow_run(run.id)
                if current.state.is_final():
                    return current.state
                await asyncio.sleep(0.1)
            return current.state

    state = asyncio.run(final_state())

    # Assert
    [session] = list_sessions("live", store=store)
    assert session.status == "killed" and "SIGTERM" in (session.reason or ""), session
    assert [r["kind"] for r in live.ledger] == ["place", "cancel"]
    actions = [r.action for r in audit.list_rows(store=store, limit=500)]
    assert {"session.halted", "session.killed", "order.canceled"} <= set(actions)
    assert state.type in (StateType.CANCELLED, StateType.COMPLETED, StateType.CRASHED), state

"""``ats deploy --pool`` on a real Prefect server on PostgreSQL (API auth on), run by real
``prefect worker --type process`` processes, with the ats store on PostgreSQL too.

One server for the module: its own PostgreSQL database (and one for the ats store), both dropped
at the end; its scheduler off, so no scheduled run (09:25 New York, midnight…) can start during a
test whatever the time of day — the schedules themselves are compared with ``ats serve``'s.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flow_support import (
    LIVE_ACCOUNT,
    PAPER_ACCOUNT,
    REPO,
    RESTING,
    approve,
    deployment_named,
    final_state_of,
    pass_paper_rung,
    run_until_an_order_rests,
    run_worker,
)

from ats.core.settings import load_settings
from ats.governance.sessions import list_sessions
from ats.store import open_store
from support import free_port, postgres_database, require_postgres, wait_until

POOL = "ats-test"


@pytest.fixture(scope="module")
def pool_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A Prefect server on a PostgreSQL database of its own (API auth required), an ats store
    database, and the environment a worker (or ``ats deploy``) of this trading host gets."""
    require_postgres()
    from ats.core.prefect_server import LocalPrefectServer
    from ats.store.engine import forget_stores

    root = tmp_path_factory.mktemp("work-pool")
    with postgres_database("prefect_test") as prefect_db, postgres_database("ats_test") as ats_db:
        server = LocalPrefectServer(
            root / "prefect-home", database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{prefect_db}",
            auth_string=f"ats:{secrets.token_hex(12)}",
            server_env={"PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
                        "PREFECT_SERVER_SERVICES_DB_VACUUM_LOOP_SECONDS": "1"}).start()  # retention: every second
        try:
            data_dir = root / "ats-data"
            data_dir.mkdir()
            env = {**{k: v for k, v in os.environ.items() if not k.startswith(("ATS_", "PREFECT_"))}, **server.env(),
                   "PREFECT_WORKER_QUERY_SECONDS": "1",
                   "ATS_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{ats_db}",
                   "ATS_DATA_DIR": str(data_dir), "ATS_AUDIT_KEY_FILE": str(root / "ats-config" / "audit.key"),
                   "ATS_IB_PAPER_ACCOUNT_ID": PAPER_ACCOUNT, "ATS_IB_LIVE_ACCOUNT_ID": LIVE_ACCOUNT,
                   "ATS_ENABLE_LIVE_TRADING": "true", "ATS_IB_PAPER_PORT": str(free_port()),
                   "ATS_IB_LIVE_PORT": str(free_port()), "ATS_GATEWAY_CONTROLLER": "external",
                   "ATS_GATEWAY_START_TIMEOUT_SECONDS": "20", "ATS_HEALTH_INTERVAL_SECONDS": "3600"}
            yield {"server": server, "env": env, "root": root, "startup_s": server.startup_s,
                   "prefect_db": f"postgresql://postgres@127.0.0.1:5432/{prefect_db}"}
        finally:
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=10)
            server.stop()
            forget_stores()


def _finished_run(client, name: str):  # noqa: ANN001, ANN202
    """A completed flow run of a flow named ``name``, with one log line."""
    import datetime as dt

    from prefect import flow
    from prefect.client.schemas.actions import LogCreate
    from prefect.states import Completed

    @flow(name=name)
    def nothing() -> None:
        """Never called: the runs are made through the API."""

    async def make():  # noqa: ANN202
        run = await client.create_flow_run(nothing, state=Completed())
        await client.create_logs([LogCreate(name="test", level=20, message=f"{name} ran", flow_run_id=run.id,
                                            timestamp=dt.datetime.now(dt.UTC))])
        return run

    return make()


async def _logs_of(client, run_id) -> list:  # noqa: ANN001
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    return await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))


def _deploy(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ats.cli", "deploy", *args], capture_output=True, text=True,
                          env={**env, "COLUMNS": "200"}, cwd=env["ATS_DATA_DIR"], timeout=300)


@pytest.fixture(scope="module")
def deployed(pool_server: dict) -> dict:
    """``ats deploy --pool ats-test --json`` once, against the module's server."""
    done = _deploy(pool_server["env"], "--pool", POOL, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def pool_api(pool_server: dict, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """This test's Prefect client calls and ats store go where the workers' do."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from ats.core.settings import get_settings

    env = pool_server["env"]
    for name in ("ATS_DATABASE_URL", "ATS_DATA_DIR", "ATS_AUDIT_KEY_FILE", "ATS_IB_PAPER_ACCOUNT_ID",
                 "ATS_IB_LIVE_ACCOUNT_ID", "ATS_ENABLE_LIVE_TRADING"):
        monkeypatch.setenv(name, env[name])
    for name in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "PREFECT_HOME"):
        monkeypatch.setenv(name, env[name])
    get_settings.cache_clear()
    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"],
                                     PREFECT_API_AUTH_STRING: env["PREFECT_API_AUTH_STRING"]}):
        yield pool_server
    get_settings.cache_clear()


def _read(coro_fn):  # noqa: ANN001, ANN202
    """Run ``coro_fn(client)`` with a Prefect client of this test's settings."""
    from prefect.client.orchestration import get_client

    async def run():  # noqa: ANN202
        async with get_client() as client:
            return await coro_fn(client)

    return asyncio.run(run())


def _cancel(run_id) -> None:  # noqa: ANN001
    """Cancel a run through the API, as the Prefect UI's Cancel does."""
    from prefect.states import Cancelling

    _read(lambda client: client.set_flow_run_state(run_id, Cancelling(), force=True))


@pytest.mark.slow
def test_deploy_registers_the_served_deployments_on_a_new_process_pool_and_is_idempotent(
        pool_server: dict, deployed: dict, pool_api: dict) -> None:
    from deployments import build_deployments

    served = {d.name: d for d in build_deployments(load_settings({"ATS_ENABLE_LIVE_TRADING": "true"}))}

    # Act: the same command a second time.
    again = _deploy(pool_server["env"], "--pool", POOL, "--json")

    # Assert
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert (deployed["pool_created"], second["pool_created"]) == (True, False)
    names = {d["name"].split("/")[1] for d in second["deployments"]}
    assert names == set(served) and "go-live" in names
    queues = {d["name"]: d["work_queue"] for d in second["deployments"]}
    assert (queues["go-live/go-live"], queues["gateway-health/gateway-health"]) == ("live", "live")

    async def read(client):  # noqa: ANN001, ANN202
        pool = await client.read_work_pool(POOL)
        found = {name: await client.read_deployment_by_name(f"{d.flow_name}/{name}") for name, d in served.items()}
        everything = await client.read_deployments()
        return pool, found, everything

    pool, found, everything = _read(read)
    assert pool.type == "process"
    assert len(everything) == len(served)  # a second deploy updated, it did not add
    for name, stored in found.items():
        expected = served[name]
        assert stored.work_pool_name == POOL, name
        assert stored.work_queue_name == ("live" if name in ("go-live", "gateway-health") else "default"), name
        assert (stored.tags, stored.description) == (expected.tags, expected.description), name
        limit = stored.global_concurrency_limit.limit if stored.global_concurrency_limit else None
        assert limit == expected.concurrency_limit, name
        if expected.concurrency_options is not None:
            assert stored.concurrency_options.collision_strategy == expected.concurrency_options.collision_strategy
        assert len(stored.schedules) == len(expected.schedules), name
        for mine, theirs in zip(stored.schedules, expected.schedules, strict=True):
            assert mine.schedule.model_dump(exclude_none=True) == theirs.schedule.model_dump(exclude_none=True), name
        assert stored.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
        assert stored.entrypoint == f"flows/{stored.entrypoint.split('/')[1]}"
        assert (REPO / stored.entrypoint.split(":")[0]).is_file(), name


@pytest.mark.slow
def test_deploy_start_watch_starts_a_gateway_health_run_for_the_live_host(
        pool_server: dict, deployed: dict, pool_api: dict) -> None:
    done = _deploy(pool_server["env"], "--pool", POOL, "--start-watch", "--json")

    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["watch_run"]
    try:
        run = _read(lambda client: client.read_flow_run(run_id))
        deployment = _read(lambda client: client.read_deployment(run.deployment_id))
        assert (deployment.name, run.work_queue_name, "resumed" in run.tags) == ("gateway-health", "live", True)
        assert run.state.is_scheduled()
    finally:  # no worker of the later tests may pick it up
        _read(lambda client: client.delete_flow_run(run_id))


def test_the_api_refuses_a_client_without_the_auth_string(pool_server: dict) -> None:
    import urllib.error
    import urllib.request

    url = pool_server["env"]["PREFECT_API_URL"]
    request = urllib.request.Request(f"{url}/work_pools/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30).close()

    refused.value.close()
    assert refused.value.code == 401
    with urllib.request.urlopen(f"{url}/health", timeout=30) as health:
        assert health.status == 200  # the health check stays open (compose's healthcheck uses it)


@pytest.mark.parametrize("pool", ["", "a/b", " ats", "-x"])
def test_deploy_refuses_a_bad_pool_name_in_one_line(pool: str, tmp_path: Path) -> None:
    from support import run_ats

    done = run_ats("deploy", "--pool", pool)

    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "work pool name" in done.stderr, done.stderr


def test_deploy_without_a_prefect_server_is_one_line(tmp_path: Path) -> None:
    from support import refused_port, run_ats

    unset = run_ats("deploy", "--pool", POOL, env={"PREFECT_API_URL": ""})
    down = run_ats("deploy", "--pool", POOL, env={"PREFECT_API_URL": f"http://127.0.0.1:{refused_port()}/api"})

    assert (unset.returncode, unset.stderr.count("\n")) == (2, 1), unset.stderr
    assert "PREFECT_API_URL is not set" in unset.stderr
    assert (down.returncode, down.stderr.count("\n")) == (1, 1), down.stderr
    assert "does not answer" in down.stderr


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_server_refuses_a_port_out_of_range_in_one_line(port: str) -> None:
    from support import run_ats

    done = run_ats("server", "--port", port)

    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Invalid value for '--port'" in done.stderr, done.stderr


def test_serve_without_a_prefect_server_is_one_line_as_deploy(tmp_path: Path) -> None:
    from support import refused_port, run_ats

    url = f"http://127.0.0.1:{refused_port()}/api"

    served = run_ats("serve", env={"PREFECT_API_URL": url})

    assert served.returncode == 1
    assert served.stderr.splitlines() == [
        f"error: the Prefect API at {url} does not answer (ConnectError): is the Prefect server up?"]


def test_deploy_with_a_wrong_auth_string_is_one_line(pool_server: dict) -> None:
    env = {**pool_server["env"], "PREFECT_API_AUTH_STRING": "ats:wrong"}

    done = _deploy(env, "--pool", POOL)

    assert (done.returncode, done.stderr.count("\n")) == (1, 1), done.stderr
    assert "refused the credentials" in done.stderr


@pytest.mark.slow
def test_a_paper_run_started_through_the_api_runs_on_a_worker_and_cancelling_it_kills_the_session(
        pool_server: dict, deployed: dict, pool_api: dict, sim_factory) -> None:
    # Arrange: a worker of a second trading host (the default queue only) and its paper gateway.
    env = pool_server["env"]
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03", account=PAPER_ACCOUNT,
                      port=int(env["ATS_IB_PAPER_PORT"]))
    log = pool_server["root"] / "worker-paper.log"
    store = open_store(env["ATS_DATABASE_URL"])
    params = {"strategy": "order_check", "instrument": "QQQ.NASDAQ", "params": RESTING, "for_seconds": 600,
              "swap": False}
    with run_worker(env, POOL, log, "default"):
        run = run_until_an_order_rests("paper-session/paper-session", params, sim)
        wait_until(lambda: [s.status for s in list_sessions("paper", store=store)] == ["running"], timeout=120,
                   what="the paper session in the PostgreSQL store")

        # Act
        _cancel(run.id)
        wait_until(lambda: list_sessions("paper", store=store)[0].status != "running", timeout=120,
                   what="the session to end")
        state = _read(lambda client: final_state_of(client, run.id))

    # Assert
    [session] = list_sessions("paper", store=store)
    assert session.status == "killed", session.reason
    assert [r["kind"] for r in sim.ledger] == ["place", "cancel"]
    assert state.is_final() and state.type.value in ("CANCELLED", "CRASHED", "COMPLETED"), state
    assert f"Flow run '{run.name}' submitted to infrastructure" in log.read_text()  # this worker ran it


@pytest.mark.slow
def test_with_two_workers_a_go_live_run_runs_once_and_a_second_is_cancelled_by_the_limit(
        pool_server: dict, deployed: dict, pool_api: dict, sim_factory) -> None:
    # Arrange: two workers on every queue (two on the live host); gates passed; the live gateway.
    env = pool_server["env"]
    store = open_store(env["ATS_DATABASE_URL"])
    pass_paper_rung("order_check", params=RESTING)
    approve("order_check", params=RESTING)
    live = sim_factory(mode="live", account=LIVE_ACCOUNT, port=int(env["ATS_IB_LIVE_PORT"]))
    params = {"strategy": "order_check", "instrument": "QQQ.NASDAQ", "params": RESTING,
              "i_understand": LIVE_ACCOUNT, "for_seconds": 600}
    logs = [pool_server["root"] / f"worker-live-{n}.log" for n in (1, 2)]
    with run_worker(env, POOL, logs[0]), run_worker(env, POOL, logs[1]):
        first = run_until_an_order_rests("go-live/go-live", params, live)

        # Act: a second go-live run while the first trades.
        async def second_run(client):  # noqa: ANN001, ANN202
            deployment = await deployment_named(client, "go-live/go-live")
            run = await client.create_flow_run_from_deployment(deployment.id, parameters=params)
            return await final_state_of(client, run.id), run

        second_state, second = _read(second_run)
        _cancel(first.id)
        wait_until(lambda: list_sessions("live", store=store)[0].status != "running", timeout=120,
                   what="the live session to end")
        first_state = _read(lambda client: final_state_of(client, first.id))

    # Assert
    assert second_state.type.value == "CANCELLED", second_state
    [session] = list_sessions("live", store=store)
    assert session.status == "killed", session.reason
    assert [r["kind"] for r in live.ledger] == ["place", "cancel"]
    assert first_state.is_final(), first_state
    # Both workers may pick the first run up; the server lets one start it (the other is aborted).
    started = [f"Flow run '{run.name}' submitted to infrastructure" for run in (first, second)]
    texts = [log.read_text() for log in logs]
    assert [sum(line in text for text in texts) for line in started] == [1, 0], texts


@pytest.mark.slow
def test_flow_runs_ended_before_the_retention_period_are_deleted_with_their_logs(
        pool_server: dict, pool_api: dict) -> None:
    # Arrange: two finished runs with a log line each; one ended 91 days ago (moved back in
    # Prefect's own database: the retention period is 90 days, as in the compose file).
    import psycopg
    from prefect.exceptions import ObjectNotFound

    from ats.core.prefect_server import RUN_RETENTION_S

    old, recent = _read(lambda client: _finished_run(client, "retention-old")), \
        _read(lambda client: _finished_run(client, "retention-recent"))
    wait_until(lambda: _read(lambda client: _logs_of(client, old.id)), what="the old run's log line")
    with psycopg.connect(pool_server["prefect_db"], autocommit=True) as db:
        db.execute("UPDATE flow_run SET end_time = now() - make_interval(secs => %s) WHERE id = %s",
                   (RUN_RETENTION_S + 86400, old.id))

    # Act: Prefect's database vacuum (every second here, hourly in production).
    def gone() -> bool:
        async def read(client):  # noqa: ANN001, ANN202
            try:
                await client.read_flow_run(old.id)
            except ObjectNotFound:
                return True
            return False

        return _read(read)

    wait_until(gone, timeout=120, what="the vacuum to delete the old run")

    # Assert
    assert _read(lambda client: _logs_of(client, old.id)) == []
    assert _read(lambda client: client.read_flow_run(recent.id)).state.is_completed()
    assert len(_read(lambda client: _logs_of(client, recent.id))) == 1


@pytest.mark.slow
def test_deploy_without_live_trading_removes_the_go_live_deployment(
        pool_server: dict, deployed: dict, pool_api: dict) -> None:
    from prefect.exceptions import ObjectNotFound

    env = {**pool_server["env"], "ATS_ENABLE_LIVE_TRADING": "false"}

    done = _deploy(env, "--pool", POOL, "--json")

    try:
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["removed"] == ["go-live/go-live"]
        assert "go-live/go-live" not in {d["name"] for d in result["deployments"]}
        with pytest.raises(ObjectNotFound):
            _read(lambda client: client.read_deployment_by_name("go-live/go-live"))
    finally:  # as the module's other tests expect it
        assert _deploy(pool_server["env"], "--pool", POOL).returncode == 0

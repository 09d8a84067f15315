"""Helpers for flow tests: environments, preconditions, reading runs back from the server."""

from __future__ import annotations

import subprocess

from ats.governance import approvals
from ats.research import ladder
from ats.store import open_store
from ats.strategies import get_strategy

LIVE_ACCOUNT = "U1234567"
PAPER_ACCOUNT = "DU1234567"
RESTING = {"quantities": [1], "limit_price": 100.0}  # order_check params: a limit well below the market rests


def served_store(served: dict):  # noqa: ANN201
    """The store of a ``serve_deployments`` process (its data directory's SQLite file)."""
    return open_store(f"sqlite:///{served['data_dir'] / 'ats.sqlite3'}")


def serve_paper(prefect_server: dict, data_dir, **extra_env: str):  # noqa: ANN001, ANN201
    """:func:`serve_deployments` with the paper account set (a paper-session run can trade)."""
    return serve_deployments(prefect_server, data_dir, ATS_IB_PAPER_ACCOUNT_ID=PAPER_ACCOUNT, **extra_env)


def start_paper_run(served: dict, sim_factory, **sim_kwargs):  # noqa: ANN001, ANN201
    """A paper-session run of the served deployment, trading on a new simulator (manual clock) with
    a limit order resting at the broker; returns (run, simulator)."""
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03", account=PAPER_ACCOUNT,
                      port=int(served["env"]["ATS_IB_PAPER_PORT"]), **sim_kwargs)
    params = {"strategy": "order_check", "instrument": "QQQ.NASDAQ", "params": RESTING, "for_seconds": 600,
              "swap": False}
    return run_until_an_order_rests("paper-session/paper-session", params, sim), sim


def pass_paper_rung(strategy: str = "ibs_reversion", instrument: str = "QQQ.NASDAQ",
                    params: dict | None = None) -> None:
    """A passing paper verdict of ``params`` (default: the strategy's defaults) on the current code."""
    ladder.record_verdict("paper", strategy, instrument, passed=True, reasons=["test setup"], metrics={},
                          params=params or {}, data_start=None, data_end=None,
                          fingerprint=get_strategy(strategy).fingerprint(), actor="test", store=open_store())


def approve(strategy: str = "ibs_reversion", instrument: str = "QQQ.NASDAQ", params: dict | None = None) -> None:
    """A go-live approval of ``params`` (default: the strategy's defaults)."""
    approvals.approve_live(strategy, instrument, "flow test", "alice", params=params, store=open_store())


def reload_settings() -> None:
    from ats.core.settings import get_settings

    get_settings.cache_clear()


def run_artifacts(flow_run_id) -> dict[str, str]:  # noqa: ANN001
    """The artifacts a flow run created (key → latest data), read back from the server, oldest first."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.client.schemas.sorting import ArtifactSort

    async def read() -> dict[str, str]:
        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])), sort=ArtifactSort.CREATED_DESC)
            return {artifact.key or "": artifact.data for artifact in reversed(found)}

    return asyncio.run(read())


def read_artifact(flow_run_id, key: str) -> str:  # noqa: ANN001
    """The markdown of the artifact ``key`` a flow run created."""
    artifacts = run_artifacts(flow_run_id)
    assert key in artifacts, f"no artifact {key!r} on the run; it has {sorted(artifacts)}"
    return artifacts[key]


REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def serve_deployments(prefect_server: dict, data_dir, **extra_env: str):  # noqa: ANN001, ANN201
    """``python -m deployments`` serving against the test Prefect server on ``data_dir``
    (external gateway controller, free gateway ports); a context manager yielding
    ``{"env", "data_dir", "proc", "log"}``, stopped with SIGINT to its process group, as Ctrl-C
    does (SIGKILL after 60 s)."""
    import contextlib
    import os
    import subprocess
    import sys

    from support import free_port

    @contextlib.contextmanager
    def serving():  # noqa: ANN202
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("ATS_")},
               "PREFECT_API_URL": prefect_server["url"], "PREFECT_HOME": str(prefect_server["home"]),
               "ATS_DATA_DIR": str(data_dir), "ATS_IB_PAPER_PORT": str(free_port()),
               "ATS_IB_LIVE_PORT": str(free_port()), "ATS_GATEWAY_CONTROLLER": "external",
               "ATS_GATEWAY_START_TIMEOUT_SECONDS": "20", "ATS_HEALTH_INTERVAL_SECONDS": "3600",
               "ATS_AUDIT_KEY_FILE": str(data_dir.with_name(f"{data_dir.name}-config") / "audit.key"),
               **extra_env}
        log = open(data_dir / "serve.log", "w")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "deployments"], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=sigint_as_in_a_terminal)
        try:
            yield {"env": env, "data_dir": data_dir, "proc": proc, "log": data_dir / "serve.log"}
        finally:
            interrupt(proc)  # Ctrl-C as in a terminal: serve and its runs (the day's health watch)
            log.close()

    return serving()


async def deployment_named(client, name: str):  # noqa: ANN001, ANN201
    """The deployment ``name`` once ``serve`` has registered it."""
    import asyncio

    for _ in range(600):
        try:
            return await client.read_deployment_by_name(name)
        except Exception:  # noqa: BLE001 - not registered yet
            await asyncio.sleep(0.1)
    raise TimeoutError(f"deployment {name} never appeared")


async def final_state_of(client, run_id, *, other_than: str | None = None):  # noqa: ANN001, ANN201
    """The run's state once final — and not named ``other_than`` (a final state forced on the
    run, which the run then leaves) — or the last one seen after a minute."""
    import asyncio

    for _ in range(600):
        current = await client.read_flow_run(run_id)
        if current.state.is_final() and current.state.name != other_than:
            return current.state
        await asyncio.sleep(0.1)
    return current.state


def run_until_an_order_rests(deployment_name: str, parameters: dict, sim):  # noqa: ANN001, ANN201
    """A run of the served deployment ``deployment_name``, trading on ``sim`` until the strategy's
    first order rests at the broker (the simulator's clock moved one day); returns the run."""
    import asyncio

    from prefect.client.orchestration import get_client
    from runner_support import wait_until

    async def start():  # noqa: ANN202
        async with get_client() as client:
            deployment = await deployment_named(client, deployment_name)
            return await client.create_flow_run_from_deployment(deployment.id, parameters=parameters)

    run = asyncio.run(start())
    wait_until(lambda: sim.bar_subscriptions >= 1, timeout=180, what="the served node's bar subscription")
    sim.advance(1)
    wait_until(lambda: [r["kind"] for r in sim.ledger] == ["place"], what="the resting order at the broker")
    return run


def sigint_as_in_a_terminal() -> None:
    """In the child before it runs: SIGINT back to its default, as a terminal's Ctrl-C finds it.

    A suite started in the background by a non-interactive shell (``cmd &``, a CI runner's
    ``nohup``) inherits SIGINT *ignored*, and Python then never turns it into KeyboardInterrupt —
    in ``serve``'s flow-run processes too, which inherit it from ``serve``: the health watch went
    on probing after :func:`interrupt` and was SIGKILLed a minute later."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(proc: subprocess.Popen) -> None:
    """Stop a process started in a group of its own as Ctrl-C does (SIGINT to the group: it waits
    for its children), SIGKILL to the group after 60 s."""
    import os
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_worker(env: dict[str, str], pool: str, log_path, *work_queues: str):  # noqa: ANN001, ANN201
    """``prefect worker start --pool POOL --type process`` (only ``work_queues`` if given) in a
    process group of its own with ``env``; a context manager yielding the process, stopped with
    SIGINT (its runs must be over: cancel them first), SIGKILL after 60 s."""
    import contextlib
    import subprocess
    import sys
    from pathlib import Path

    prefect = str(Path(sys.executable).with_name("prefect"))
    queues = [arg for queue in work_queues for arg in ("--work-queue", queue)]

    @contextlib.contextmanager
    def working():  # noqa: ANN202
        with open(log_path, "w") as log:
            proc = subprocess.Popen([prefect, "worker", "start", "--pool", pool, "--type", "process", *queues],
                                    cwd=log_path.parent, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=sigint_as_in_a_terminal)
            try:
                yield proc
            finally:
                interrupt(proc)

    return working()

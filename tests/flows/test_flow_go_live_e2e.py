"""go_live end to end on the simulator; the pause path in the Prefect UI form."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from flow_support import LIVE_ACCOUNT, approve, pass_paper_rung, read_artifact, reload_settings, run_artifacts
from runner_support import wait_until

from ats.gateway.controllers import SimController, use_controller
from ats.governance import audit
from ats.governance.sessions import list_sessions
from ats.store import open_store
from ats.trading.run_link import artifact_key
from support import free_port, reap

pytestmark = pytest.mark.slow


@pytest.fixture
def live_env(isolated_env: Path, monkeypatch: pytest.MonkeyPatch, prefect_api: str) -> dict[str, str]:
    env = {"ATS_ENABLE_LIVE_TRADING": "true", "ATS_IB_LIVE_ACCOUNT_ID": LIVE_ACCOUNT,
           "ATS_IB_PAPER_ACCOUNT_ID": "DU1234567", "ATS_IB_PAPER_PORT": str(free_port()),
           "ATS_IB_LIVE_PORT": str(free_port()), "ATS_GATEWAY_START_TIMEOUT_SECONDS": "20"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reload_settings()
    pass_paper_rung()
    approve()
    return {**env, "ATS_DATA_DIR": str(isolated_env), "PREFECT_API_URL": prefect_api}


def test_go_live_end_to_end_on_the_simulator(live_env: dict[str, str]) -> None:
    # Arrange: the paper gateway is up (simulated), the live one is down.
    from ats.core.settings import get_settings
    from flows.go_live import go_live

    controller = SimController(get_settings(), clock="manual", start="2024-06-03")
    use_controller(controller)
    controller.start("paper")
    traded = threading.Event()

    def trade_on_the_live_simulator() -> None:
        wait_until(lambda: controller.sim("live") is not None and controller.sim("live").bar_subscriptions >= 1,
                   what="the live node's bar subscription")
        live = controller.sim("live")
        live.advance(1)
        live.wait_for(lambda: any(r.get("result") == "filled" for r in live.ledger), timeout=30)
        traded.set()

    params = {"buy_threshold": 0.99, "sell_threshold": 1.0}
    pass_paper_rung(params=params)  # the rung and the approval are pinned to these params
    approve(params=params)
    threading.Thread(target=trade_on_the_live_simulator, daemon=True).start()
    try:
        # Act
        state = go_live(strategy="ibs_reversion", instrument="QQQ.NASDAQ", params=params,
                        i_understand=LIVE_ACCOUNT, for_seconds=15, return_state=True)
        outcome = state.result()
        live_ledger = controller.sim("live").ledger
        paper_up = controller.is_up("paper")
    finally:
        controller.close()
        use_controller(None)

    # Assert
    assert traded.is_set()
    assert (outcome["mode"], outcome["status"], outcome["reason"]) == ("live", "stopped", "ran for its 15 s")
    assert [t["side"] for t in outcome["trades"]] == ["BUY"]
    assert [r["kind"] for r in live_ledger] == ["place"]
    assert paper_up is False
    actions = [r.action for r in audit.list_rows(store=open_store(), limit=200)]
    for expected in ("gateway.swap", "confirmation.accepted", "session.start", "order.intent", "order.filled",
                     "session.stopped"):
        assert expected in actions
    assert actions.index("gateway.swap") < actions.index("confirmation.accepted") < actions.index("session.start")

    markdown = read_artifact(state.state_details.flow_run_id, "go-live-session")
    assert "REAL MONEY" in markdown and "U***4567" in markdown and LIVE_ACCOUNT not in markdown
    assert "ran for its 15 s" in markdown and "| BUY |" in markdown
    # The session's telemetry went to the flow's own Prefect API (its follower thread shares the
    # flow's settings), not to an ephemeral server of the thread's own.
    telemetry = run_artifacts(state.state_details.flow_run_id).get(artifact_key("live", outcome["session_id"]), "")
    assert "REAL MONEY" in telemetry and "Session ended: **stopped**" in telemetry, telemetry


PAUSED_RUN = """
from flows.go_live import go_live
go_live(strategy="ibs_reversion", instrument="QQQ.NASDAQ", for_seconds=3, confirm_timeout_s=120)
"""


def test_pause_asks_again_on_a_wrong_id_and_resumes_on_the_right_one(live_env: dict[str, str], sim_factory) -> None:
    # Arrange: the live gateway is a simulator this test runs; the flow only verifies gateways.
    from prefect.client.orchestration import get_client

    sim_factory(mode="live", account=LIVE_ACCOUNT, port=int(live_env["ATS_IB_LIVE_PORT"]))
    env = {**os.environ, **live_env, "ATS_GATEWAY_CONTROLLER": "external"}
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_RUN], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    async def paused_run(client, after: int):  # noqa: ANN001, ANN202
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
        from prefect.client.schemas.objects import StateType

        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
        for run in runs:
            if run.state.state_details.pause_key and run.state.state_details.pause_key != after:
                return run
        return None

    async def drive() -> list[str]:
        import asyncio

        from prefect.flow_runs import aresume_flow_run

        seen = []
        async with get_client() as client:
            keys = None
            for answer in ("U9999999", LIVE_ACCOUNT):
                for _ in range(600):
                    run = await paused_run(client, keys)
                    if run is not None:
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise TimeoutError("the go-live run never paused for input")
                keys = run.state.state_details.pause_key
                seen.append(run.state.name)
                await aresume_flow_run(run.id, run_input={"account_id": answer, "operator": "bob@desk"})
        return seen

    try:
        import asyncio

        # Act
        paused = asyncio.run(drive())
        output, _ = proc.communicate(timeout=180)
    finally:
        reap(proc)

    # Assert
    assert proc.returncode == 0, output[-3000:]
    assert paused == ["Paused", "Paused"]
    rows = audit.list_rows(store=open_store(), limit=200)
    mismatch = [r for r in rows if r.action == "confirmation.mismatch"]
    accepted = [r for r in rows if r.action == "confirmation.accepted"]
    assert [(r.actor, r.payload_obj()["typed"]) for r in mismatch] == [("bob@desk", "U***9999")]
    assert [(r.actor, r.payload_obj()["how"], r.payload_obj()["attempt"]) for r in accepted] == [("bob@desk", "prefect-ui", 2)]
    [session] = list_sessions("live", store=open_store())
    assert session.status == "stopped"

"""The ``kill-switch`` deployment, served on a real Prefect server: a run latches the kill switch
exactly as ``ats kill`` does (the running paper session halts, its resting order is cancelled at
the broker, new sessions are refused), audited with the operator typed in the run's form; a
clear run unlatches it (a reason required); a bad operator name latches nothing."""

from __future__ import annotations

import asyncio
import json

import pytest
from flow_support import (
    deployment_named,
    final_state_of,
    serve_paper,
    served_store,
    start_paper_run,
)
from runner_support import wait_until

from ats.governance import audit, killswitch

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def served(prefect_server, tmp_path_factory: pytest.TempPathFactory):
    with serve_paper(prefect_server, tmp_path_factory.mktemp("served-kill")) as serving:
        yield serving


def _run_kill_switch(parameters: dict):  # noqa: ANN202
    """A run of the served kill-switch deployment with ``parameters``, to its final state."""
    from prefect.client.orchestration import get_client

    async def run():  # noqa: ANN202
        async with get_client() as client:
            deployment = await deployment_named(client, "kill-switch/kill-switch")
            created = await client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
            return created, await final_state_of(client, created.id)

    return asyncio.run(run())


def _rows(store, action: str) -> list:  # noqa: ANN001
    return audit.list_rows(action=action, store=store, limit=100)


def test_a_kill_switch_run_halts_the_running_session_and_a_clear_run_unlatches(
        served, prefect_api: str, sim_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: a served paper session trading, a limit order resting at the broker.
    from prefect.client.schemas.objects import StateType

    from ats.governance.sessions import list_sessions

    monkeypatch.setenv("ATS_AUDIT_KEY_FILE", served["env"]["ATS_AUDIT_KEY_FILE"])  # one key per audit log
    store = served_store(served)
    session_run, sim = start_paper_run(served, sim_factory)
    wait_until(lambda: bool(list_sessions("paper", store=store)), what="the session row")

    # Act: the kill switch from the Prefect UI, then the clear.
    kill_run, kill_state = _run_kill_switch({"operator": "alice@desk", "mode": "paper", "reason": "runaway orders"})
    wait_until(lambda: list_sessions("paper", store=store)[0].status != "running", timeout=60,
               what="the session to end")
    latched = killswitch.latched("paper", store=store)
    clear_run, clear_state = _run_kill_switch({"operator": "bob@desk", "action": "clear", "mode": "paper",
                                               "reason": "orders checked, safe to trade"})

    # Assert: halted as by `ats kill`: the order cancelled at the broker, the session killed.
    [session] = list_sessions("paper", store=store)
    assert kill_state.type == StateType.COMPLETED, kill_state.message
    assert (session.status, session.flow_run_id) == ("killed", str(session_run.id)), session.reason
    assert "alice@desk" in session.reason and "runaway orders" in session.reason
    assert [r["kind"] for r in sim.ledger] == ["place", "cancel"]
    assert (latched.actor, latched.reason, latched.mode) == ("alice@desk", "runaway orders", "paper")
    [latch_row] = _rows(store, "kill.latch")
    assert (latch_row.actor, latch_row.subject) == ("alice@desk", "paper")
    assert json.loads(latch_row.payload)["via"] == f"prefect kill-switch run {kill_run.id}"
    # …and cleared as by `ats kill --clear`, audited with the other operator.
    assert clear_state.type == StateType.COMPLETED, clear_state.message
    assert killswitch.latched("paper", store=store) is None
    [clear_row] = _rows(store, "kill.clear")
    assert clear_row.actor == "bob@desk"
    assert json.loads(clear_row.payload)["reason"] == "orders checked, safe to trade"
    assert json.loads(clear_row.payload)["via"] == f"prefect kill-switch run {clear_run.id}"


@pytest.mark.parametrize("parameters", [
    {"operator": "   ", "mode": "paper", "reason": "blank operator"},
    {"operator": "mallory\n2026-12-02 kill.clear", "mode": "paper", "reason": "a forged log line"},
    {"operator": "alice@desk", "reason": "no mode and no session"},
    {"operator": "alice@desk", "action": "clear", "mode": "paper"},  # a clear without a reason
], ids=["blank-operator", "control-characters", "no-target", "clear-without-reason"])
def test_a_kill_switch_run_with_bad_input_fails_and_changes_nothing(served, prefect_api: str,
                                                                    parameters: dict) -> None:
    # Arrange
    from prefect.client.schemas.objects import StateType

    store = served_store(served)
    before = [(r.seq, r.action) for r in audit.list_rows(store=store, limit=10_000)]
    latched_before = killswitch.latched("paper", store=store)

    # Act
    _run, state = _run_kill_switch(parameters)

    # Assert
    assert state.type == StateType.FAILED, state
    assert killswitch.latched("paper", store=store) == latched_before
    after = [(r.seq, r.action) for r in audit.list_rows(store=store, limit=10_000)]
    assert [a for a in after if a not in before and a[1].startswith("kill.")] == []

"""A served paper session follows its flow run: Suspend, Cancel, a forced Failed or Crashed halt it
(node stopped, the resting order cancelled at the broker, the session not running) and the run
ends as the session did; while it runs, the run shows its telemetry, refreshed."""

from __future__ import annotations

import asyncio
import json

import pytest
from flow_support import final_state_of, serve_paper, served_store, start_paper_run
from runner_support import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served_paper(prefect_server, tmp_path_factory: pytest.TempPathFactory):
    with serve_paper(prefect_server, tmp_path_factory.mktemp("served-paper")) as serving:
        yield serving


def _session_of(served, run):  # noqa: ANN001, ANN202
    from ats.governance.sessions import list_sessions

    found = [s for s in list_sessions("paper", store=served_store(served)) if s.flow_run_id == str(run.id)]
    return found[0] if found else None


def _set_state(run_id, state) -> None:  # noqa: ANN001
    from prefect.client.orchestration import get_client

    async def set_it() -> None:
        async with get_client() as client:
            await client.set_flow_run_state(run_id, state, force=True)

    asyncio.run(set_it())


def _final_state(run_id, other_than: str | None = None):  # noqa: ANN001, ANN202
    """The run's final state (and its history, for the assertion message)."""
    from prefect.client.orchestration import get_client

    async def read():  # noqa: ANN202
        async with get_client() as client:
            final = await final_state_of(client, run_id, other_than=other_than)
            history = [(s.name, s.timestamp.strftime("%H:%M:%S.%f"))
                       for s in await client.read_flow_run_states(run_id)]
            return final, history

    return asyncio.run(read())


def _states():  # noqa: ANN202
    from prefect.states import Cancelling, Crashed, Failed, Paused, Suspended

    return {"Suspended": lambda: Suspended(timeout=3600), "Paused": lambda: Paused(timeout=3600),
            "Cancelling": Cancelling, "Failed": lambda: Failed(message="forced through the API"),
            "Crashed": lambda: Crashed(message="forced through the API")}


@pytest.mark.parametrize("forced", ["Suspended", "Cancelling", "Failed", "Crashed"])
def test_a_state_set_on_the_running_run_halts_the_session_and_the_run_ends_cancelled(
        served_paper, prefect_api: str, sim_factory, forced: str) -> None:
    # Arrange
    from prefect.client.schemas.objects import StateType

    from ats.governance import audit

    run, sim = start_paper_run(served_paper, sim_factory)
    wait_until(lambda: _session_of(served_paper, run) is not None, what="the session row")

    # Act: what the Prefect UI's Suspend / Cancel buttons, or an API call, do.
    _set_state(run.id, _states()[forced]())
    wait_until(lambda: _session_of(served_paper, run).status != "running", timeout=60, what="the session to end")
    state, history = _final_state(run.id, other_than=forced)

    # Assert: halted through the kill-switch path, the order cancelled, the run ended as the session.
    session = _session_of(served_paper, run)
    assert session.status == "killed", session.reason
    assert [r["kind"] for r in sim.ledger] == ["place", "cancel"]
    assert sim.snapshot()["open_orders"] == []
    store = served_store(served_paper)
    halted = [r for r in audit.list_rows(action="session.halted", store=store, limit=1000) if r.subject == session.id]
    assert len(halted) == 1
    payload = json.loads(halted[0].payload)
    cause = payload.get("flow_run_state") or payload["reason"]
    # A cancel reaches a served run twice: the runner's SIGTERM and the session's own read of the state.
    assert forced in cause or (forced == "Cancelling" and "SIGTERM" in cause), payload
    assert state.type == StateType.CANCELLED, history


def test_the_run_shows_the_running_sessions_telemetry_refreshed(served_paper, prefect_api: str,
                                                                  sim_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.objects import StateType

    from ats.governance import killswitch
    from ats.trading.run_link import artifact_key

    monkeypatch.setenv("ATS_AUDIT_KEY_FILE", served_paper["env"]["ATS_AUDIT_KEY_FILE"])  # one key per audit log
    run, sim = start_paper_run(served_paper, sim_factory)
    wait_until(lambda: _session_of(served_paper, run) is not None, what="the session row")
    key = artifact_key("paper", _session_of(served_paper, run).id)

    async def read_telemetry() -> str | None:
        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            return found[0].data if found else None

    def telemetry() -> str | None:
        return asyncio.run(read_telemetry())

    # Act: read the artifact while the session runs (once it shows the resting order), then
    # again once it changed.
    wait_until(lambda: "| **open orders** | 1 |" in (telemetry() or ""), timeout=60,
               what="the telemetry artifact with the resting order")
    first = telemetry()
    wait_until(lambda: telemetry() != first, timeout=60, what="the telemetry artifact to change")
    second = telemetry()
    running_then = _session_of(served_paper, run).status
    killswitch.latch(["paper"], "end of the telemetry test", "test", store=served_store(served_paper))
    state, history = _final_state(run.id)
    killswitch.clear("paper", "test over", "test", store=served_store(served_paper))

    # Assert
    assert running_then == "running"
    for text in (first, second):
        assert "| **connection** | connected |" in text
        assert "| **trading state** | ACTIVE |" in text
        assert "| **open orders** | 1 |" in text
        assert "| **orders sent / denied** | 1 / 0" in text
        assert "**time left**" in text and "**last bar**" in text and "**realised PnL**" in text
    assert state.type == StateType.CANCELLED, history  # killed by the kill switch → Cancelled

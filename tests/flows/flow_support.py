"""Helpers for flow tests: environments, preconditions, reading runs back from the server."""

from __future__ import annotations

from ats import approvals, ladder
from ats.store import open_store
from ats.strategies import get_strategy

LIVE_ACCOUNT = "U1234567"


def pass_paper_rung(strategy: str = "ibs_reversion", instrument: str = "QQQ.NASDAQ") -> None:
    ladder.record_verdict("paper", strategy, instrument, passed=True, reasons=["test setup"], metrics={},
                          params={}, data_start=None, data_end=None,
                          fingerprint=get_strategy(strategy).fingerprint(), actor="test", store=open_store())


def approve(strategy: str = "ibs_reversion", instrument: str = "QQQ.NASDAQ") -> None:
    approvals.approve_live(strategy, instrument, "flow test", "alice", store=open_store())


def reload_settings() -> None:
    from ats.settings import get_settings

    get_settings.cache_clear()


def read_artifact(flow_run_id) -> str:  # noqa: ANN001
    """The markdown of the (first) artifact a flow run created, read back from the server."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read() -> str:
        async with get_client() as client:
            found = await client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
            return found[0].data

    return asyncio.run(read())

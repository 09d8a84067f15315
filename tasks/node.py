"""The long-running task: the Nautilus trading node for one session.

Called directly from the flow (never ``.submit()``): it must run on the flow's main thread, where
Nautilus installs its SIGTERM/SIGINT handlers — a cancel in the Prefect UI sends SIGTERM to a
served run, which takes the kill-switch path (halt, cancel orders, stop, session killed).
"""

from __future__ import annotations

from typing import Any

from prefect import task


@task(name="run-trading-node", retries=0, log_prints=True, cache_policy=None)
def run_trading_node(mode: str, sleeves: list[dict[str, Any]], account: str, until: str | None = None,
                     flow_run_id: str | None = None) -> dict[str, Any]:
    """Run the node until its stop time, the kill switch or a cancel; return the session outcome."""
    from ats.runner import SessionRequest, run_session
    from ats.settings import get_settings
    from ats.sleeves import Sleeve
    from ats.store import open_store

    settings = get_settings()
    request = SessionRequest(mode, [Sleeve(**s) for s in sleeves], until=until, flow_run_id=flow_run_id,
                             log_dir=settings.data_dir / "logs")
    outcome = run_session(request, settings, open_store(settings.resolved_database_url), account=account)
    print(f"session {outcome.session_id} {outcome.status}: {outcome.reason}")
    return outcome.as_dict()

"""The long-running task: the Nautilus trading node for one session.

Called directly from the flow (never ``.submit()``): it must run on the flow's main thread, where
Nautilus installs its SIGTERM/SIGINT handlers — a cancel in the Prefect UI sends SIGTERM to a
served run, which takes the kill-switch path (halt, cancel orders, stop, session killed).
The session also follows the flow run (:mod:`ats.trading.run_link`): any state but Running set in the
UI or the API (Suspend, a forced Failed or Crashed, a cancel of a run nobody serves) halts it
the same way, and the run page shows the session's telemetry while it runs.
"""

from __future__ import annotations

from typing import Any

from prefect import task


@task(name="run-trading-node", retries=0, log_prints=True, cache_policy=None)
def run_trading_node(mode: str, sleeves: list[dict[str, Any]], account: str, until: str | None = None,
                     flow_run_id: str | None = None, for_seconds: float | None = None) -> dict[str, Any]:
    """Run the node until its stop time (or ``for_seconds`` after it runs), the kill switch or a cancel."""
    from prefect.runtime import deployment, task_run

    from ats.core.settings import get_settings
    from ats.core.sleeves import Sleeve
    from ats.store import open_store
    from ats.trading.run_link import RunLink, current_api_url, end_run, final_state
    from ats.trading.runner import SessionRequest, run_session

    settings = get_settings()
    request = SessionRequest(mode, [Sleeve(**s) for s in sleeves], until=until, for_seconds=for_seconds,
                             flow_run_id=flow_run_id, log_dir=settings.data_dir / "logs",
                             run_link=(RunLink(flow_run_id, task_run.id, api_url=current_api_url())
                                       if flow_run_id else None),
                             startup_deadline_s=settings.session.startup_timeout_seconds,
                             # the flow's gateway swap started this process's simulator
                             embedded_simulator=settings.gateway.controller == "sim")
    outcome = run_session(request, settings, open_store(settings.resolved_database_url), account=account)
    message = f"session {outcome.session_id} {outcome.status}: {outcome.reason}"
    print(message)
    if request.run_link is not None:
        request.run_link.finish(outcome.session_id, mode, outcome.status, outcome.reason)
        if deployment.id:
            # A run set Suspended/Failed/Crashed/Cancelling in the UI ends here as its session did:
            # Prefect's engine stops a run it sees suspended at the next task boundary.
            end_run(flow_run_id, final_state(outcome.as_dict(), f"{mode} {message}"))
    return outcome.as_dict()

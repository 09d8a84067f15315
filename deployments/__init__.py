"""What ``ats serve`` (or ``python -m deployments``) serves: the flows with their schedules.
``ats deploy --pool NAME`` registers the same ones to a work pool (:mod:`deployments.work_pool`).

* ``paper-session`` — weekdays at 09:25 America/New_York on exchange days only: an RRULE with an
  EXDATE for every NYSE holiday of the next two years, from the ``exchange_calendars`` package
  (no hand-written holiday list); it runs until the close (early closes included).  Serving
  again (after a restart) recomputes the holidays.
* ``go-live`` — only when ``ATS_ENABLE_LIVE_TRADING=true`` (otherwise not registered at all: no
  Live tab); tagged ``real-money``; one run at a time (a second run is cancelled at once, not
  queued); unscheduled: started from the Prefect UI, confirmed in its pause form.
* ``research-ladder`` — nightly at 02:00 America/New_York.
* ``gateway-health`` — one long-running watch run a day (00:00 America/New_York, and one at once
  when ``serve`` starts) probing every ``ATS_HEALTH_INTERVAL_SECONDS`` (3 s); a store lease keeps
  two runs from both probing (see ``flows.gateway_health``).
* ``kill-switch`` — unscheduled: the kill switch from the UI (mode or session, reason; or clear),
  exactly like ``ats kill`` and audited with the operator's name typed in the run form
  (``flows.kill_switch``).
* ``audit-anchor`` — hourly: the audit log's head published outside the database (apprise and
  the anchor file), see ``flows.audit_anchor``.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

    from ats.core.settings import Settings

NEW_YORK = "America/New_York"
PAPER_SESSION_TIME = dt.time(9, 25)
HOLIDAY_HORIZON_DAYS = 730


def exchange_holidays(start: dt.date, days: int = HOLIDAY_HORIZON_DAYS, exchange: str = "XNYS") -> list[dt.date]:
    """Weekdays in ``[start, start + days]`` on which ``exchange`` does not trade."""
    import exchange_calendars as xcals
    import pandas as pd

    first, last = pd.Timestamp(start), pd.Timestamp(start) + pd.Timedelta(days=days)
    calendar = xcals.get_calendar(exchange, start=first - pd.Timedelta(days=7), end=last + pd.Timedelta(days=7))
    sessions = set(calendar.sessions_in_range(first, last))
    return [d.date() for d in pd.bdate_range(first, last) if d not in sessions]


def paper_session_rrule(today: dt.date | None = None) -> str:
    """RRULE: weekdays at 09:25 New York time, with an EXDATE for every exchange holiday."""
    today = today or dt.datetime.now(dt.UTC).date()
    at = PAPER_SESSION_TIME.strftime("%H%M%S")
    lines = [f"DTSTART;TZID={NEW_YORK}:{today:%Y%m%d}T{at}", "RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"]
    holidays = exchange_holidays(today)
    if holidays:
        lines.append(f"EXDATE;TZID={NEW_YORK}:" + ",".join(f"{d:%Y%m%d}T{at}" for d in holidays))
    return "\n".join(lines)


def build_deployments(settings: Settings | None = None, today: dt.date | None = None) -> list[RunnerDeployment]:
    """The RunnerDeployments to serve with these settings."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron, RRule

    from flows.audit_anchor import DEPLOYMENT_NAME as AUDIT_ANCHOR
    from flows.audit_anchor import SCHEDULE_CRON, audit_anchor
    from flows.gateway_health import to_deployment as gateway_health_deployment
    from flows.kill_switch import to_deployment as kill_switch_deployment
    from flows.paper_session import paper_session
    from flows.research_ladder import research_ladder

    if settings is None:
        from ats.core.settings import get_settings

        settings = get_settings()
    one_at_a_time = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    deployments = [
        paper_session.to_deployment(
            name="paper-session", schedules=[RRule(paper_session_rrule(today), timezone=NEW_YORK)],
            concurrency_limit=one_at_a_time, tags=["paper"],
            description="Paper tab: a paper session on exchange days, 09:25 New York until the close."),
        research_ladder.to_deployment(
            name="research-ladder", schedules=[Cron("0 2 * * *", timezone=NEW_YORK)],
            concurrency_limit=one_at_a_time, tags=["research"],
            description="Nightly backtest rung and paper-rung judgement."),
        gateway_health_deployment(),
        kill_switch_deployment(),
        audit_anchor.to_deployment(
            name=AUDIT_ANCHOR, schedules=[Cron(SCHEDULE_CRON, timezone=NEW_YORK)],
            concurrency_limit=one_at_a_time, tags=["audit"],
            description="Publish the audit log's head outside the database (apprise, anchor file)."),
    ]
    if settings.enable_live_trading:
        from flows.go_live import go_live

        deployments.append(go_live.to_deployment(
            name="go-live", tags=["real-money"], concurrency_limit=one_at_a_time,
            description="Live tab — REAL MONEY: every gate, gateway swap, typed confirmation, the node."))
    # to_deployment is typed "or a coroutine" (async_dispatch); called here, outside an event loop, it returns the deployment.
    return cast("list[RunnerDeployment]", deployments)


def serve_all(settings: Settings | None = None) -> None:
    """Serve every deployment until interrupted (SIGINT waits for running runs: cancel them first).

    A gateway-health watch run is started at once (:func:`flows.gateway_health.resume_watch`),
    so the watch resumes after a restart instead of at the next midnight."""
    import threading

    from prefect import serve
    from prefect.settings import PREFECT_API_URL

    from deployments.work_pool import prefect_api_errors
    from flows.gateway_health import resume_watch

    deployments = build_deployments(settings)
    threading.Thread(target=resume_watch, name="resume-gateway-watch", daemon=True).start()
    with prefect_api_errors(str(PREFECT_API_URL.value() or "(a temporary local server)")):
        serve(*deployments)

"""What ``ats serve`` (or ``python -m deployments``) serves: the flows with their schedules.

* ``paper-session`` — weekdays at 09:25 America/New_York on exchange days only: an RRULE with an
  EXDATE for every NYSE holiday of the next two years, from the ``exchange_calendars`` package
  (no hand-written holiday list); it runs until the close (early closes included).  Serving
  again (after a restart) recomputes the holidays.
* ``go-live`` — only when ``ATS_ENABLE_LIVE_TRADING=true`` (otherwise not registered at all: no
  Live tab); tagged ``real-money``; one run at a time (a second run is cancelled at once, not
  queued); unscheduled: started from the Prefect UI, confirmed in its pause form.
* ``research-ladder`` — nightly at 02:00 America/New_York.
* ``gateway-health`` — every ``ATS_HEALTH_INTERVAL_SECONDS`` (30 s).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

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


def build_deployments(settings: Any = None, today: dt.date | None = None) -> list:
    """The RunnerDeployments to serve with these settings."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron, RRule

    from flows.gateway_health import to_deployment as gateway_health_deployment
    from flows.paper_session import paper_session
    from flows.research_ladder import research_ladder

    if settings is None:
        from ats.settings import get_settings

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
    ]
    if settings.enable_live_trading:
        from flows.go_live import go_live

        deployments.append(go_live.to_deployment(
            name="go-live", tags=["real-money"], concurrency_limit=one_at_a_time,
            description="Live tab — REAL MONEY: every gate, gateway swap, typed confirmation, the node."))
    return deployments


def serve_all(settings: Any = None) -> None:
    """Serve every deployment until interrupted (SIGINT waits for running runs: cancel them first)."""
    from prefect import serve

    serve(*build_deployments(settings))

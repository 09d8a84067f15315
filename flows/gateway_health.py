"""The ``gateway-health`` flow: one long-running watch of the gateway that should be up.

A run probes every ``ATS_HEALTH_INTERVAL_SECONDS`` (3 s) until the next run of the day takes over
(the next midnight America/New_York, plus two minutes of overlap) — not a flow run per probe:
2,880 runs a day in Prefect's database at one probe every 30 s became one or two a day.  So an
outage is alerted within seconds (K=2 failed probes: 3–6 s after it begins) and a recovery within
one interval.  All the logic is in :func:`ats.gateway.health.watch_gateway`: one check per tick
(:func:`~ats.gateway.health.run_health_check`, the same state machine as ``ats gateway check``
and the sessions' own monitors), only by the holder of a store lease, so a second run at the
same time — the next day's run during the overlap, one started when ``ats serve`` restarts —
stands by and takes over when the first ends or dies (its lease expires after
:func:`~ats.gateway.health.lease_ttl`, ~30 s).

Scheduled daily at 00:00 America/New_York by :func:`to_deployment`, without a Prefect
concurrency limit (the overlap needs two runs at once; the lease keeps them from both probing),
and ``ats serve`` starts one at once when it starts (:func:`deployments.serve_all`), so the watch
resumes after a restart instead of at the next midnight.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from prefect import flow

from tasks.gateway import watch_gateway_health

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments.runner import RunnerDeployment

DEPLOYMENT_NAME = "gateway-health"
SCHEDULE_CRON = "0 0 * * *"  # daily at midnight, in WATCH_TIMEZONE
WATCH_TIMEZONE = "America/New_York"


@flow(name="gateway-health", log_prints=True, retries=0)
def gateway_health(mode: Literal["auto", "paper", "live"] = "auto",
                   watch_seconds: float | None = None) -> dict[str, Any]:
    """Watch the gateway (``auto``: the one the last swap left up) until the next daily run takes
    over (or for ``watch_seconds``): a probe every few seconds, one alert per outage and one on recovery."""
    return watch_gateway_health(mode, watch_seconds, WATCH_TIMEZONE)


def to_deployment() -> RunnerDeployment:
    """The daily ``gateway-health`` deployment to pass to ``prefect.serve``."""
    from prefect.schedules import Cron

    return gateway_health.to_deployment(
        name=DEPLOYMENT_NAME, schedules=[Cron(SCHEDULE_CRON, timezone=WATCH_TIMEZONE)],
        parameters={"mode": "auto"}, tags=["gateway", "health"],
        description="Watch the IB gateway that should be up all day (a probe every few seconds); "
                    "alert once on broken, once on recovery.")


def resume_watch(deployment_name: str = f"gateway-health/{DEPLOYMENT_NAME}", wait: timedelta = timedelta(minutes=2)) -> FlowRun | None:
    """Start a watch run now (``ats serve`` just started): the watch resumes after a restart
    rather than at the next midnight.  Waits for ``serve`` to register the deployment; returns
    the run, or None if it never appeared."""
    import logging
    import time

    from prefect.deployments import run_deployment

    deadline = time.monotonic() + wait.total_seconds()
    while True:
        try:
            return run_deployment(deployment_name, timeout=0, tags=["resumed"])
        except Exception as exc:  # noqa: BLE001 - not registered yet, the API still starting: try again
            if time.monotonic() > deadline:
                logging.getLogger("ats.deployments").error(
                    "could not start a gateway-health watch run (%s): the next starts at midnight", exc)
                return None
            time.sleep(0.5)


if __name__ == "__main__":
    gateway_health()

"""The ``gateway-health`` flow: one health check of the gateway that should be up.

Scheduled every ``ATS_HEALTH_INTERVAL_SECONDS`` (30 s by default) by the deployments module
through :func:`deployment_spec` / :func:`to_deployment`, one run at a time (a run that would
overlap the previous one is cancelled, not queued).  All the logic is in
:func:`ats.gateway.health.run_health_check`; ``ats gateway check`` runs the same thing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from prefect import flow

from tasks.gateway import check_gateway_health

DEPLOYMENT_NAME = "gateway-health"


@flow(name="gateway-health", log_prints=True, retries=0)
def gateway_health(mode: Literal["auto", "paper", "live"] = "auto") -> dict[str, Any]:
    """Probe the gateway (``auto``: the one the last swap left up), update its health, alert."""
    return check_gateway_health(mode)


def deployment_spec(interval_seconds: float | None = None, mode: str = "auto") -> dict[str, Any]:
    """Name, schedule interval and parameters of the gateway-health deployment.

    ``interval_seconds`` defaults to the health policy's (``ATS_HEALTH_INTERVAL_SECONDS``, 30).
    """
    if interval_seconds is None:
        from ats.gateway.health import HealthPolicy

        interval_seconds = HealthPolicy.from_settings().interval_seconds
    return {"name": DEPLOYMENT_NAME, "interval": timedelta(seconds=interval_seconds),
            "parameters": {"mode": mode}}


def to_deployment(interval_seconds: float | None = None, mode: str = "auto"):  # noqa: ANN201
    """The :class:`prefect.deployments.runner.RunnerDeployment` to pass to ``prefect.serve``."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    spec = deployment_spec(interval_seconds, mode)
    return gateway_health.to_deployment(
        name=spec["name"], interval=spec["interval"], parameters=spec["parameters"],
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        description="Probe the IB gateway that should be up; alert once on broken, once on recovery.",
        tags=["gateway", "health"])


if __name__ == "__main__":
    gateway_health()

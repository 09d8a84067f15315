"""Prefect tasks around the gateway: the day's health watch, one swap.  Each calls one ``ats`` function."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE


@task(name="gateway-health-watch", retries=0, log_prints=True, cache_policy=NO_CACHE)
def watch_gateway_health(mode: str = "auto", watch_seconds: float | None = None,
                         timezone: str = "America/New_York") -> dict[str, Any]:
    """Probe the gateway every few seconds until the next daily run (or ``watch_seconds``); alert on changes."""
    import os
    import socket

    from prefect.runtime import flow_run

    from ats.core.settings import get_settings
    from ats.gateway.health import CheckOutcome, next_watch_end, utcnow, watch_gateway
    from ats.store import open_store

    settings = get_settings()
    # A test-sized watch (watch_seconds) is timed from its first tick, inside watch_gateway.
    until = None if watch_seconds else next_watch_end(utcnow(), timezone)
    holder = f"flow run {flow_run.get_id()} pid {os.getpid()} on {socket.gethostname()}"
    length = f"for {watch_seconds:g} s" if watch_seconds else f"until {until:%Y-%m-%d %H:%M:%S} UTC"
    print(f"watching the {mode} gateway {length}, "
          f"a probe every {settings.health.interval_seconds:g} s (lease holder: {holder})")

    def report(check: CheckOutcome) -> None:
        if check.transition or check.alerts:
            print(f"{check.mode} gateway: probe {check.probe.reason}, state {check.state.state}, "
                  f"alerts {check.alerts or 'none'}")

    outcome = watch_gateway(mode, until=until, for_seconds=watch_seconds or None, holder=holder,
                            settings=settings, store=open_store(settings.resolved_database_url),
                            on_check=report)
    print(f"watch ended ({outcome.ended}): {outcome.probes} probes, alerts {outcome.alerts or 'none'}, "
          f"{outcome.standby_ticks} ticks on standby")
    return outcome.as_dict()


@task(name="gateway-swap", retries=0, timeout_seconds=1200, log_prints=True)
def swap_gateway(to: str) -> dict[str, Any]:
    """Stop the other gateway (verified refused), start ``to`` (verified handshake); audited."""
    from ats.core.settings import get_settings
    from ats.gateway.controllers import get_controller, swap

    settings = get_settings()
    result = swap(to, get_controller(settings), settings, up_timeout=settings.gateway.start_timeout_seconds)
    print(f"gateway swap: {result.stopped} down, {result.to} up in {result.seconds:.1f} s")
    return result.as_dict()

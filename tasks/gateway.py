"""Prefect tasks around the gateway: one health check, one swap.  Each calls one ``ats`` function."""

from __future__ import annotations

from typing import Any

from prefect import task


@task(name="gateway-health-check", retries=0, timeout_seconds=120, log_prints=True)
def check_gateway_health(mode: str = "auto") -> dict[str, Any]:
    """Probe the gateway, update its stored health, send the alerts that are due."""
    from ats.gateway.health import expected_mode, run_health_check
    from ats.settings import get_settings
    from ats.store import open_store

    settings = get_settings()
    store = open_store(settings.resolved_database_url)
    chosen = expected_mode(store=store) if mode == "auto" else mode
    outcome = run_health_check(chosen, store=store, settings=settings)
    state = outcome.state
    print(f"{chosen} gateway: probe {outcome.probe.reason}, state {state.state} "
          f"({state.consecutive_failures} failure(s)), alerts {outcome.alerts or 'none'}, "
          f"{outcome.pending} pending")
    return outcome.as_dict()


@task(name="gateway-swap", retries=0, timeout_seconds=1200, log_prints=True)
def swap_gateway(to: str) -> dict[str, Any]:
    """Stop the other gateway (verified refused), start ``to`` (verified handshake); audited."""
    from ats.gateway.controllers import get_controller, swap
    from ats.settings import get_settings

    settings = get_settings()
    result = swap(to, get_controller(settings), settings, up_timeout=settings.gateway_start_timeout_seconds)
    print(f"gateway swap: {result.stopped} down, {result.to} up in {result.seconds:.1f} s")
    return result.as_dict()

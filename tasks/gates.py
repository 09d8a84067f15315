"""Prefect tasks for the gates: each calls one ``ats.guards.Gates`` method, so the CLI runners and
the flows run exactly the same checks (and audit the same refusals).  Never cached: a retried
run checks every gate again."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ats.guards import Gates


def gates_for(mode: str, sleeves: list[dict[str, Any]]) -> Gates:
    """The Gates of ``mode`` for ``sleeves`` with this process's settings and store."""
    from ats.settings import get_settings
    from ats.sleeves import Sleeve
    from ats.store import open_store

    settings = get_settings()
    return Gates(mode, settings, open_store(settings.resolved_database_url), [Sleeve(**s) for s in sleeves])


@task(name="parse-sleeves", retries=0, cache_policy=NO_CACHE)
def parse_sleeves(strategy: str | None, instrument: str | None, bar_spec: str, params: dict[str, Any] | None,
                  sleeves: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Validate the sleeve(s) against their strategies' configs (bad input fails the run)."""
    import json

    from ats.errors import InputError
    from ats.sleeves import parse_sleeves_json, sleeve_from_args

    if sleeves:
        if strategy or instrument:
            raise InputError("give either sleeves or strategy/instrument, not both")
        return [s.as_dict() for s in parse_sleeves_json(json.dumps(sleeves))]
    return [sleeve_from_args(strategy, instrument, bar_spec, json.dumps(params or {})).as_dict()]


@task(name="check-edition", retries=0, cache_policy=NO_CACHE)
def check_edition(sleeves: list[dict[str, Any]]) -> None:
    """Live trading must be enabled (ATS_ENABLE_LIVE_TRADING=true)."""
    gates_for("live", sleeves).edition()


@task(name="check-account", retries=0, cache_policy=NO_CACHE)
def check_account(mode: str, sleeves: list[dict[str, Any]]) -> str:
    """The mode's account id is set and of the mode's form (paper DU…, live U…)."""
    return gates_for(mode, sleeves).account()


@task(name="check-kill-switch", retries=0, cache_policy=NO_CACHE)
def check_kill_switch(mode: str, sleeves: list[dict[str, Any]]) -> None:
    """The mode's kill switch is not latched."""
    gates_for(mode, sleeves).kill_switch()


@task(name="check-paper-rung", retries=0, cache_policy=NO_CACHE)
def check_paper_rung(sleeves: list[dict[str, Any]]) -> None:
    """Every sleeve's paper rung passed, on the current strategy code."""
    gates_for("live", sleeves).paper_rung()


@task(name="check-approval", retries=0, cache_policy=NO_CACHE)
def check_approval(sleeves: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every sleeve has a current go-live approval (names every one lacking)."""
    return [a.as_dict() for a in gates_for("live", sleeves).approvals()]


@task(name="check-no-other-session", retries=0, cache_policy=NO_CACHE)
def check_no_other_session(mode: str, sleeves: list[dict[str, Any]]) -> None:
    """No session of the other mode is running (paper and live share the IB login)."""
    gates_for(mode, sleeves).no_other_session()


@task(name="check-one-gateway", retries=0, cache_policy=NO_CACHE)
def check_one_gateway(sleeves: list[dict[str, Any]]) -> None:
    """The live port is its own and the paper gateway does not answer."""
    from ats.runner import _paper_gateway_answers

    gates = gates_for("live", sleeves)
    gates.one_gateway(_paper_gateway_answers(gates.settings))


@task(name="confirm-live-account", retries=0, cache_policy=NO_CACHE)
def confirm_live_account(sleeves: list[dict[str, Any]], account: str, i_understand: str) -> None:
    """Typed confirmation given as a parameter: checked like ``--i-understand``."""
    gates_for("live", sleeves).confirm(account, i_understand)

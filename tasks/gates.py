"""Prefect tasks for the gates: the flows walk ``ats.trading.gates``' one sequence step by step
(:func:`run_gates`, a ``check-<gate>`` task run per gate), the CLI runners in one call, so both
run exactly the same checks in the same order (and audit the same refusals).  Never cached: a
retried run checks every gate again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ats.core.settings import Mode
from ats.gateway.identity import GatewayIdentity
from ats.governance.approvals import Approval
from ats.trading.gates import GateResults, Gates


def gates_for(mode: Mode, sleeves: list[dict[str, Any]]) -> Gates:
    """The Gates of ``mode`` for ``sleeves`` with this process's settings and store."""
    from ats.core.settings import get_settings
    from ats.core.sleeves import Sleeve
    from ats.store import open_store

    settings = get_settings()
    return Gates(mode, settings, open_store(settings.resolved_database_url), [Sleeve(**s) for s in sleeves])


@task(name="parse-sleeves", retries=0, cache_policy=NO_CACHE)
def parse_sleeves(strategy: str | None, instrument: str | None, bar_spec: str, params: dict[str, Any] | None,
                  sleeves: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Validate the sleeve(s) against their strategies' configs (bad input fails the run)."""
    import json

    from ats.core.errors import InputError
    from ats.core.sleeves import parse_sleeves_json, sleeve_from_args

    if sleeves:
        if strategy or instrument:
            raise InputError("give either sleeves or strategy/instrument, not both")
        return [s.as_dict() for s in parse_sleeves_json(json.dumps(sleeves))]
    return [sleeve_from_args(strategy, instrument, bar_spec, json.dumps(params or {})).as_dict()]


@task(name="check-gate", retries=0, cache_policy=NO_CACHE)
def check_gate(mode: Mode, step: str, sleeves: list[dict[str, Any]]) -> Any:  # noqa: ANN401 - the gate's finding
    """One gate of the sequence (``ats.trading.gates``), in plain data: the account id for
    ``account``, the approvals for ``approval``, the live gateway's identity for
    ``paper-evidence``, nothing for the others.  The flows name each run ``check-<gate>``."""
    found = gates_for(mode, sleeves).check(step)
    if isinstance(found, list):
        return [approval.as_dict() for approval in found if isinstance(approval, Approval)]
    if isinstance(found, GatewayIdentity):
        return found.as_dict()
    return found


def run_gates(mode: Mode, sleeves: list[dict[str, Any]], *, swap: Callable[[], object],
              confirm: Callable[[GateResults], None] | None = None) -> GateResults:
    """The mode's gate sequence step by step, one ``check-<gate>`` task run per gate."""
    def check(step: str) -> object:
        return check_gate.with_options(name=f"check-{step}")(mode, step, sleeves)

    return gates_for(mode, sleeves).run_sequence(swap=swap, confirm=confirm, check=check)


@task(name="confirm-live-account", retries=0, cache_policy=NO_CACHE)
def confirm_live_account(sleeves: list[dict[str, Any]], account: str, i_understand: str) -> None:
    """Typed confirmation given as a parameter: checked like ``--i-understand``."""
    gates_for("live", sleeves).confirm(account, i_understand)

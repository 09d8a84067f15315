"""The ``kill-switch`` flow: the kill switch from the Prefect UI.

The same two actions as ``ats kill`` and through the same functions (:func:`ats.governance.killswitch.kill`,
:func:`ats.governance.killswitch.clear_mode`), so the store's latch, the audit rows and what a running
session does are identical:

* ``action="kill"`` with ``mode`` (``paper``, ``live`` or ``all``) *or* ``session`` (an id or a
  unique prefix: its mode is latched): the mode's running sessions halt at once (they are woken
  through their local socket when they run on the serving machine, else their poll of the store
  hears it), and no new session of the mode starts until it is cleared.  ``reason`` defaults to
  "operator kill";
* ``action="clear"`` with ``mode`` (``paper`` or ``live``) and a ``reason`` (required: it is the
  decision that trading may resume).

The Prefect UI has no user of its own, so the operator types their name (``operator``, checked
as ``ATS_OPERATOR`` is: 1–200 printable characters); it is the audit actor, and the audit row
says the switch was pulled from this flow run.  Bad input fails the run with one line, before
anything is latched or cleared.  Served unscheduled by ``ats serve`` (``deployments``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from prefect import flow

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

DEPLOYMENT_NAME = "kill-switch"


@flow(name="kill-switch", log_prints=True, retries=0)
def kill_switch(operator: str, action: Literal["kill", "clear"] = "kill",
                mode: Literal["paper", "live", "all"] | None = None, session: str | None = None,
                reason: str | None = None) -> dict[str, Any]:
    """Latch the kill switch (``kill``: a mode, ``all`` or a session's mode) or clear it (``clear``: a mode and a reason)."""
    from prefect.runtime import flow_run

    from ats.core.errors import InputError
    from ats.core.settings import validate_operator
    from tasks.kill_switch import pull_kill_switch

    try:
        operator = validate_operator(operator)
    except ValueError as exc:
        raise InputError(f"operator: {exc}") from None
    if action == "clear" and mode == "all":
        raise InputError("clear needs exactly one mode (paper or live), not all")
    return pull_kill_switch(action, operator, reason, mode, session or None,
                            via=f"prefect kill-switch run {flow_run.get_id()}")


def to_deployment() -> RunnerDeployment:
    """The unscheduled ``kill-switch`` deployment, without a concurrency limit: a kill never waits."""
    return kill_switch.to_deployment(
        name=DEPLOYMENT_NAME, tags=["kill-switch"],
        description="KILL SWITCH: halt the running sessions of a mode (or one session's) at once and latch it; "
                    "or clear it (mode + reason). Same as `ats kill`, audited with the operator's name.")

"""The ``go-live`` flow: every gate, the gateway swap, the typed confirmation, then the node.

paper rung → approval → (no paper session) → gateway swap (paper down, live up) → one gateway →
typed confirmation of the live ``U…`` account id → the trading node (long-running, on this
flow's main thread).  A failed gate fails the run with the gate's message and its audit row.

Confirmation: with ``i_understand`` it is checked like ``--i-understand``; without it the run
pauses with a form in the Prefect UI showing the session summary; the operator types the live
account id (and their name).  A wrong id asks again, at most 3 times, then fails; no answer
within ``confirm_timeout_s`` fails.  Every answer is audited with the operator's name.
One live session at a time: the deployment allows one run (a second is cancelled at once), and
the store refuses a second running live session across processes.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.input import RunInput
from pydantic import Field

from flows._summary import gate_summary_markdown, publish_outcome
from tasks.gates import (
    check_account,
    check_approval,
    check_edition,
    check_kill_switch,
    check_no_other_session,
    check_one_gateway,
    check_paper_rung,
    confirm_live_account,
    gates_for,
    parse_sleeves,
)
from tasks.gateway import swap_gateway
from tasks.node import run_trading_node

MAX_CONFIRM_ATTEMPTS = 3


class LiveConfirmation(RunInput):
    """The Prefect UI form of the typed confirmation."""

    account_id: str = Field(description="Type the live IB account id (U…) to trade REAL MONEY on it.")
    operator: str = Field(description="Your name; recorded in the audit log with the answer.")


def confirm_in_ui(sleeves: list[dict[str, Any]], account: str, summary_md: str, operator: str,
                  timeout_s: int, poll_interval_s: float = 1.0) -> None:
    """Pause for the operator's typed account id; ask again on a mismatch (3 attempts)."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    from ats.errors import GateRefused

    gates = gates_for("live", sleeves)
    for attempt in range(1, MAX_CONFIRM_ATTEMPTS + 1):
        note = "" if attempt == 1 else f"\n\n**Attempt {attempt} of {MAX_CONFIRM_ATTEMPTS}: the last id did not match.**"
        try:
            answer = pause_flow_run(
                wait_for_input=LiveConfirmation.with_initial_data(description=summary_md + note, operator=operator),
                timeout=timeout_s, poll_interval=poll_interval_s)
        except FlowPauseTimeout:
            gates.refuse(GateRefused("confirmation", f"no confirmation within {timeout_s} s",
                                     "start the go-live run again and type the live account id in the form"))
        if gates.confirmation_attempt(account, answer.account_id, "prefect-ui", answer.operator, attempt):
            return
    gates.refuse(GateRefused("confirmation", f"{MAX_CONFIRM_ATTEMPTS} typed ids did not match the live account",
                             "start the go-live run again and type the live account id exactly"))


@flow(name="go-live", log_prints=True, retries=0)
def go_live(strategy: str | None = None, instrument: str | None = None, bar_spec: str = "1-DAY-LAST",
            params: dict[str, Any] | None = None, sleeves: list[dict[str, Any]] | None = None,
            i_understand: str | None = None, until: str | None = None,
            confirm_timeout_s: int = 600) -> dict[str, Any]:
    """Go live (REAL MONEY) with one sleeve or a book of sleeves, behind every gate."""
    from prefect.runtime import flow_run

    from ats.runner import summary_for
    from ats.settings import get_settings

    from ats.runner import resolve_stop_time

    logger = get_run_logger()
    settings = get_settings()
    resolve_stop_time(until)  # a past or missing stop time fails the run before any gate
    book = parse_sleeves(strategy, instrument, bar_spec, params, sleeves)
    check_edition(book)
    account = check_account("live", book)
    check_kill_switch("live", book)
    check_paper_rung(book)
    approvals = check_approval(book)
    check_no_other_session("live", book)
    swap_gateway("live")
    check_one_gateway(book)
    summary = summary_for("live", settings, book, account, approvals, until)
    summary_md = gate_summary_markdown(summary)
    if i_understand is not None:
        confirm_live_account(book, account, i_understand)
    else:
        logger.warning("waiting for the typed confirmation of the live account id in the Prefect UI")
        confirm_in_ui(book, account, summary_md, settings.operator, confirm_timeout_s)
    outcome = run_trading_node("live", book, account, until, str(flow_run.id) if flow_run.id else None)
    return publish_outcome("live", summary, outcome)

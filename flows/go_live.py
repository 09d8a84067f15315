"""The ``go-live`` flow: every gate, the gateway swap, the typed confirmation, then the node.

The live gate sequence of :mod:`ats.trading.gates` (``LIVE_GATES``), one task run per gate:
edition → account → kill switch → paper rung → approval → no paper session → gateway swap
(paper down, live up) → one gateway → paper evidence fits the live gateway (a real one needs a
rung earned on a real gateway) → typed confirmation of the live ``U…`` account id; then the
trading node (long-running, on this flow's main thread).  A failed gate fails the run with the
gate's message and its audit row.

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

from ats.trading.gates import GateResults
from flows._summary import gate_summary_markdown, publish_outcome
from tasks.gates import confirm_live_account, gates_for, parse_sleeves, run_gates
from tasks.gateway import swap_gateway
from tasks.node import run_trading_node

MAX_CONFIRM_ATTEMPTS = 3


class LiveConfirmation(RunInput):
    """The Prefect UI form of the typed confirmation."""

    account_id: str = Field(description="Type the live IB account id (U…) to trade REAL MONEY on it.")
    operator: str = Field(min_length=1, max_length=200,
                          description="Your name; recorded in the audit log with the answer (at most 200 characters).")


def confirm_in_ui(sleeves: list[dict[str, Any]], account: str, summary_md: str, operator: str,
                  timeout_s: int, poll_interval_s: float = 1.0) -> None:
    """Pause for the operator's typed account id; ask again on a mismatch (3 attempts)."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    from ats.core.errors import GateRefused

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
            confirm_timeout_s: int = 600, for_seconds: float | None = None) -> dict[str, Any]:
    """Go live (REAL MONEY) with one sleeve or a book of sleeves, behind every gate.

    ``for_seconds`` runs the session that long from the moment its node is running (instead of
    ``until``); the time spent on the gates, the swap and the confirmation does not count."""
    from prefect.runtime import flow_run

    from ats.core.settings import get_settings
    from ats.trading.stop_time import check_stop_request
    from ats.trading.summary import summary_for

    logger = get_run_logger()
    settings = get_settings()
    # A past --until (or both --until and --for) fails the run before any gate; the default
    # stop (the market close) is resolved when the session starts, after the gates.
    check_stop_request(until, for_seconds)
    book = parse_sleeves(strategy, instrument, bar_spec, params, sleeves)

    def confirm(found: GateResults) -> None:
        summary.update(summary_for("live", settings, book, found.account, found.approvals, until, for_seconds))
        if i_understand is not None:
            confirm_live_account(book, found.account, i_understand)
        else:
            logger.warning("waiting for the typed confirmation of the live account id in the Prefect UI")
            confirm_in_ui(book, found.account, gate_summary_markdown(summary), settings.operator,
                          confirm_timeout_s)

    summary: dict[str, Any] = {}
    account = run_gates("live", book, swap=lambda: swap_gateway("live"), confirm=confirm).account
    outcome = run_trading_node("live", book, account, until, str(flow_run.id) if flow_run.id else None,
                               for_seconds)
    return publish_outcome("live", summary, outcome)

"""The markdown session summary both trading flows end with (and the go-live pause form shows)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ats.trading.run_link import REAL_MONEY_BANNER

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State


def gate_summary_markdown(summary: dict[str, Any]) -> str:
    """What the operator confirms: account (masked), sleeves, params, risk caps, approvals."""
    lines = [REAL_MONEY_BANNER if summary["mode"] == "live" else "# Paper trading session\n",
             f"- **account**: {summary['account']}  ",
             f"- **gateway**: {summary['gateway']}  ",
             f"- **runs until**: {summary['until']}  ",
             f"- **risk caps**: max notional/order {summary['risk_caps']['max_notional_per_order']}, "
             f"submit rate {summary['risk_caps']['max_order_submit_rate']}",
             "", "| strategy | instrument | bar spec | params | approved by | at | note |",
             "|---|---|---|---|---|---|---|"]
    for sleeve in summary["sleeves"]:
        approval = sleeve.get("approval") or {}
        lines.append(f"| {sleeve['strategy']} | {sleeve['instrument']} | {sleeve['bar_spec']} | "
                     f"`{sleeve['params']}` | {approval.get('by', '—')} | {approval.get('at', '—')} | "
                     f"{approval.get('note', '—')} |")
    return "\n".join(lines)


def session_markdown(summary: dict[str, Any], outcome: dict[str, Any]) -> str:
    """The end-of-session artifact: the gate summary plus trades, PnL and how it ended."""
    lines = [gate_summary_markdown(summary), "", "## How it ended",
             f"**{outcome['status']}** — {outcome['reason']}  ", f"session `{outcome['session_id']}`", "",
             f"- realised PnL: {outcome.get('realized_pnl')}  ", f"- unrealised PnL: {outcome.get('unrealized_pnl')}  ",
             f"- orders: {outcome.get('orders')}  ", f"- open positions: {outcome.get('positions')}", "",
             "## Trades", "", "| time | side | quantity | price | instrument |", "|---|---|---|---|---|"]
    for trade in outcome.get("trades", []):
        lines.append(f"| {trade['ts']} | {trade['side']} | {trade['quantity']} | {trade['price']} | {trade['instrument']} |")
    return "\n".join(lines)


def publish_outcome(mode: str, summary: dict[str, Any], outcome: dict[str, Any]) -> State | dict[str, Any]:
    """Attach the session summary as a markdown artifact and end the run as the session ended.

    An errored session fails the run.  A run of a deployment (started from the UI, a schedule,
    the API) ends Cancelled when its session was killed — whether by the kill switch, a cancel,
    or a Suspend/Failed/Crashed set on the running run — and Completed when it stopped, so the
    run page never shows Suspended or Running after the session.  A flow called in-process (the
    demo, a script) returns the outcome dict, as a function does."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.runtime import deployment

    from ats.core.errors import SessionError
    from ats.trading.run_link import final_state

    description = "REAL MONEY live session summary" if mode == "live" else "paper session summary"
    create_markdown_artifact(key=f"{'go-live' if mode == 'live' else 'paper'}-session",
                             markdown=session_markdown(summary, outcome), description=description)
    message = f"{mode} session {outcome['session_id']} {outcome['status']}: {outcome['reason']}"
    if outcome["status"] == "error":
        raise SessionError(f"{mode} session {outcome['session_id']} ended in error: {outcome['reason']}")
    if deployment.id:
        return final_state(outcome, message)  # (a run no longer Running was ended by the node task)
    return outcome

"""The ``paper-session`` flow: the go-live shape for paper (no approval, no confirmation).

account guard (``DU…``) → kill switch → gateway swap (live down, paper up) → the trading node
until the stop time (default: today's close from the exchange calendar, early closes included).
Scheduled weekdays at 09:25 America/New_York on exchange days by the deployments module.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows._summary import publish_outcome
from tasks.gates import check_account, check_kill_switch, check_no_other_session, parse_sleeves
from tasks.gateway import swap_gateway
from tasks.node import run_trading_node


@flow(name="paper-session", log_prints=True, retries=0)
def paper_session(strategy: str | None = "ibs_reversion", instrument: str | None = "QQQ.NASDAQ",
                  bar_spec: str = "1-DAY-LAST", params: dict[str, Any] | None = None,
                  sleeves: list[dict[str, Any]] | None = None, until: str | None = None,
                  swap: bool = True) -> dict[str, Any]:
    """One paper session; ``swap=False`` keeps whatever paper gateway is up as it is."""
    from prefect.runtime import flow_run

    from ats.runner import market_close_today, summary_for
    from ats.settings import get_settings

    settings = get_settings()
    if until is None and market_close_today() is None:
        print("the exchange is closed today: no paper session")
        return {"status": "skipped", "reason": "exchange closed today"}
    book = parse_sleeves(strategy if not sleeves else None, instrument if not sleeves else None,
                         bar_spec, params, sleeves)
    account = check_account("paper", book)
    check_kill_switch("paper", book)
    check_no_other_session("paper", book)
    if swap:
        swap_gateway("paper")
    summary = summary_for("paper", settings, book, account, [], until)
    outcome = run_trading_node("paper", book, account, until, str(flow_run.id) if flow_run.id else None)
    return publish_outcome("paper", summary, outcome)

"""The ``paper-session`` flow: the go-live shape for paper (no approval, no confirmation).

The paper gate sequence of :mod:`ats.trading.gates`: account (``DU…``) → kill switch → no live
session → gateway swap (live down, paper up); then the trading node
until the stop time (default: today's close from the exchange calendar, early closes included).
Scheduled weekdays at 09:25 America/New_York on exchange days by the deployments module.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows._summary import publish_outcome
from tasks.gates import parse_sleeves, run_gates
from tasks.gateway import swap_gateway
from tasks.node import run_trading_node


@flow(name="paper-session", log_prints=True, retries=0)
def paper_session(strategy: str | None = "ibs_reversion", instrument: str | None = "QQQ.NASDAQ",
                  bar_spec: str = "1-DAY-LAST", params: dict[str, Any] | None = None,
                  sleeves: list[dict[str, Any]] | None = None, until: str | None = None,
                  swap: bool = True, for_seconds: float | None = None) -> dict[str, Any]:
    """One paper session; ``swap=False`` keeps whatever paper gateway is up as it is.

    ``for_seconds`` runs the session that long from the moment its node is running (instead of
    ``until``): a slow start never shortens it."""
    from prefect.runtime import flow_run

    from ats.core.settings import get_settings
    from ats.trading.stop_time import check_stop_request, market_close_today
    from ats.trading.summary import summary_for

    settings = get_settings()
    if until or for_seconds is not None:
        check_stop_request(until, for_seconds)  # a past --until, or both, fail before any gate
    if until is None and for_seconds is None and market_close_today() is None:
        print("the exchange is closed today: no paper session")
        return {"status": "skipped", "reason": "exchange closed today"}
    book = parse_sleeves(strategy if not sleeves else None, instrument if not sleeves else None,
                         bar_spec, params, sleeves)
    # The paper gate sequence of ats.trading.gates (PAPER_GATES), a task run per gate, then the swap.
    account = run_gates("paper", book, swap=lambda: swap_gateway("paper") if swap else None).account
    summary = summary_for("paper", settings, book, account, [], until, for_seconds)
    outcome = run_trading_node("paper", book, account, until, str(flow_run.id) if flow_run.id else None,
                               for_seconds)
    return publish_outcome("paper", summary, outcome)

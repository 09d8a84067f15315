"""A real paper session (TradingNode + IB adapter + simulator) trades like the backtest."""

from __future__ import annotations

from pathlib import Path

import pytest
from runner_support import drive_session, session_settings

from ats.core.sleeves import Sleeve
from ats.governance import audit
from ats.governance.sessions import get_session, session_bars_of, session_decisions_of
from ats.research.backtest import run_backtest
from ats.trading.runner import SessionRequest

pytestmark = pytest.mark.slow


def test_paper_session_trades_like_the_backtest_over_the_same_bars(sim_factory, isolated_env: Path) -> None:
    # Arrange: 2024-06-03 onwards, thresholds wide enough to trade within a few weeks.
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    settings = session_settings(sim, isolated_env)
    params = {"buy_threshold": 0.35, "sell_threshold": 0.65}
    request = SessionRequest("paper", [Sleeve("ibs_reversion", "QQQ.NASDAQ", "1-DAY-LAST", params)])

    # Act
    driven = drive_session(sim, settings, request, days=25)

    # Assert
    outcome, store = driven.outcome, driven.store
    assert outcome.status == "stopped", outcome.reason
    bars = session_bars_of(outcome.session_id, "QQQ.NASDAQ", store=store)
    paper = session_decisions_of(outcome.session_id, "QQQ.NASDAQ", store=store)
    replay = run_backtest("ibs_reversion", "QQQ.NASDAQ", params,
                          bars=[(ts[:10], o, h, low, c, v) for ts, o, h, low, c, v in bars])
    assert len(bars) == 25
    assert len(paper) >= 4, "the window should produce several decisions"
    assert paper == [tuple(d) for d in replay.decision_tuples()]
    fills = [row for row in sim.ledger if row["kind"] == "place"]
    assert len(fills) == len(paper)
    assert get_session(outcome.session_id, store=store).status == "stopped"
    actions = [row.action for row in audit.list_rows(store=store, limit=1000)]
    assert actions[0] == "session.start" and actions[-1] == "session.stopped"
    assert actions.count("order.intent") == len(paper) == actions.count("order.filled")
    audit.verify(store)

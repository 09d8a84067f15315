"""The HTML report: self-contained, with the equity and drawdown charts and the tables."""

from __future__ import annotations

import json
import re

from ats.core.settings import load_settings
from ats.research.backtest import run_backtest
from ats.research.ladder_rules import judge_backtest
from ats.research.report import drawdown_series, write_html_report


def test_report_is_self_contained_with_charts_and_trades(tmp_path):
    result = run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, start="2024-01-01", end="2024-12-31")
    verdict = judge_backtest(result, load_settings(env={}, dotenv="/nonexistent"))
    path = write_html_report(result, tmp_path / "out" / "report.html", verdict)
    page = path.read_text()
    assert page.count("<svg") == 2
    assert "Equity (USD)" in page and "Drawdown" in page
    assert not re.search(r"(src|href)=\"?https?://", page)  # no CDN, no network
    assert page.count("<tr><td>") == result.num_trades
    assert f"Verdict: {verdict.verdict}" in page
    json.dumps(result.to_dict())  # the result is JSON-serialisable as is


def test_drawdown_series():
    assert drawdown_series([100, 110, 99, 121]) == [0.0, 0.0, 99 / 110 - 1, 0.0]

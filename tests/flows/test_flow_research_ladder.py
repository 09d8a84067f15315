"""The research-ladder flow: backtest rung and paper rung, the status as an artifact."""

from __future__ import annotations

from pathlib import Path

import pytest
from flow_support import read_artifact

from ats.research import ladder
from ats.store import open_store

pytestmark = pytest.mark.slow


def test_research_ladder_flow_runs_both_rungs_and_attaches_the_status(isolated_env: Path, prefect_api: str) -> None:
    from flows.research_ladder import research_ladder

    state = research_ladder(start="2023-01-01", end="2024-12-31", return_state=True)
    result = state.result()

    markdown = read_artifact(state.state_details.flow_run_id, "research-ladder")
    assert Path(result["report"]).is_file()
    assert result["backtest"]["verdict"]["passed"] is True
    assert result["paper"]["passed"] is False  # no paper session recorded yet
    assert "| backtest | **PASS** |" in markdown and "| paper | **FAIL** |" in markdown
    assert ladder.latest_verdict("paper", "ibs_reversion", "QQQ.NASDAQ", store=open_store()) is not None


def test_research_ladder_flow_sweeps_a_grid_and_attaches_its_best_points(isolated_env: Path, prefect_api: str) -> None:
    from flows.research_ladder import research_ladder

    state = research_ladder(start="2021-01-01", end="2024-12-31", grid={"buy_threshold": [0.1, 0.2]},
                            train_until="2023-12-31", return_state=True)
    result = state.result()

    markdown = read_artifact(state.state_details.flow_run_id, "research-ladder")
    swept = result["sweep"]
    assert {p["params"]["buy_threshold"] for p in swept["points"]} == {0.1, 0.2}
    assert swept["train_until"] == "2023-12-31" and swept["out_of_sample"]["start"] == "2024-01-02"
    assert f"## Sweep #{swept['sweep_id']}: 2 points by sharpe" in markdown
    assert "Best point out of sample (2024-01-02 to 2024-12-31)" in markdown
    assert Path(result["report"].replace("backtest-", "sweep-")).is_file()

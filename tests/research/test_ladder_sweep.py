"""`ats ladder sweep`: every point is exactly a single `ats ladder run`, stored with its grid and
fingerprint, ranked by the chosen metric, honest about being in-sample, and refused cleanly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ats.research.backtest import run_backtest
from ats.research.report import render_sweep_heatmap
from ats.research.sweep import SweepPoint, load_sweep, parse_grid, rank, run_sweep
from ats.store import open_store
from ats.store.models import sweeps
from ats.strategies import get_strategy
from support import run_ats

RANGE = ["--start", "2022-01-01", "--end", "2024-12-31"]
GRID = {"buy_threshold": [0.1, 0.25], "sell_threshold": [0.7, 0.85]}


@pytest.mark.timeout(480)  # a 4-point sweep on 2 processes, then 4 single ladder runs: 5 CLI processes of backtests
def test_each_sweep_point_is_what_a_single_ladder_run_of_it_gives(isolated_env: Path) -> None:
    heatmap = isolated_env.parent / "sweep.html"

    swept = run_ats("ladder", "sweep", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", *RANGE,
                    "--grid", json.dumps(GRID), "--processes", "2", "--sort", "total_return",
                    "--heatmap", str(heatmap), "--json")

    assert swept.returncode == 0, swept.stderr
    sweep = json.loads(swept.stdout)
    assert len(sweep["points"]) == 4 and sweep["processes"] == 2
    for point in sweep["points"]:
        single = run_ats("ladder", "run", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", *RANGE,
                         "--params", json.dumps(point["params"]), "--json")
        assert single.returncode in (0, 1), single.stderr
        data = json.loads(single.stdout)
        assert point["metrics"] == {key: data[key] for key in point["metrics"]}
    returns = [p["metrics"]["total_return"] for p in sweep["points"]]
    assert returns == sorted(returns, reverse=True)
    assert {json.dumps(p["params"], sort_keys=True) for p in sweep["points"]} == {
        json.dumps({"buy_threshold": b, "sell_threshold": s}, sort_keys=True)
        for b in GRID["buy_threshold"] for s in GRID["sell_threshold"]}
    assert "in-sample" in sweep["warnings"][0]
    assert "<table" in heatmap.read_text()


def test_a_sweep_is_stored_with_its_grid_fingerprint_and_points(isolated_env: Path) -> None:
    result = run_ats("ladder", "sweep", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ",
                     "--start", "2024-01-01", "--grid", '{"buy_threshold": [0.1, 0.2, 0.3]}', "--processes", "1")

    assert result.returncode == 0, result.stderr
    assert "in-sample" in result.stdout and "--train-until" in result.stdout
    stored = load_sweep(1, store=open_store())
    assert stored["grid"] == {"buy_threshold": [0.1, 0.2, 0.3]}
    assert stored["fingerprint"] == get_strategy("ibs_reversion").fingerprint()
    assert (stored["data_start"], stored["data_end"], stored["train_until"]) == ("2024-01-02", "2024-12-31", None)
    assert [p["params"] for p in stored["points"]][0] == stored["best"]["params"]
    assert len(stored["points"]) == 3 and stored["sort_by"] == "sharpe"


def test_walk_forward_reports_the_chosen_point_out_of_sample(isolated_env: Path) -> None:
    result = run_sweep("ibs_reversion", "QQQ.NASDAQ", GRID, data_dir=isolated_env, start="2018-01-01",
                       train_until="2021-12-31", processes=1)

    assert (result.data_start, result.data_end, result.train_until) == ("2018-01-02", "2021-12-31", "2021-12-31")
    honest = run_backtest("ibs_reversion", "QQQ.NASDAQ", result.best.params, start="2022-01-01",
                          data_dir=isolated_env)
    assert result.out_of_sample == {"start": honest.start, "end": honest.end, "metrics": honest.metrics()}
    in_sample = run_backtest("ibs_reversion", "QQQ.NASDAQ", result.best.params, start="2018-01-01",
                             end="2021-12-31", data_dir=isolated_env)
    assert result.best.metrics == in_sample.metrics()
    assert result.warnings == []


@pytest.mark.parametrize(("grid", "message"), [
    ('{"buy_threshold": [0.1, 0.9], "sell_threshold": [0.8]}',
     'grid point {"buy_threshold": 0.9, "sell_threshold": 0.8}: params for ibs_reversion: buy_threshold (0.9) '
     "must be below sell_threshold (0.8) (1 of 2 points are invalid; narrow the grid)"),
    ('{"buy_treshold": [0.1]}', "grid: unknown parameter 'buy_treshold' for ibs_reversion (did you mean buy_threshold?)"),
    ('{"buy_threshold": 0.1}', "grid parameter 'buy_threshold' must be a non-empty list of values, got 0.1"),
    ('{"buy_threshold": []}', "grid parameter 'buy_threshold' must be a non-empty list of values, got []"),
    ("{}", "the grid is empty"),
    ('{"buy_threshold": [0.1, 0.1]}', "grid parameter 'buy_threshold' lists 0.1 more than once"),
    ("{not json", "the grid are not valid JSON"),
])
def test_a_bad_grid_is_refused_in_one_line_before_any_work(isolated_env: Path, grid: str, message: str) -> None:
    result = run_ats("ladder", "sweep", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", "--grid", grid)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert result.stdout == ""
    with open_store().read() as conn:
        assert conn.execute(select(func.count()).select_from(sweeps)).scalar() == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--sort", "profit"], "unknown sort metric 'profit'"),
    (["--train-until", "2030-01-01"], "no bars after --train-until 2030-01-01"),
    (["--train-until", "2024-06-01", "--end", "2024-01-01"], "--train-until 2024-06-01 must be before --end 2024-01-01"),
    (["--axes", "buy_threshold,notional", "--heatmap", "h.html"], "--axes: 'notional' is not in the grid"),
    (["--heatmap", "/dev/null/h.html"], "/dev/null is a file, not a directory"),
    (["--processes", "0"], "processes must be at least 1"),
])
def test_bad_options_are_refused_in_one_line(isolated_env: Path, args: list[str], message: str) -> None:
    result = run_ats("ladder", "sweep", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ",
                     "--grid", json.dumps(GRID), *args)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_rank_puts_the_lowest_drawdown_first_and_missing_values_last() -> None:
    points = [SweepPoint({"a": 1}, {"max_drawdown": 0.2, "win_rate": None}),
              SweepPoint({"a": 2}, {"max_drawdown": 0.1, "win_rate": 0.5}),
              SweepPoint({"a": 3}, {"max_drawdown": 0.1, "win_rate": 0.6})]

    by_drawdown = rank(points, "max_drawdown")
    by_win_rate = rank(points, "win_rate")

    assert [p.params["a"] for p in by_drawdown] == [2, 3, 1]  # a tie keeps the grid order
    assert [p.params["a"] for p in by_win_rate] == [3, 2, 1]


def test_the_grid_runs_in_grid_order_as_the_cartesian_product() -> None:
    grid, points = parse_grid("ibs_reversion", "QQQ.NASDAQ", {"sell_threshold": [0.7, 0.9], "buy_threshold": [0.1, 0.2]})

    assert list(grid) == ["sell_threshold", "buy_threshold"]
    assert points == [{"sell_threshold": 0.7, "buy_threshold": 0.1}, {"sell_threshold": 0.7, "buy_threshold": 0.2},
                      {"sell_threshold": 0.9, "buy_threshold": 0.1}, {"sell_threshold": 0.9, "buy_threshold": 0.2}]


def test_the_heat_map_shows_the_best_value_of_each_cell_and_outlines_the_best_point(isolated_env: Path) -> None:
    result = run_sweep("ibs_reversion", "QQQ.NASDAQ", {**GRID, "max_hold_bars": [2, 5]}, data_dir=isolated_env,
                       start="2023-01-01", processes=1, sort_by="num_trades")

    page = render_sweep_heatmap(result, "buy_threshold", "sell_threshold")

    cells = re.findall(r"<td style=[^>]*>([^<]*)</td>", page)
    assert len(cells) == 4
    for buy in GRID["buy_threshold"]:
        for sell in GRID["sell_threshold"]:
            best = max(p.metrics["num_trades"] for p in result.points
                       if p.params["buy_threshold"] == buy and p.params["sell_threshold"] == sell)
            assert str(best) in cells
    assert page.count('class="best"') == 1
    assert "each cell shows the best num_trades over max_hold_bars" in page
    assert "in-sample" in page

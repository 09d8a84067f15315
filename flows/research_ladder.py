"""The ``research-ladder`` flow: backtest rung, paper rung, report attached as artifacts.

Nightly by the deployments module.  Both verdicts are stored and audited by the library; the
flow fails only on an error, not on a FAIL verdict (a FAIL is a result, shown in the artifact).
Given a ``grid`` it also runs a parameter sweep (``ats ladder sweep``) and adds its best points to
the artifact — in-sample unless ``train_until`` splits the bars.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact


@flow(name="research-ladder", log_prints=True, retries=0)
def research_ladder(strategy: str = "ibs_reversion", instrument: str = "QQQ.NASDAQ",
                    params: dict[str, Any] | None = None, start: str | None = None,
                    end: str | None = None, grid: dict[str, list[Any]] | None = None,
                    train_until: str | None = None, sort_by: str = "sharpe") -> dict[str, Any]:
    """Run the backtest rung and judge the paper rung of one sleeve and params set (daily bars);
    with ``grid``, sweep it too."""
    from ats.core.settings import get_settings
    from ats.research import ladder
    from ats.store import open_store
    from ats.store.engine import utcnow_iso
    from tasks.ladder import backtest_rung, paper_rung, sweep

    settings = get_settings()
    if grid:
        from ats.research.sweep import check_sort_metric, parse_grid

        parse_grid(strategy, instrument, grid)  # a bad grid fails the run before any rung runs
        check_sort_metric(sort_by)
    reports = Path(settings.data_dir) / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    report = reports / f"backtest-{strategy}-{instrument}-{utcnow_iso()[:19].replace(':', '')}.html"
    backtest = backtest_rung(strategy, instrument, params or {}, start, end, str(report))
    paper = paper_rung(strategy, instrument, params or {})
    rows = ladder.status(strategy, instrument, params or {}, store=open_store(settings.resolved_database_url))
    lines = [f"# Research ladder: {strategy} on {instrument}", "", "| rung | result | when | why |", "|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['rung']} | **{row['result']}** | {row['when'] or ''} | {'; '.join(row['why'])} |")
    lines += ["", "## Backtest metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in backtest["metrics"].items() if not isinstance(v, (list, dict))]
    lines += ["", f"HTML report (equity curve, drawdown): `{report}`"]
    swept = None
    if grid:
        heatmap = report.with_name(report.name.replace("backtest-", "sweep-", 1))
        swept = sweep(strategy, instrument, grid, start, end, train_until, sort_by, str(heatmap))
        lines += _sweep_lines(swept, heatmap)
    create_markdown_artifact(key="research-ladder", markdown="\n".join(lines),
                             description=f"ladder status of {strategy} on {instrument}")
    return {"backtest": backtest, "paper": paper, "status": rows, "report": str(report), "sweep": swept}


def _sweep_lines(swept: dict[str, Any], heatmap: Path) -> list[str]:
    metric = swept["sort_by"]
    names = list(swept["grid"])
    lines = ["", f"## Sweep #{swept['sweep_id']}: {len(swept['points'])} points by {metric}, "
                 f"{swept['data_start']} to {swept['data_end']}", "",
             "| " + " | ".join([*names, metric, "trades"]) + " |", "|" + "---|" * (len(names) + 2)]
    for point in swept["points"][:10]:
        lines.append("| " + " | ".join([*(str(point["params"][n]) for n in names), str(point["metrics"][metric]),
                                        str(point["metrics"]["num_trades"])]) + " |")
    if swept["out_of_sample"]:
        oos = swept["out_of_sample"]
        lines += ["", f"Best point out of sample ({oos['start']} to {oos['end']}): {metric} "
                      f"{oos['metrics'][metric]}, trades {oos['metrics']['num_trades']}"]
    lines += [f"> **{w}**" for w in swept["warnings"]]
    lines += ["", f"Heat map: `{heatmap}`"]
    return lines

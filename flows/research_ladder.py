"""The ``research-ladder`` flow: backtest rung, paper rung, report attached as artifacts.

Nightly by the deployments module.  Both verdicts are stored and audited by the library; the
flow fails only on an error, not on a FAIL verdict (a FAIL is a result, shown in the artifact).
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact


@flow(name="research-ladder", log_prints=True, retries=0)
def research_ladder(strategy: str = "ibs_reversion", instrument: str = "QQQ.NASDAQ",
                    params: dict[str, Any] | None = None, start: str | None = None,
                    end: str | None = None) -> dict[str, Any]:
    """Run the backtest rung and judge the paper rung of one sleeve."""
    from pathlib import Path

    from ats import ladder
    from ats.settings import get_settings
    from ats.store import open_store
    from ats.store.engine import utcnow_iso
    from tasks.ladder import backtest_rung, paper_rung

    settings = get_settings()
    reports = Path(settings.data_dir) / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    report = reports / f"backtest-{strategy}-{instrument}-{utcnow_iso()[:19].replace(':', '')}.html"
    backtest = backtest_rung(strategy, instrument, params or {}, start, end, str(report))
    paper = paper_rung(strategy, instrument)
    rows = ladder.status(strategy, instrument, store=open_store(settings.resolved_database_url))
    lines = [f"# Research ladder: {strategy} on {instrument}", "", "| rung | result | when | why |", "|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['rung']} | **{row['result']}** | {row['when'] or ''} | {'; '.join(row['why'])} |")
    lines += ["", "## Backtest metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in backtest["metrics"].items() if not isinstance(v, (list, dict))]
    lines += ["", f"HTML report (equity curve, drawdown): `{report}`"]
    create_markdown_artifact(key="research-ladder", markdown="\n".join(lines),
                             description=f"ladder status of {strategy} on {instrument}")
    return {"backtest": backtest, "paper": paper, "status": rows, "report": str(report)}

"""Prefect tasks of the research ladder: each calls one ``ats.research.ladder`` function."""

from __future__ import annotations

from typing import Any

from prefect import task


@task(name="backtest-rung", retries=0, log_prints=True, cache_policy=None)
def backtest_rung(strategy: str, instrument: str, params: dict[str, Any], start: str | None, end: str | None,
                  report: str) -> dict[str, Any]:
    """Run the backtest rung (verdict stored and audited), write the HTML report."""
    from ats.core.settings import get_settings
    from ats.research import ladder
    from ats.store import open_store

    settings = get_settings()
    result, verdict = ladder.run_backtest_rung(strategy, instrument, params, settings=settings, start=start,
                                               end=end, report=report,
                                               store=open_store(settings.resolved_database_url))
    print(f"backtest rung {'PASS' if verdict.passed else 'FAIL'}: {'; '.join(verdict.reasons)}")
    return {"verdict": verdict.as_dict(), "metrics": result.metrics(), "trades": len(result.trades)}


@task(name="paper-rung", retries=0, log_prints=True, cache_policy=None)
def paper_rung(strategy: str, instrument: str, params: dict[str, Any] | None = None,
               bar_spec: str | None = None) -> dict[str, Any]:
    """Judge the paper rung of one params/bar-spec set from its paper sessions (stored and audited)."""
    from ats.core.settings import get_settings
    from ats.research import ladder
    from ats.store import open_store

    settings = get_settings()
    verdict = ladder.evaluate_paper_rung(strategy, instrument, params, bar_spec, settings=settings,
                                         store=open_store(settings.resolved_database_url))
    print(f"paper rung {'PASS' if verdict.passed else 'FAIL'}: {'; '.join(verdict.reasons)}")
    return verdict.as_dict()


@task(name="sweep", retries=0, log_prints=True, cache_policy=None)
def sweep(strategy: str, instrument: str, grid: dict[str, list[Any]], start: str | None, end: str | None,
          train_until: str | None, sort_by: str, heatmap: str) -> dict[str, Any]:
    """Run a parameter sweep on every core, write its heat map, store it."""
    from ats.core.settings import get_settings
    from ats.research.sweep import sweep_and_record
    from ats.store import open_store

    settings = get_settings()
    result = sweep_and_record(strategy, instrument, grid, settings=settings, start=start, end=end,
                              train_until=train_until, sort_by=sort_by, heatmap=heatmap,
                              store=open_store(settings.resolved_database_url))
    print(f"sweep #{result.sweep_id}: {len(result.points)} points on {result.processes} processes in "
          f"{result.seconds:.1f} s; best by {sort_by}: {result.best.params}")
    return result.to_dict()

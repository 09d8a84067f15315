"""Prefect tasks of the research ladder: each calls one ``ats.ladder`` function."""

from __future__ import annotations

from typing import Any

from prefect import task


@task(name="backtest-rung", retries=0, log_prints=True, cache_policy=None)
def backtest_rung(strategy: str, instrument: str, params: dict[str, Any], start: str | None, end: str | None,
                  report: str) -> dict[str, Any]:
    """Run the backtest rung (verdict stored and audited), write the HTML report."""
    from ats import ladder
    from ats.settings import get_settings
    from ats.store import open_store

    settings = get_settings()
    result, verdict = ladder.run_backtest_rung(strategy, instrument, params, settings=settings, start=start,
                                               end=end, report=report,
                                               store=open_store(settings.resolved_database_url))
    print(f"backtest rung {'PASS' if verdict.passed else 'FAIL'}: {'; '.join(verdict.reasons)}")
    return {"verdict": verdict.as_dict(), "metrics": result.metrics(), "trades": len(result.trades)}


@task(name="paper-rung", retries=0, log_prints=True, cache_policy=None)
def paper_rung(strategy: str, instrument: str) -> dict[str, Any]:
    """Judge the paper rung from the recorded paper sessions (verdict stored and audited)."""
    from ats import ladder
    from ats.settings import get_settings
    from ats.store import open_store

    settings = get_settings()
    verdict = ladder.evaluate_paper_rung(strategy, instrument, settings=settings,
                                         store=open_store(settings.resolved_database_url))
    print(f"paper rung {'PASS' if verdict.passed else 'FAIL'}: {'; '.join(verdict.reasons)}")
    return verdict.as_dict()

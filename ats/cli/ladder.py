"""``ats ladder run|paper|status``: the research ladder's rungs."""

from __future__ import annotations

import typer

from ats.cli._common import console, fail, load_settings, print_json

ladder_app = typer.Typer(help="The research ladder: backtest rung, paper rung, approval.", no_args_is_help=True)

EXIT_FAIL, EXIT_ERROR = 1, 2


@ladder_app.command("run")
def run_cmd(
    strategy: str = typer.Option(..., "--strategy", help="Registered strategy, e.g. ibs_reversion."),
    instrument: str = typer.Option(..., "--instrument", help="SYMBOL.VENUE, e.g. QQQ.NASDAQ."),
    params: str | None = typer.Option(None, "--params", help="Strategy params as JSON."),
    start: str | None = typer.Option(None, "--start", help="First bar date (YYYY-MM-DD)."),
    end: str | None = typer.Option(None, "--end", help="Last bar date (YYYY-MM-DD)."),
    report: str | None = typer.Option(None, "--report", help="Write an HTML report (equity curve, drawdown)."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Backtest rung: run, print the report, store and audit the verdict.  Exit 0 PASS, 1 FAIL, 2 error."""
    from ats import ladder
    from ats.errors import AtsError
    from ats.params import _decode_json
    from ats.store import open_store

    settings = load_settings()
    try:
        result, verdict = ladder.run_backtest_rung(
            strategy, instrument, _decode_json(params), settings=settings, start=start, end=end,
            report=report, store=open_store(settings.resolved_database_url))
    except AtsError as exc:
        fail(str(exc), EXIT_ERROR)
    if json_out:
        print_json({**result.to_dict(), "verdict": "PASS" if verdict.passed else "FAIL",
                    "reasons": verdict.reasons, "report": report})
    else:
        _print_backtest(result, verdict, report)
    if not verdict.passed:
        raise typer.Exit(EXIT_FAIL)


def _print_backtest(result, verdict, report: str | None) -> None:  # noqa: ANN001
    from rich.table import Table

    trades = Table(title=f"trades ({len(result.trades)})")
    for column in ("entry", "exit", "side", "qty", "entry px", "exit px", "pnl"):
        trades.add_column(column)
    for t in result.trades:
        trades.add_row(str(t["entry_date"]), str(t["exit_date"]), t.get("side", "LONG"), str(t["quantity"]),
                       f"{t['entry_price']:.2f}", f"{t['exit_price']:.2f}", f"{t['pnl']:.2f}")
    console.print(trades)
    metrics = result.metrics()
    table = Table(title=f"backtest {result.start} → {result.end}")
    table.add_column("metric")
    table.add_column("value")
    for key in ("num_trades", "win_rate", "total_return", "cagr", "sharpe", "max_drawdown", "exposure"):
        value = metrics.get(key)
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    colour = "green" if verdict.passed else "red"
    console.print(f"verdict: [{colour}]{'PASS' if verdict.passed else 'FAIL'}[/] — " + "; ".join(verdict.reasons))
    if report:
        console.print(f"report written to {report}")


@ladder_app.command("paper")
def paper_cmd(
    strategy: str = typer.Option(..., "--strategy"),
    instrument: str = typer.Option(..., "--instrument"),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Paper rung: judge the recorded paper sessions (days, trades, no errors, parity). Exit 0 PASS, 1 FAIL."""
    from ats import ladder
    from ats.params import check_instrument_id
    from ats.errors import AtsError
    from ats.store import open_store
    from ats.strategies import get_strategy

    settings = load_settings()
    try:
        get_strategy(strategy)
        check_instrument_id(instrument)
        verdict = ladder.evaluate_paper_rung(strategy, instrument, settings=settings,
                                             store=open_store(settings.resolved_database_url))
    except AtsError as exc:
        fail(str(exc), EXIT_ERROR)
    if json_out:
        print_json(verdict.as_dict())
    else:
        colour = "green" if verdict.passed else "red"
        console.print(f"paper rung: [{colour}]{'PASS' if verdict.passed else 'FAIL'}[/]")
        for reason in verdict.reasons:
            console.print(f"  - {reason}")
    if not verdict.passed:
        raise typer.Exit(EXIT_FAIL)


@ladder_app.command("status")
def status_cmd(
    strategy: str = typer.Option(..., "--strategy"),
    instrument: str = typer.Option(..., "--instrument"),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Each rung (backtest, paper, live approval): PASS / FAIL / NOT RUN, when and why."""
    from ats import ladder
    from ats.params import check_instrument_id
    from ats.errors import AtsError
    from ats.store import open_store

    settings = load_settings()
    try:
        check_instrument_id(instrument)
        rows = ladder.status(strategy, instrument, store=open_store(settings.resolved_database_url))
    except AtsError as exc:
        fail(str(exc), exc.exit_code)
    if json_out:
        print_json({"strategy": strategy, "instrument": instrument, "rungs": rows})
        return
    from rich.table import Table

    table = Table(title=f"research ladder: {strategy} on {instrument}")
    for column in ("rung", "result", "when", "why"):
        table.add_column(column, overflow="fold")
    colours = {"PASS": "green", "FAIL": "red", "STALE": "yellow", "NOT RUN": "dim"}
    for row in rows:
        table.add_row(row["rung"], f"[{colours[row['result']]}]{row['result']}[/]", row["when"] or "",
                      "; ".join(row["why"]))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(ladder_app, name="ladder")

"""``ats ladder run|sweep|paper|status``: the research ladder's rungs and parameter sweeps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from ats.cli._common import console, describe_set, fail, load_settings, print_json
from ats.core.errors import InputError

if TYPE_CHECKING:
    from ats.research.backtest import BacktestResult
    from ats.research.ladder import StoredVerdict
    from ats.research.sweep import SweepResult

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
    from ats.core.errors import AtsError
    from ats.core.params import decode_params_json
    from ats.research import ladder
    from ats.store import open_store

    settings = load_settings()
    try:
        result, verdict = ladder.run_backtest_rung(
            strategy, instrument, decode_params_json(params), settings=settings, start=start, end=end,
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


def _print_backtest(result: BacktestResult, verdict: StoredVerdict, report: str | None) -> None:
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
    console.print(f"verdict: [{colour}]{'PASS' if verdict.passed else 'FAIL'}[/] — " + escape("; ".join(verdict.reasons)))
    if report:
        console.print(f"report written to {report}")


@ladder_app.command("sweep")
def sweep_cmd(
    strategy: str = typer.Option(..., "--strategy", help="Registered strategy, e.g. ibs_reversion."),
    instrument: str = typer.Option(..., "--instrument", help="SYMBOL.VENUE, e.g. QQQ.NASDAQ."),
    grid: str = typer.Option(..., "--grid", help='Params to sweep as JSON, e.g. \'{"buy_threshold": [0.1, 0.2], '
                                                 '"sell_threshold": [0.7, 0.8]}\' (every combination runs).'),
    sort: str = typer.Option("sharpe", "--sort", help="Rank by this metric: sharpe, total_return, cagr, win_rate, "
                                                      "final_equity, num_trades, exposure, max_drawdown (lowest best)."),
    start: str | None = typer.Option(None, "--start", help="First bar date (YYYY-MM-DD)."),
    end: str | None = typer.Option(None, "--end", help="Last bar date (YYYY-MM-DD)."),
    train_until: str | None = typer.Option(
        None, "--train-until", help="Walk-forward split: sweep the bars up to this date (YYYY-MM-DD), then run the "
                                    "best point on the bars after it and report its out-of-sample metrics."),
    processes: int | None = typer.Option(None, "--processes", help="Processes that run points: this one and N-1 workers (default: every core)."),
    heatmap: str | None = typer.Option(None, "--heatmap", help="Write an HTML heat map of the metric to this file."),
    axes: str | None = typer.Option(None, "--axes", help="The heat map's parameters X,Y (default: the first two "
                                                         "that vary)."),
    top: int = typer.Option(20, "--top", help="Rows of the table (best first); 0: all."),
    json_out: bool = typer.Option(False, "--json", help="Print the sweep as one JSON object."),
) -> None:
    """Run a parameter grid on every core, rank it by a metric, store it.  The best point is in-sample:
    use --train-until to see it out of sample."""
    from ats.core.errors import AtsError
    from ats.research.sweep import sweep_and_record
    from ats.store import open_store

    settings = load_settings()
    try:
        if top < 0:
            raise InputError(f"--top must be 0 (all) or more (got {top})")
        with _sweep_progress(json_out) as progress:
            result = sweep_and_record(strategy, instrument, grid, settings=settings, start=start, end=end,
                                      train_until=train_until, sort_by=sort, processes=processes, heatmap=heatmap,
                                      axes=axes, store=open_store(settings.resolved_database_url), progress=progress)
    except AtsError as exc:
        fail(str(exc), exc.exit_code)
    if json_out:
        print_json({**result.to_dict(), "heatmap": heatmap})
        return
    _print_sweep(result, top, heatmap)


def _sweep_progress(quiet: bool) -> AbstractContextManager[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr while the points run (nothing with --json)."""
    from contextlib import contextmanager

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ats.cli._common import err_console

    @contextmanager
    def bar() -> Iterator[Callable[[int, int], None] | None]:
        if quiet:
            yield None
            return
        progress = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=err_console, transient=True)
        task = progress.add_task("sweep", total=None)

        def update(done: int, total: int) -> None:
            if not progress.live.is_started:  # started on the first point: a refusal prints no bar
                progress.start()
            progress.update(task, completed=done, total=total)

        try:
            yield update
        finally:
            if progress.live.is_started:
                progress.stop()

    return bar()


_SWEEP_COLUMNS = {"sharpe": "sharpe", "total_return": "return", "cagr": "CAGR", "max_drawdown": "max DD",
                  "win_rate": "win", "num_trades": "trades", "exposure": "exposure"}


def _metric_text(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if metric in ("total_return", "cagr", "max_drawdown", "win_rate", "exposure"):
        return f"{value * 100:.1f}%"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _print_sweep(result: SweepResult, top: int, heatmap: str | None) -> None:
    from rich.table import Table

    from ats.research.sweep import METRICS

    names = list(result.grid)
    shown = result.points if top == 0 else result.points[:top]
    table = Table(title=escape(f"sweep #{result.sweep_id}: {result.strategy} on {result.instrument}, "
                               f"{result.data_start} → {result.data_end}, {len(result.points)} points, "
                               f"sorted by {result.sort_by} ({'highest' if METRICS[result.sort_by] else 'lowest'} "
                               "first)"))
    table.add_column("#", justify="right")
    for name in names:
        table.add_column(escape(name), justify="right", overflow="fold")
    for metric, header in _SWEEP_COLUMNS.items():
        table.add_column(header, justify="right", style="bold" if metric == result.sort_by else None)
    for i, point in enumerate(shown, start=1):
        table.add_row(str(i), *(escape(str(point.params[n])) for n in names),
                      *(_metric_text(m, point.metrics.get(m)) for m in _SWEEP_COLUMNS))
    console.print(table)
    if len(shown) < len(result.points):
        console.print(f"({len(result.points) - len(shown)} more rows: --top 0 shows all)")
    console.print(f"{len(result.points)} points on {result.processes} process(es) in {result.seconds:.1f} s")
    best = escape(str(result.best.params))
    if result.out_of_sample:
        oos = result.out_of_sample
        console.print(f"best in sample (up to {result.train_until}): {best} — {result.sort_by} "
                      f"{_metric_text(result.sort_by, result.best.metrics.get(result.sort_by))}")
        console.print(f"[bold]out of sample[/] ({oos['start']} → {oos['end']}), the honest figure:")
        out = Table()
        for column in ("metric", "out of sample", "in sample"):
            out.add_column(column, justify="right" if column != "metric" else "left")
        for metric in _SWEEP_COLUMNS:
            out.add_row(metric, _metric_text(metric, oos["metrics"].get(metric)),
                        _metric_text(metric, result.best.metrics.get(metric)))
        console.print(out)
    else:
        console.print(f"best: {best}")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    if heatmap:
        console.print(f"heat map written to {escape(heatmap)}")


PARAMS_HELP = "Strategy params as JSON: the set to judge (default: the strategy's defaults)."
BAR_SPEC_HELP = "Bar spec STEP-AGGREGATION-PRICE_TYPE of the set."


@ladder_app.command("paper")
def paper_cmd(
    strategy: str = typer.Option(..., "--strategy"),
    instrument: str = typer.Option(..., "--instrument"),
    params: str | None = typer.Option(None, "--params", help=PARAMS_HELP),
    bar_spec: str = typer.Option("1-DAY-LAST", "--bar-spec", help=BAR_SPEC_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Paper rung of one params/bar-spec set: judge the paper sessions that ran exactly that set on the
    current code (days, trades, no errors, parity). Exit 0 PASS, 1 FAIL."""
    from ats.core.errors import AtsError
    from ats.core.params import check_instrument_id
    from ats.research import ladder
    from ats.store import open_store
    from ats.strategies import get_strategy

    settings = load_settings()
    try:
        get_strategy(strategy)
        check_instrument_id(instrument)
        verdict = ladder.evaluate_paper_rung(strategy, instrument, params, bar_spec, settings=settings,
                                             store=open_store(settings.resolved_database_url))
    except AtsError as exc:
        fail(str(exc), EXIT_ERROR)
    if json_out:
        print_json(verdict.as_dict())
    else:
        from rich.markup import escape

        colour = "green" if verdict.passed else "red"
        console.print(f"paper rung of {escape(describe_set(verdict.pinned))}: [{colour}]{'PASS' if verdict.passed else 'FAIL'}[/]")
        for reason in verdict.reasons:
            console.print(f"  - {escape(reason)}")
    if not verdict.passed:
        raise typer.Exit(EXIT_FAIL)


@ladder_app.command("status")
def status_cmd(
    strategy: str = typer.Option(..., "--strategy"),
    instrument: str = typer.Option(..., "--instrument"),
    params: str | None = typer.Option(None, "--params", help=PARAMS_HELP),
    bar_spec: str = typer.Option("1-DAY-LAST", "--bar-spec", help=BAR_SPEC_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Each rung (backtest, paper, live approval) of one params/bar-spec set: PASS / FAIL / STALE /
    NOT RUN / FORGED (a row its audit row does not back), when and why."""
    from ats.core.errors import AtsError
    from ats.core.params import check_instrument_id
    from ats.core.pins import param_set
    from ats.research import ladder
    from ats.store import open_store

    settings = load_settings()
    try:
        check_instrument_id(instrument)
        pinned = param_set(strategy, instrument, params, bar_spec)
        rows = ladder.status(strategy, instrument, params, bar_spec, store=open_store(settings.resolved_database_url))
    except AtsError as exc:
        fail(str(exc), exc.exit_code)
    if json_out:
        print_json({"strategy": strategy, "instrument": instrument, "params": pinned.params,
                    "bar_spec": pinned.bar_spec, "rungs": rows})
        return
    from rich.table import Table

    table = Table(title=escape(f"research ladder: {strategy} on {instrument}, {pinned.describe()}"))
    for column in ("rung", "result", "when", "why"):
        table.add_column(column, overflow="fold")
    colours = {"PASS": "green", "FAIL": "red", "STALE": "yellow", "NOT RUN": "dim", "FORGED": "bold red"}
    for row in rows:
        table.add_row(row["rung"], f"[{colours[row['result']]}]{row['result']}[/]", row["when"] or "",
                      escape("; ".join(row["why"])))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(ladder_app, name="ladder")

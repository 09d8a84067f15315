"""``ats data``: import daily OHLCV CSV or fetch daily bars from the gateway into the bar catalog, list it."""

from __future__ import annotations

from pathlib import Path

import typer

from ats.cli._common import console, fail, is_mode, load_settings, print_json


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to ``app``."""
    group = typer.Typer(help="Daily bar data: import CSV files, fetch from the gateway, list the catalog.",
                        no_args_is_help=True)

    @group.command("import")
    def import_(
        csv: Path = typer.Option(..., "--csv", help="CSV with date,open,high,low,close,volume[,dividend]."),
        instrument: str = typer.Option(..., "--instrument", help="Instrument id SYMBOL.VENUE, e.g. QQQ.NASDAQ."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Validate CSV and store it as daily bars (nothing is written if any line is bad)."""
        from ats.core.errors import InputError
        from ats.research.catalog import import_csv

        settings = load_settings()
        try:
            summary = import_csv(csv, instrument, settings.data_dir)
        except InputError as exc:
            fail(f"{csv}: {exc}", exc.exit_code)
        if as_json:
            print_json(summary.to_dict())
            return
        console.print(f"imported {summary.rows} bars of {summary.instrument_id} "
                      f"({summary.first_date} to {summary.last_date}) into {summary.catalog}", highlight=False)
        for warning in summary.warnings:
            console.print(f"[yellow]warning:[/] {warning}", highlight=False)

    @group.command("fetch")
    def fetch(
        instrument: str = typer.Option(..., "--instrument", help="Instrument id SYMBOL.VENUE, e.g. QQQ.NASDAQ."),
        mode: str = typer.Option(..., "--mode", help="Which gateway: paper (ATS_IB_PAPER_PORT) or live "
                                                     "(ATS_IB_LIVE_PORT); reading history places no order."),
        years: int = typer.Option(1, "--years", help="Years of daily bars, one request per year, newest first."),
        client_id: int = typer.Option(978, "--client-id", min=-(2**31), max=2**31 - 1,
                                      help="API client id of the fetch (free on the gateway; a 32-bit integer)."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Download daily bars through the gateway (IB pacing kept) and merge them into the catalog
        exactly like `ats data import` (validated, nothing written unless every bar is valid)."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from ats.cli._common import err_console
        from ats.core.errors import AtsError
        from ats.research.history import fetch_daily_bars

        settings = load_settings()
        if not is_mode(mode):
            fail(f"--mode must be paper or live (got {mode!r})", 2)
        gateway = settings.mode(mode)
        progress = Progress(TextColumn("fetch {task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=err_console, transient=True, disable=as_json)
        task = progress.add_task(f"{instrument} from {gateway.host}:{gateway.port}", total=years)

        def update(done: int, total: int, note: str) -> None:
            if not progress.live.is_started:
                progress.start()
            progress.update(task, completed=done, total=total,
                            description=f"{instrument} from {gateway.host}:{gateway.port} {note}".rstrip())

        try:
            summary = fetch_daily_bars(instrument, mode=mode, years=years, data_dir=settings.data_dir,
                                       host=gateway.host, port=gateway.port, client_id=client_id, progress=update)
        except AtsError as exc:
            fail(str(exc), exc.exit_code)
        finally:
            if progress.live.is_started:
                progress.stop()
        if as_json:
            print_json(summary.to_dict())
            return
        stored = summary.stored
        console.print(f"fetched {summary.bars} daily bars of {summary.instrument_id} from {summary.gateway} "
                      f"in {summary.requests} request(s): {stored['added']} new, {stored['changed']} changed, "
                      f"{stored['unchanged']} unchanged; {stored['instrument_id']} now holds {stored['rows']} bars "
                      f"({stored['first_date']} to {stored['last_date']})", highlight=False)
        if summary.dropped_forming:
            console.print(f"left out {summary.dropped_forming} bar(s) of a session that has not closed", highlight=False)
        for warning in stored["warnings"]:
            console.print(f"[yellow]warning:[/] {warning}", highlight=False)

    @group.command("list")
    def list_(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
        """Show the stored bar series: instrument, first and last date, bar count."""
        from rich.table import Table

        from ats.research.catalog import list_catalog

        settings = load_settings()
        entries = list_catalog(settings.data_dir)
        if as_json:
            print_json([e.to_dict() for e in entries])
            return
        if not entries:
            console.print(f"no bars stored under {settings.data_dir}; "
                          "import some with `ats data import --csv FILE --instrument SYMBOL.VENUE`")
            return
        table = Table(title=f"bar catalog ({settings.data_dir})")
        for column in ("instrument", "bar type", "first", "last", "bars"):
            table.add_column(column, justify="right" if column == "bars" else "left")
        for e in entries:
            table.add_row(e.instrument_id, e.bar_type, e.first_date or "-", e.last_date or "-", str(e.bars))
        console.print(table)

    app.add_typer(group, name="data")

"""``ats data``: import daily OHLCV CSV into the bar catalog, list what is stored."""

from __future__ import annotations

from pathlib import Path

import typer

from ats.cli._common import console, fail, load_settings, print_json


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to ``app``."""
    group = typer.Typer(help="Daily bar data: import CSV files, list the catalog.", no_args_is_help=True)

    @group.command("import")
    def import_(
        csv: Path = typer.Option(..., "--csv", help="CSV with date,open,high,low,close,volume[,dividend]."),
        instrument: str = typer.Option(..., "--instrument", help="Instrument id SYMBOL.VENUE, e.g. QQQ.NASDAQ."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Validate CSV and store it as daily bars (nothing is written if any line is bad)."""
        from ats.catalog import import_csv
        from ats.errors import InputError

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

    @group.command("list")
    def list_(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
        """Show the stored bar series: instrument, first and last date, bar count."""
        from rich.table import Table

        from ats.catalog import list_catalog

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

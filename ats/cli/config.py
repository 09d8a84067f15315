"""``ats config show``: the effective settings, account ids masked, secrets hidden."""

from __future__ import annotations

import typer

from ats.cli._common import console, load_settings, print_json

config_app = typer.Typer(help="Show the effective ATS_* settings.", no_args_is_help=True)


@config_app.command("show")
def show(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the effective settings (environment, then .env, then defaults)."""
    shown = load_settings().display()
    if json_out:
        print_json(shown)
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="ats settings")
    table.add_column("variable")
    table.add_column("value")
    for name, value in shown.items():
        table.add_row(name, escape(str(value)))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")

"""``ats db upgrade``: apply the store's migrations."""

from __future__ import annotations

import typer

from ats.cli._common import console, load_settings

db_app = typer.Typer(help="The store (SQLite by default, PostgreSQL by ATS_DATABASE_URL).", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade_cmd() -> None:
    """Apply every migration (also done automatically on first use)."""
    from ats.store.engine import safe_url, upgrade

    url = load_settings().resolved_database_url
    head = upgrade(url)
    console.print(f"store at {safe_url(url)} is at revision {head}")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")

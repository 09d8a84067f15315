"""``ats demo``: the whole go-live path on embedded defaults (see ``ats.cli.demo_steps``)."""

from __future__ import annotations

import typer


def demo_cmd(
    fast: bool = typer.Option(False, "--fast", help="Shorter sessions and a faster simulated clock (CI)."),
    keep: bool = typer.Option(False, "--keep", help="Keep the demo's data directory for inspection."),
) -> None:
    """Backtest → paper → gated live on simulated IB gateways, in a few minutes; exit 1 if a step failed."""
    from ats.cli.demo_steps import Demo

    raise typer.Exit(Demo(fast=fast, keep=keep).run())


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)

"""The ``ats`` command line (also ``python -m ats.cli``).

One module per command group; each exposes ``register(app)``.  Heavy imports (Nautilus,
Prefect, SQLAlchemy) happen inside the commands so that ``ats --help`` is instant.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="ats",
    help="ats: backtest → paper → gated live trading on Interactive Brokers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command-group modules under ats.cli, registered in this order.
_GROUPS = (
    "config",
    "db",
    "audit",
    "approvals",
    "sessions",
    "data",
    "ladder",
    "sim",
    "gateway",
    "orchestration",
    "demo",
)


def _register_groups() -> None:
    for name in _GROUPS:
        module = importlib.import_module(f"ats.cli.{name}")
        module.register(app)


_register_groups()


def main() -> None:
    """Console-script entry point: run the app, turning AtsError into one line and an exit code."""
    from ats.cli._common import run_app

    run_app(app)

"""The ``ats`` command line (also ``python -m ats.cli``).

One module per command group; each exposes ``register(app)``.  Heavy imports (Nautilus,
Prefect, SQLAlchemy) happen inside the commands so that ``ats --help`` is instant.  The app
itself is built on first use (``ats.cli.app``): ``ats kill`` sends its kill to the running
sessions before importing anything (:mod:`ats.cli.kill_fast`).
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

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


_app: typer.Typer | None = None


def _build_app() -> typer.Typer:
    import typer

    app = typer.Typer(
        name="ats",
        help="ats: backtest → paper → gated live trading on Interactive Brokers.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for name in _GROUPS:
        module = importlib.import_module(f"ats.cli.{name}")
        module.register(app)
    return app


def __getattr__(name: str) -> typer.Typer:
    global _app
    if name == "app":
        if _app is None:
            _app = _build_app()
        return _app
    raise AttributeError(f"module 'ats.cli' has no attribute {name!r}")


def main() -> None:
    """Console-script entry point: run the app, turning AtsError into one line and an exit code."""
    from ats.cli.kill_fast import send_kill

    send_kill(sys.argv[1:])  # `ats kill`: the running sessions halt now, before the imports below
    from ats.cli._common import run_app

    run_app(__getattr__("app"))

"""Helpers shared by the command modules: one way to fail, one way to print."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line saying what is wrong (and how to fix it) to stderr, exit ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout (no colour, stable key order)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def load_settings():
    """Load settings or fail with the one-line message naming the variable."""
    from ats.errors import ConfigError
    from ats.settings import get_settings

    try:
        return get_settings()
    except ConfigError as exc:
        fail(str(exc), exc.exit_code)


def run_app(app: typer.Typer) -> None:
    """Run ``app``; an AtsError escaping a command becomes one line and its exit code."""
    from ats.errors import AtsError, NothingToDo

    try:
        app(standalone_mode=True)
    except NothingToDo as exc:
        console.print(str(exc))
        raise SystemExit(0) from None
    except AtsError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise SystemExit(exc.exit_code) from None

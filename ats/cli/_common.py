"""Helpers shared by the command modules: one way to fail, one way to print."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, NoReturn, TypeGuard

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from ats.core.pins import ParamSet
    from ats.core.settings import Mode, Settings

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line saying what is wrong (and how to fix it) to stderr, exit ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_json(data: object) -> None:
    """Print ``data`` as JSON on stdout (no colour, stable key order)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def is_mode(value: str) -> TypeGuard[Mode]:
    """``paper`` or ``live``: a value the settings know as a mode."""
    return value in ("paper", "live")


def describe_set(pinned: ParamSet | None) -> str:
    """A pinned params/bar-spec set in words; a row recorded before pinning has none."""
    return pinned.describe() if pinned is not None else "(before pinning)"


def load_settings() -> Settings:
    """Load settings or fail with the one-line message naming the variable."""
    from ats.core.errors import ConfigError
    from ats.core.settings import get_settings

    try:
        return get_settings()
    except ConfigError as exc:
        fail(str(exc), exc.exit_code)


def run_app(app: typer.Typer) -> None:
    """Run ``app``; every error becomes one line on stderr and its exit code.

    AtsError → its exit code; a usage error (unknown option, missing option, bad value) → 2 with
    Typer's message on one line instead of its usage box; Ctrl-C → 130.
    """
    from ats.core.errors import AtsError, NothingToDo

    try:
        code = app(standalone_mode=False)
    except NothingToDo as exc:
        console.print(str(exc))
        raise SystemExit(0) from None
    except AtsError as exc:
        _error_line(str(exc))
        raise SystemExit(exc.exit_code) from None
    except typer.TyperException as exc:  # click's UsageError family (Typer's public base)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        _error_line(f"{' '.join(message.split())} (see --help)")
        raise SystemExit(getattr(exc, "exit_code", 2)) from None
    except (typer.Abort, KeyboardInterrupt):
        _error_line("aborted")
        raise SystemExit(130) from None
    raise SystemExit(code if isinstance(code, int) else 0)


def _error_line(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)

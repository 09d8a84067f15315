"""``python -m ats.ibsim``: the same command as ``ats sim`` (see ``--help``)."""

from __future__ import annotations

import typer

from ats.cli._common import run_app
from ats.cli.sim import SIM_HELP, sim

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command(help=SIM_HELP)(sim)

if __name__ == "__main__":
    run_app(app)

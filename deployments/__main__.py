"""``python -m deployments``: the same command as ``ats serve`` (errors as one line, like it)."""

import typer

from ats.cli._common import run_app
from ats.cli.orchestration import serve_cmd

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(serve_cmd)

if __name__ == "__main__":
    run_app(app)

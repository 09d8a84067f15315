"""``ats serve`` (the Prefect deployments) and ``ats server`` (a local Prefect server and UI)."""

from __future__ import annotations

import os
import subprocess
import sys

import typer

from ats.cli._common import console, load_settings


def serve_cmd() -> None:
    """Serve the Prefect deployments: paper-session, research-ladder, gateway-health (+ go-live if enabled)."""
    settings = load_settings()
    from deployments import build_deployments

    names = [d.name for d in build_deployments(settings)]
    live = "go-live (tagged real-money) is served" if settings.enable_live_trading else \
        "go-live is NOT served (ATS_ENABLE_LIVE_TRADING=false)"
    console.print(f"serving {', '.join(names)}; {live}")
    from deployments import serve_all

    serve_all(settings)


def server_cmd(port: int = typer.Option(4200, "--port", help="API and UI port on 127.0.0.1.")) -> None:
    """Start a local Prefect server (its own SQLite) on 127.0.0.1 for the UI."""
    env = {**os.environ, "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port)}
    console.print(f"Prefect UI: http://127.0.0.1:{port}  — then in another shell: "
                  f"PREFECT_API_URL=http://127.0.0.1:{port}/api ats serve")
    raise typer.Exit(subprocess.call([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                      "--port", str(port)], env=env))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
    app.command("server")(server_cmd)

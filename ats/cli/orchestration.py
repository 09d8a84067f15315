"""``ats serve`` (the Prefect deployments, one machine), ``ats deploy`` (the same deployments on a
Prefect work pool, run by workers) and ``ats server`` (a local Prefect server and UI)."""

from __future__ import annotations

import os
import subprocess
import sys

import typer

from ats.cli._common import console, load_settings, print_json


def serve_cmd() -> None:
    """Serve the Prefect deployments: paper-session, research-ladder, gateway-health (a watch run starts now), kill-switch, audit-anchor (+ go-live if enabled)."""
    settings = load_settings()
    from deployments import build_deployments

    names = [d.name for d in build_deployments(settings)]
    live = "go-live (tagged real-money) is served" if settings.enable_live_trading else \
        "go-live is NOT served (ATS_ENABLE_LIVE_TRADING=false)"
    console.print(f"serving {', '.join(names)}; {live}")
    from deployments import serve_all

    serve_all(settings)


def deploy_cmd(
    pool: str = typer.Option(..., "--pool", help="The Prefect work pool (created as type 'process' when missing)."),
    start_watch: bool = typer.Option(False, "--start-watch", help="Start a gateway-health watch run now, as `ats serve` "
                                     "does (the watch resumes after a worker restart, not at midnight)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Register the deployments of `ats serve` to a work pool: run them with `prefect worker start --pool NAME`."""
    from deployments.work_pool import check_pool_name

    check_pool_name(pool)  # before the settings and Prefect: a bad name is one line, at once
    settings = load_settings()
    from deployments.work_pool import LIVE_QUEUE, deploy

    result = deploy(pool, settings, start_watch=start_watch)
    if json_out:
        print_json(result.as_json())
        return
    state = "created" if result.pool_created else "existing"
    console.print(f"work pool {result.pool} ({state}, type process), code from {result.project_dir}:")
    for d in result.deployments:
        console.print(f"  {d.name}  queue {d.work_queue}  schedules {d.schedules}  tags {','.join(d.tags)}")
    for name in result.removed:
        console.print(f"  {name}  removed (ATS_ENABLE_LIVE_TRADING=false)")
    if result.watch_run:
        console.print(f"  gateway-health watch run {result.watch_run} started (queue {LIVE_QUEUE})")
    console.print(f"run them: prefect worker start --pool {result.pool} --type process  (all queues: only on the "
                  f"host with the live gateway; other hosts add --work-queue default; go-live and gateway-health "
                  f"are on queue {LIVE_QUEUE})")


def server_cmd(port: int = typer.Option(4200, "--port", min=1, max=65535, help="API and UI port on 127.0.0.1, 1..65535.")) -> None:
    """Start a local Prefect server (its own SQLite) on 127.0.0.1 for the UI; flow runs kept 90 days."""
    from ats.core.prefect_server import RETENTION_ENV

    env = {**RETENTION_ENV, **os.environ, "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port)}
    console.print(f"Prefect UI: http://127.0.0.1:{port}  — then in another shell: "
                  f"PREFECT_API_URL=http://127.0.0.1:{port}/api ats serve")
    raise typer.Exit(subprocess.call([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                      "--port", str(port)], env=env))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
    app.command("deploy")(deploy_cmd)
    app.command("server")(server_cmd)

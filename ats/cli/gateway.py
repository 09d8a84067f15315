"""``ats gateway probe|check|status``."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from ats.cli._common import console, fail, is_mode, load_settings, print_json

if TYPE_CHECKING:
    from ats.gateway.probe import ProbeResult

gateway_app = typer.Typer(help="The IB gateway: probe it, run a health check, show its health.",
                          no_args_is_help=True)


class ModeChoice(StrEnum):
    paper = "paper"
    live = "live"


class CheckModeChoice(StrEnum):
    auto = "auto"
    paper = "paper"
    live = "live"


def _probe_table(result: ProbeResult) -> None:
    from rich.table import Table

    data = result.as_dict()
    table = Table(title=f"{result.mode} gateway probe", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    state = "[green]healthy[/]" if result.healthy else "[red]broken[/]"
    table.add_row("result", state)
    table.add_row("reason", result.reason)
    table.add_row("gateway", f"{result.host}:{result.port}")
    table.add_row("accounts", ", ".join(data["accounts"]) or "-")
    table.add_row("latency", f"{data['latency_ms']} ms" if result.latency_ms is not None else "-")
    table.add_row("server version", str(result.server_version or "-"))
    table.add_row("detail", escape(result.detail or "-"))
    console.print(table)


@gateway_app.command("probe")
def probe_cmd(
    mode: ModeChoice = typer.Option(..., "--mode", help="Which gateway: paper or live."),
    timeout: float = typer.Option(None, "--timeout", min=0.1, max=3600,
                                  help="Seconds for the whole handshake, 0.1 to 3600 (default "
                                       "ATS_HEALTH_PROBE_TIMEOUT_SECONDS, 10)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Connect, complete the API handshake, disconnect.  Exit 0 healthy, 1 broken."""
    from ats.gateway.probe import probe_mode

    settings = load_settings()
    policy = settings.health
    result = probe_mode(mode.value, settings, timeout=timeout or policy.probe_timeout_seconds,
                        client_id=policy.probe_client_id)
    if json_out:
        print_json(result.as_dict())
    else:
        _probe_table(result)
    if not result.healthy:
        raise typer.Exit(1)


@gateway_app.command("check")
def check_cmd(
    mode: CheckModeChoice = typer.Option(CheckModeChoice.auto, "--mode",
                                         help="paper, live, or auto: the gateway the last swap left up."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """One health check (what the gateway-health watch does every few seconds): probe, update state, send due alerts.

    Exit 0 when the probe was healthy, 1 when it was not.
    """
    from ats.gateway.health import expected_mode, run_health_check
    from ats.store import open_store

    settings = load_settings()
    policy = settings.health
    store = open_store(settings.resolved_database_url)
    chosen = mode.value if is_mode(mode.value) else expected_mode(store=store)  # auto: the expected gateway
    outcome = run_health_check(chosen, store=store, settings=settings, policy=policy)
    if json_out:
        print_json(outcome.as_dict())
    else:
        _probe_table(outcome.probe)
        state = outcome.state
        colour = {"healthy": "green", "broken": "red"}.get(state.state, "yellow")
        console.print(f"state: [{colour}]{state.state}[/] since {state.as_dict()['since']}, "
                      f"{state.consecutive_failures} consecutive failure(s)", highlight=False)
        if outcome.alerts:
            console.print(f"alerts decided: {', '.join(outcome.alerts)}", highlight=False)
        if outcome.note:
            console.print(outcome.note, highlight=False)
        if outcome.pending:
            console.print(f"[yellow]{outcome.pending} alert(s) pending delivery, retried on the next check[/]")
    if not outcome.probe.healthy:
        raise typer.Exit(1)


@gateway_app.command("status")
def status_cmd(
    history: int = typer.Option(10, "--history", min=0, help="Recent probes to show per gateway."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Current health of the paper and live gateways, and their recent probes."""
    from ats.gateway.health import gateway_status
    from ats.store import open_store

    settings = load_settings()
    try:
        status = gateway_status(store=open_store(settings.resolved_database_url), history=history)
    except Exception as exc:  # noqa: BLE001 - StoreError and friends: one line
        fail(str(exc))
    if json_out:
        print_json(status)
        return
    from rich.table import Table

    summary = Table(title="gateway health")
    for column in ("gateway", "state", "since", "failures", "last reason", "last probe", "last alert",
                   "account", "pending alerts"):
        summary.add_column(column, overflow="fold")
    for entry in status.values():
        colour = {"healthy": "green", "broken": "red"}.get(entry["state"], "yellow")
        summary.add_row(entry["gateway"], f"[{colour}]{entry['state']}[/]", entry.get("since") or "-",
                        str(entry.get("consecutive_failures", "-")), entry.get("last_reason") or "-",
                        entry.get("last_probe_at") or "-", entry.get("last_alert_at") or "-",
                        entry.get("account") or "-", str(entry.get("pending_alerts", 0)))
    console.print(summary)
    for entry in status.values():
        if not entry["history"]:
            continue
        table = Table(title=f"{entry['gateway']}: last {len(entry['history'])} probes")
        for column in ("at", "healthy", "latency ms", "reason", "accounts"):
            table.add_column(column, overflow="fold")
        for probe in entry["history"]:
            latency = "-" if probe["latency_ms"] is None else f"{probe['latency_ms']:.1f}"
            table.add_row(probe["at"], "yes" if probe["healthy"] else "[red]no[/]", latency,
                          probe["reason"] or "-", probe["accounts"] or "-")
        console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(gateway_app, name="gateway")

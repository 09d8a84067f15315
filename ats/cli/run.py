"""The runner command shared by ``python -m ats.paper`` and ``python -m ats.live``.

With ``ATS_GATEWAY_CONTROLLER=sim`` (the default) and nothing answering on the mode's port, the
runner starts the embedded IB Gateway simulator on that port (its account is the configured one,
or the simulator's default ``DU1234567`` / ``U1234567``); with ``docker`` it expects the real
gateway to be up.  Exit codes: 0 stopped, 2 bad input, 3 a gate refused, 5 killed, 1 error.
"""

from __future__ import annotations

import contextlib
from typing import Any

import typer

from ats.cli._common import console, err_console, fail, load_settings, print_json

EXIT_KILLED = 5


def _gateway_answers(host: str, port: int) -> bool:
    import socket

    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def _embedded_simulator(mode: str, settings, speed: str, start: str | None, out=None):  # noqa: ANN001, ANN202
    """Start the simulator on the mode's port when the sim controller is on and nothing answers."""
    if settings.gateway_controller != "sim":
        return None
    mode_settings = settings.mode(mode)
    if _gateway_answers(mode_settings.host, mode_settings.port):
        return None
    from ats.ibsim import SimGateway

    sim = SimGateway(mode=mode, account=mode_settings.account_id, port=mode_settings.port,
                     clock=speed, start=start).start()
    (out or console).print(f"started the embedded IB Gateway simulator ({mode}, account "
                  f"{_mask(sim.account)}) on {mode_settings.host}:{sim.port}")
    return sim


def _mask(account: str) -> str:
    from ats.settings import mask_account

    return mask_account(account)


def _print_summary(summary: dict[str, Any], out=None) -> None:  # noqa: ANN001
    from rich.panel import Panel

    lines = [
        f"mode: [bold]{summary['mode']}[/]   account: {summary['account']}   gateway: {summary['gateway']}",
        f"risk caps: max notional/order {summary['risk_caps']['max_notional_per_order']}, "
        f"submit rate {summary['risk_caps']['max_order_submit_rate']}",
        f"runs until: {summary['until']}",
    ]
    for sleeve in summary["sleeves"]:
        approval = sleeve.get("approval")
        approved = f" — approved by {approval['by']} at {approval['at']}: {approval['note']}" if approval else ""
        lines.append(f"sleeve {sleeve['strategy']} on {sleeve['instrument']} {sleeve['bar_spec']} "
                     f"params {sleeve['params']}{approved}")
    title = "[bold red]REAL MONEY[/] live session" if summary["mode"] == "live" else "paper session"
    (out or console).print(Panel("\n".join(lines), title=title))


def run_command(
    mode: str,
    strategy: str | None,
    instrument: str | None,
    bar_spec: str,
    params: str | None,
    sleeves_json: str | None,
    until: str | None,
    i_understand: str | None,
    sim_speed: str,
    sim_start: str | None,
    json_out: bool,
) -> None:
    from ats.errors import AtsError, GateRefused, InputError
    from ats.runner import SessionRequest, check_gates, run_session
    from ats.sleeves import parse_sleeves_json, sleeve_from_args
    from ats.store import open_store

    settings = load_settings()
    # With --json, stdout carries only the JSON outcome; what the operator reads goes to stderr.
    human = err_console if json_out else console
    show = lambda summary: _print_summary(summary, human)  # noqa: E731
    try:
        if sleeves_json:
            if strategy or instrument:
                raise InputError("give either --sleeves-json or --strategy/--instrument, not both")
            sleeves = parse_sleeves_json(sleeves_json)
        else:
            sleeves = [sleeve_from_args(strategy, instrument, bar_spec, params)]
        from ats.runner import resolve_stop_time

        resolve_stop_time(until)
    except InputError as exc:
        fail(str(exc), exc.exit_code)
    store = open_store(settings.resolved_database_url)
    sim = None
    try:
        if mode == "paper":
            sim = _embedded_simulator(mode, settings, sim_speed, sim_start, human)
            if sim is not None and not settings.ib_paper_account_id:
                settings = settings.model_copy(update={"ib_paper_account_id": sim.account})
        request = SessionRequest(mode, sleeves, until=until, i_understand=i_understand,
                                 log_dir=settings.data_dir / "logs")
        try:
            if mode == "live":
                # Gates first (nothing connects to a live gateway before they pass); the embedded
                # simulator only stands in for the live gateway once they have.
                if settings.gateway_controller == "sim" and not settings.ib_live_account_id:
                    from ats.ibsim import DEFAULT_ACCOUNTS

                    settings = settings.model_copy(update={"ib_live_account_id": DEFAULT_ACCOUNTS["live"]})
                account, summary = check_gates(request, settings, store, show_summary=show)
                sim = _embedded_simulator(mode, settings, sim_speed, sim_start, human)
            else:
                account, summary = check_gates(request, settings, store, show_summary=show)
        except GateRefused as exc:
            fail(str(exc), exc.exit_code)
        outcome = run_session(request, settings, store, account=account)
    except AtsError as exc:
        fail(str(exc), exc.exit_code)
    finally:
        if sim is not None:
            sim.stop()
    if json_out:
        print_json(outcome.as_dict())
    else:
        colour = {"stopped": "green", "killed": "yellow"}.get(outcome.status, "red")
        console.print(f"session {outcome.session_id} [{colour}]{outcome.status}[/]: {outcome.reason}")
        orders = outcome.summary.get("orders", {})
        console.print(f"orders: {orders}  realised PnL: {outcome.summary.get('realized_pnl')}  "
                      f"positions: {outcome.summary.get('positions')}")
    if outcome.status == "killed":
        raise typer.Exit(EXIT_KILLED)
    if outcome.status == "error":
        raise typer.Exit(1)


def make_app(mode: str) -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    live = mode == "live"

    @app.command(help=(
        "Run a LIVE (real money) trading session behind every gate: edition flag, U… account, "
        "paper rung, approval, one gateway at a time, typed confirmation."
        if live else "Run a paper trading session against the paper gateway (DU… account)."))
    def main(
        strategy: str | None = typer.Option(None, "--strategy", help="Registered strategy, e.g. ibs_reversion."),
        instrument: str | None = typer.Option(None, "--instrument", help="SYMBOL.VENUE, e.g. QQQ.NASDAQ."),
        bar_spec: str = typer.Option("1-DAY-LAST", "--bar-spec", help="STEP-AGGREGATION-PRICE_TYPE."),
        params: str | None = typer.Option(None, "--params", help='Strategy params as JSON, e.g. \'{"buy_threshold": 0.15}\'.'),
        sleeves_json: str | None = typer.Option(None, "--sleeves-json", help="A JSON list (or file) of {strategy, instrument, bar_spec, params}."),
        until: str | None = typer.Option(None, "--until", help="Stop at HH:MM America/New_York (or an ISO date-time); default market close."),
        i_understand: str | None = typer.Option(None, "--i-understand", help="The live account id, replacing the typed prompt.", hidden=not live),
        sim_speed: str = typer.Option("realtime", "--sim-speed", help="Embedded simulator clock: realtime, manual or seconds per trading day."),
        sim_start: str | None = typer.Option(None, "--sim-start", help="Embedded simulator: first replayed day (YYYY-MM-DD)."),
        json_out: bool = typer.Option(False, "--json", help="Print the session outcome as JSON."),
    ) -> None:
        run_command(mode, strategy, instrument, bar_spec, params, sleeves_json, until,
                    i_understand if live else None, sim_speed, sim_start, json_out)

    return app

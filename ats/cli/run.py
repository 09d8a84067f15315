"""The runner command shared by ``python -m ats.paper`` and ``python -m ats.live``.

The gates run in one call (:func:`ats.trading.gates.check_gates`, the sequence the flows run
step by step).  Its gateway step: with ``ATS_GATEWAY_CONTROLLER=sim`` (the default) and nothing
answering on the mode's port, the runner starts the embedded IB Gateway simulator on that port
through the sim controller (its account is the configured one, or the simulator's default
``DU1234567`` / ``U1234567``); with ``docker`` or ``external`` it expects the real gateway to be
up and never stops one.  Exit codes: 0 stopped, 2 bad input, 3 a gate refused, 5 killed, 1 error.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from ats.cli._common import console, err_console, fail, load_settings, print_json

if TYPE_CHECKING:
    from rich.console import Console

    from ats.core.settings import Mode, Settings
    from ats.gateway.controllers import SimController

EXIT_KILLED = 5


def _gateway_answers(host: str, port: int) -> bool:
    import socket

    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def _embedded_gateway(mode: Mode, settings: Settings, speed: str, start: str | None,
                      out: Console | None = None) -> SimController | None:
    """The CLI's gateway step: with ``ATS_GATEWAY_CONTROLLER=sim`` and nothing answering on the
    mode's port, start the embedded simulator through the sim controller (the one way ats starts
    it, as the flows' swap does); otherwise leave the gateways as they are (the CLI never stops a
    real gateway: the go-live flow or ``ats gateway swap`` does)."""
    if settings.gateway.controller != "sim":
        return None
    mode_settings = settings.mode(mode)
    if _gateway_answers(mode_settings.host, mode_settings.port):
        return None
    from ats.gateway.controllers import SimController

    controller = SimController(settings, clock=speed, start=start)
    controller.start(mode)
    (out or console).print(f"started the embedded IB Gateway simulator ({mode}, account "
                           f"{_mask(mode_settings.account_id or '')}) on {mode_settings.host}:{controller.port(mode)}")
    return controller


def _embedded_account(mode: Mode, settings: Settings) -> Settings:
    """With the sim controller and no account configured, the embedded simulator's account —
    only when nothing answers on the mode's port, where the simulator will start.  A gateway
    already answering there may be a real one: its account is never made up (the account gate
    then says to set ``ATS_IB_<MODE>_ACCOUNT_ID``)."""
    if settings.gateway.controller != "sim" or settings.mode(mode).account_id:
        return settings
    mode_settings = settings.mode(mode)
    if _gateway_answers(mode_settings.host, mode_settings.port):
        return settings
    from ats.ibsim import DEFAULT_ACCOUNTS

    return settings.with_account(mode, DEFAULT_ACCOUNTS[mode])


def _mask(account: str) -> str:
    from ats.core.settings import mask_account

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
        lines.append(escape(f"sleeve {sleeve['strategy']} on {sleeve['instrument']} {sleeve['bar_spec']} "
                            f"params {sleeve['params']}{approved}"))  # recorded text, not console markup
    title = "[bold red]REAL MONEY[/] live session" if summary["mode"] == "live" else "paper session"
    (out or console).print(Panel("\n".join(lines), title=title))


def run_command(
    mode: Mode,
    strategy: str | None,
    instrument: str | None,
    bar_spec: str,
    params: str | None,
    sleeves_json: str | None,
    until: str | None,
    for_duration: str | None,
    i_understand: str | None,
    sim_speed: str,
    sim_start: str | None,
    json_out: bool,
) -> None:
    from ats.core.errors import AtsError, GateRefused, InputError
    from ats.core.sleeves import parse_sleeves_json, sleeve_from_args
    from ats.store import open_store
    from ats.trading.gates import check_gates
    from ats.trading.runner import SessionRequest, run_session

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
        from ats.trading.stop_time import check_stop_request, parse_duration

        for_seconds = parse_duration(for_duration)
        check_stop_request(until, for_seconds)
    except InputError as exc:
        fail(str(exc), exc.exit_code)
    store = open_store(settings.resolved_database_url)
    settings = _embedded_account(mode, settings)
    embedded: list[SimController] = []

    def start_gateway() -> bool:  # the sequence's gateway step, once the gates before it passed
        controller = _embedded_gateway(mode, settings, sim_speed, sim_start, human)
        if controller is not None:
            embedded.append(controller)
        return controller is not None

    try:
        request = SessionRequest(mode, sleeves, until=until, for_seconds=for_seconds, i_understand=i_understand,
                                 log_dir=settings.data_dir / "logs",
                                 startup_deadline_s=settings.session.startup_timeout_seconds)
        try:
            account, summary = check_gates(request, settings, store, start_gateway=start_gateway, show_summary=show)
        except GateRefused as exc:
            fail(str(exc), exc.exit_code)
        request.embedded_simulator = bool(embedded)
        outcome = run_session(request, settings, store, account=account)
    except AtsError as exc:
        fail(str(exc), exc.exit_code)
    finally:
        for controller in embedded:
            controller.close()
    if json_out:
        print_json(outcome.as_dict())
    else:
        colour = {"stopped": "green", "killed": "yellow"}.get(outcome.status, "red")
        console.print(f"session {outcome.session_id} [{colour}]{outcome.status}[/]: {escape(outcome.reason)}")
        orders = outcome.summary.get("orders", {})
        console.print(f"orders: {orders}  realised PnL: {outcome.summary.get('realized_pnl')}  "
                      f"positions: {outcome.summary.get('positions')}")
    if outcome.status == "killed":
        raise typer.Exit(EXIT_KILLED)
    if outcome.status == "error":
        raise typer.Exit(1)


def make_app(mode: Mode) -> typer.Typer:
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
        for_duration: str | None = typer.Option(None, "--for", help="Run this long from the moment the node is running (90s, 15m, 1h30m); instead of --until."),
        i_understand: str | None = typer.Option(None, "--i-understand", help="The live account id, replacing the typed prompt.", hidden=not live),
        sim_speed: str = typer.Option("realtime", "--sim-speed", help="Embedded simulator clock: realtime, manual or seconds per trading day."),
        sim_start: str | None = typer.Option(None, "--sim-start", help="Embedded simulator: first replayed day (YYYY-MM-DD)."),
        json_out: bool = typer.Option(False, "--json", help="Print the session outcome as JSON."),
    ) -> None:
        run_command(mode, strategy, instrument, bar_spec, params, sleeves_json, until, for_duration,
                    i_understand if live else None, sim_speed, sim_start, json_out)

    return app

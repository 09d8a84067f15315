"""``ats sim``: run the simulated IB Gateway in the foreground."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from ats.cli._common import fail

SIM_HELP = (
    "Run the simulated IB Gateway (TWS API, server version 200) in the foreground until Ctrl-C.\n\n"
    "The real Nautilus IB adapter and the stock ibapi client connect to 127.0.0.1:PORT as to IB Gateway. "
    "It serves contracts and daily bars replayed from CSV files (the QQQ.NASDAQ bars shipped with ats "
    "unless --data is given), fills MKT/LMT orders on a cash account, answers reconciliation after a "
    "restart, and logs every connection and order on stderr.\n\n"
    "Faults (drop, outage, IBC restart, errors 1100/1101/1102, stall) and the market clock are driven "
    "through the JSON-lines control port (--control-port): send one JSON object per line, e.g. "
    "{\"cmd\": \"outage\", \"seconds\": 10}; commands: ping, status, ledger, drop, outage, restart, "
    "error, stall, advance."
)


CASH_MAX = 1e12
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _cash(value: float) -> float:
    # NaN and infinity passed a sign check and made every account value meaningless.
    if not (math.isfinite(value) and 0 <= value <= CASH_MAX):
        raise typer.BadParameter(f"expected a finite amount of USD from 0 to {CASH_MAX:.0f}, e.g. 100000 (got {value})")
    return value


def _log_level(value: str) -> str:
    # logging ignored an unknown name and logged at INFO, silently.
    if value.upper() not in LOG_LEVELS:
        raise typer.BadParameter(f"expected one of {', '.join(LOG_LEVELS)} (got {value!r})")
    return value.upper()


def register(app: typer.Typer) -> None:
    """Add the ``sim`` command to ``app``."""
    app.command("sim", help=SIM_HELP, no_args_is_help=False)(sim)


def sim(
    mode: Annotated[str, typer.Option(help="paper (account DU…) or live (account U…).")] = "paper",
    port: Annotated[
        int | None, typer.Option(help="API port on 127.0.0.1, 0..65535; 0 picks a free one (default 4002 paper, 4001 live).",
                                 min=0, max=65535)
    ] = None,
    account: Annotated[
        str | None, typer.Option(help="Managed account id (default DU1234567 or U1234567 by mode).")
    ] = None,
    data: Annotated[
        list[str] | None,
        typer.Option(help="SYMBOL.VENUE=FILE.csv with columns date,open,high,low,close,volume; repeatable."),
    ] = None,
    speed: Annotated[
        str, typer.Option(help="Market clock: manual, realtime, or seconds of wall time per trading day.")
    ] = "realtime",
    start: Annotated[
        str | None, typer.Option(help="First simulated trading day, YYYY-MM-DD (default: a year before the data ends).")
    ] = None,
    cash: Annotated[float, typer.Option(help="Initial cash in USD (a cash account), 0 to 1e12.", callback=_cash)] = 100_000.0,
    ledger: Annotated[Path | None, typer.Option(help="Also append every order request to this JSONL file.")] = None,
    control_port: Annotated[
        int | None, typer.Option(help="JSON-lines control port on 127.0.0.1, 0..65535 (0 = free); off if not given.",
                                 min=0, max=65535)
    ] = None,
    json_events: Annotated[
        bool, typer.Option("--json", help="Print a JSON 'ready' line with the ports on stdout.")
    ] = False,
    log_level: Annotated[
        str, typer.Option(help="Logging level for the simulator log on stderr: DEBUG, INFO, WARNING, ERROR or CRITICAL.",
                          callback=_log_level)
    ] = "INFO",
    wall_clock_time: Annotated[
        bool, typer.Option("--wall-clock-time", help="Answer reqCurrentTime with this machine's clock, as a real "
                           "gateway does (default: the simulated market clock, which marks it a simulator).")
    ] = False,
    server_version: Annotated[
        int | None, typer.Option(help="Highest TWS API version to speak, 100..223 (default 223, the highest ibapi "
                                    "knows, as a current gateway); each client gets min(its max, this).")
    ] = None,
) -> None:
    """Run the simulator until interrupted."""
    import json
    import logging
    import signal
    import sys
    import threading

    from ats.ibsim import SimGateway, SimInputError
    from ats.ibsim.versions import DEFAULT_VERSION

    files: dict[str, Path | str] = {}
    for item in data or []:
        instrument_id, eq, path = item.partition("=")
        if not eq or not path:
            fail(f"bad --data {item!r}: expected SYMBOL.VENUE=FILE.csv, e.g. SPY.ARCA=spy.csv", 2)
        if not Path(path).is_file():
            fail(f"bad --data {item!r}: no such file {path}", 2)
        files[instrument_id] = path
    logging.basicConfig(
        level=getattr(logging, log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr,
    )
    if port is None:
        port = 4001 if mode == "live" else 4002
    try:
        gateway = SimGateway(
            mode=mode, account=account, port=port, data=files or None, clock=speed, start=start, cash=cash,
            ledger_path=ledger, control_port=control_port, wall_clock_time=wall_clock_time,
            server_version=DEFAULT_VERSION if server_version is None else server_version,
        )
        gateway.start()
    except SimInputError as exc:
        fail(str(exc), exc.exit_code)
    except OSError as exc:
        fail(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}", 1)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if json_events:
        ready = {"event": "ready", "port": gateway.port, "control_port": gateway.control_port,
                 "account": gateway.account, "mode": gateway.mode, "date": gateway.current_date.isoformat(),
                 "server_version": gateway.server_version}
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
    else:
        control = f", control port {gateway.control_port}" if gateway.control_port is not None else ""
        typer.echo(
            f"IB Gateway simulator ({gateway.mode}, account {gateway.account}) on 127.0.0.1:{gateway.port}"
            f"{control}; market at {gateway.current_date}; TWS API up to v{gateway.server_version}. Ctrl-C to stop."
        )
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        gateway.stop()

"""``ats sessions list|show|watch`` and ``ats kill``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from ats.cli._common import console, fail, load_settings, print_json

if TYPE_CHECKING:
    from rich.table import Table

    from ats.governance.sessions import SessionRecord
    from ats.store import Store

sessions_app = typer.Typer(help="Trading sessions (paper and live) and their telemetry.", no_args_is_help=True)


@sessions_app.command("list")
def list_cmd(
    mode: str | None = typer.Option(None, "--mode", help="paper or live."),
    limit: int = typer.Option(50, "--limit", min=1),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List sessions, newest first."""
    from ats.governance.sessions import list_sessions
    from ats.store import open_store

    if mode not in (None, "paper", "live"):
        fail(f"--mode {mode!r}: expected paper or live", 2)
    rows = list_sessions(mode, limit=limit, store=open_store(load_settings().resolved_database_url))
    if json_out:
        print_json([r.as_dict() for r in rows])
        return
    from rich.table import Table

    table = Table(title=f"sessions ({len(rows)})")
    for column in ("id", "mode", "status", "started", "stopped", "account", "gateway", "sleeves", "reason"):
        table.add_column(column, overflow="fold")
    for r in rows:
        sleeves = ", ".join(f"{s['strategy']}@{s['instrument']}" for s in r.sleeves)
        info = r.gateway_info
        gateway = (f"{info.get('kind', 'unknown')} v{info.get('server_version')}"
                   + (" real-time" if info.get("real_time") else "")) if info else "unknown"
        table.add_row(r.id[:8], r.mode, r.status, r.started_at, r.stopped_at or "", r.account_masked,
                      escape(gateway), escape(sleeves), escape(r.reason or ""))
    console.print(table)


@sessions_app.command("show")
def show_cmd(session_id: str = typer.Argument(..., help="Session id (or a unique prefix)."),
             json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """One session: record, last telemetry snapshot, bars received, order events."""
    from ats.governance.sessions import session_detail
    from ats.store import open_store

    detail = session_detail(session_id, store=open_store(load_settings().resolved_database_url))
    if json_out:
        print_json(detail)
        return
    console.print_json(data=detail, default=str)


WATCH_REFRESH_S = 1.0


@sessions_app.command("watch")
def watch_cmd(session_id: str | None = typer.Argument(None, help="Session id or a unique prefix; default: the running session."),
              json_out: bool = typer.Option(False, "--json", help="Print the session and its last snapshot once, as JSON."),
              ) -> None:
    """Live view of a session's telemetry, refreshed every second until the session ends.

    The same fields as the run page's artifact (connection, trading state, last bar, positions,
    open orders, PnL, orders sent/denied, time left), read from the store's snapshots (the
    session writes one every 2 s).  When the session ends it prints the final state and exits 0.
    """
    from ats.core.errors import InputError
    from ats.governance.sessions import get_session, last_snapshot, running_sessions
    from ats.store import open_store

    store = open_store(load_settings().resolved_database_url)
    if session_id is None:
        running = running_sessions(store=store)
        if not running:
            raise InputError("no session is running; give a session id (see `ats sessions list`)")
        session_id = running[0].id
    record = get_session(session_id, store=store)
    if json_out:
        print_json({"session": record.as_dict(), "snapshot": last_snapshot(record.id, store=store)})
        return
    _watch(record.id, store)


def _watch(session_id: str, store: Store) -> None:
    """Refresh every :data:`WATCH_REFRESH_S` until the session is no longer running: a rich Live
    view on a terminal, one block per new snapshot otherwise (a pipe, a log file)."""
    import time

    from rich.live import Live

    from ats.governance.sessions import get_session, last_snapshot, runner_gone

    def read() -> tuple[SessionRecord, dict[str, Any] | None]:
        return get_session(session_id, store=store), last_snapshot(session_id, store=store)

    record, snapshot = read()
    if console.is_terminal:
        with Live(_watch_view(record, snapshot), console=console, auto_refresh=False) as live:
            while record.status == "running" and not runner_gone(record):
                time.sleep(WATCH_REFRESH_S)
                record, snapshot = read()
                live.update(_watch_view(record, snapshot), refresh=True)
    else:
        shown = None
        while True:
            if snapshot is not None and snapshot["ts"] != shown and record.status == "running":
                shown = snapshot["ts"]
                console.print(_watch_view(record, snapshot))
            if record.status != "running" or runner_gone(record):
                break
            time.sleep(WATCH_REFRESH_S)
            record, snapshot = read()
        console.print(_watch_view(record, snapshot))
    if record.status == "running":  # its process died without finishing the row
        fail(f"session {record.id}: its runner (pid {record.pid} on {record.host}) is gone; "
             "the next session of the mode marks it error", 1)
    console.print(f"session {record.id} ended: [bold]{record.status}[/] — {escape(record.reason or '')}", highlight=False)


def _watch_view(record: SessionRecord, snapshot: dict[str, Any] | None) -> Table:
    """The table ``ats sessions watch`` shows: the run page's rows (:func:`ats.trading.run_link.telemetry_rows`)."""
    from rich.table import Table

    from ats.trading.run_link import telemetry_rows

    title = (f"[bold white on red] REAL MONEY [/] live session {record.id}" if record.mode == "live"
             else f"paper session {record.id}")
    status = record.status if record.status == "running" else f"{record.status} — {record.reason or ''}"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("status", escape(status))
    table.add_row("snapshot", snapshot["ts"] if snapshot else "none yet (the node is starting)")
    for name, value in telemetry_rows(snapshot or {}) if snapshot else ():
        table.add_row(name, escape(value))
    return table


def kill_cmd(
    session: str | None = typer.Option(None, "--session", help="Kill the mode of this running session."),
    mode: str | None = typer.Option(None, "--mode", help="paper or live."),
    all_modes: bool = typer.Option(False, "--all", help="Both modes."),
    reason: str | None = typer.Option(None, "--reason", help="Why (audited); default 'operator kill'; required with --clear."),
    clear: bool = typer.Option(False, "--clear", help="Clear a latched kill switch (needs --mode and --reason)."),
) -> None:
    """Halt running sessions at once and latch the kill switch (a new session refuses until cleared).

    Killing needs no reason (in a hurry, "operator kill" is recorded); clearing does: it is the
    decision that trading may resume, and the audit log must say why.
    """
    from ats.governance import killswitch

    settings = load_settings()
    store = None  # opened (at the settings' URL) only once the input is known good
    if clear:
        seq = killswitch.clear_mode(mode=mode, session=session, all_modes=all_modes, reason=reason,
                                    actor=settings.operator, store=store)
        console.print(f"cleared the {mode} kill switch (audit seq {seq})")
        return
    latches = killswitch.kill(session=session, mode=mode, all_modes=all_modes, reason=reason,
                              actor=settings.operator, store=store)
    for latch in latches:
        console.print(f"kill switch latched for {latch.mode}: running {latch.mode} sessions halt now; "
                      f"clear with `ats kill --clear --mode {latch.mode} --reason …`")


def register(app: typer.Typer) -> None:
    app.add_typer(sessions_app, name="sessions")
    app.command("kill")(kill_cmd)

"""``ats sessions list|show`` and ``ats kill``."""

from __future__ import annotations

import typer

from ats.cli._common import console, fail, load_settings, print_json

sessions_app = typer.Typer(help="Trading sessions (paper and live) and their telemetry.", no_args_is_help=True)


@sessions_app.command("list")
def list_cmd(
    mode: str | None = typer.Option(None, "--mode", help="paper or live."),
    limit: int = typer.Option(50, "--limit", min=1),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List sessions, newest first."""
    from ats.sessions import list_sessions
    from ats.store import open_store

    if mode not in (None, "paper", "live"):
        fail(f"--mode {mode!r}: expected paper or live", 2)
    rows = list_sessions(mode, limit=limit, store=open_store(load_settings().resolved_database_url))
    if json_out:
        print_json([r.as_dict() for r in rows])
        return
    from rich.table import Table

    table = Table(title=f"sessions ({len(rows)})")
    for column in ("id", "mode", "status", "started", "stopped", "account", "sleeves", "reason"):
        table.add_column(column, overflow="fold")
    for r in rows:
        sleeves = ", ".join(f"{s['strategy']}@{s['instrument']}" for s in r.sleeves)
        table.add_row(r.id[:8], r.mode, r.status, r.started_at, r.stopped_at or "", r.account_masked, sleeves, r.reason or "")
    console.print(table)


@sessions_app.command("show")
def show_cmd(session_id: str = typer.Argument(..., help="Session id (or a unique prefix)."),
             json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """One session: record, last telemetry snapshot, bars received, order events."""
    from ats.sessions import session_detail
    from ats.store import open_store

    detail = session_detail(session_id, store=open_store(load_settings().resolved_database_url))
    if json_out:
        print_json(detail)
        return
    console.print_json(data=detail, default=str)


def kill_cmd(
    session: str | None = typer.Option(None, "--session", help="Kill the mode of this running session."),
    mode: str | None = typer.Option(None, "--mode", help="paper or live."),
    all_modes: bool = typer.Option(False, "--all", help="Both modes."),
    reason: str = typer.Option("operator kill", "--reason", help="Why (audited)."),
    clear: bool = typer.Option(False, "--clear", help="Clear a latched kill switch (needs --mode and --reason)."),
) -> None:
    """Halt running sessions at once and latch the kill switch (a new session refuses until cleared)."""
    from ats import killswitch
    from ats.sessions import get_session
    from ats.store import open_store

    settings = load_settings()
    store = open_store(settings.resolved_database_url)
    if clear:
        if mode not in ("paper", "live") or session or all_modes:
            fail("--clear needs exactly --mode paper|live (and --reason)", 2)
        seq = killswitch.clear(mode, reason, settings.operator, store=store)
        console.print(f"cleared the {mode} kill switch (audit seq {seq})")
        return
    chosen = [bool(session), bool(mode), all_modes]
    if sum(chosen) != 1:
        fail("give exactly one of --session ID, --mode paper|live, --all", 2)
    if mode is not None and mode not in ("paper", "live"):
        fail(f"--mode {mode!r}: expected paper or live", 2)
    session_id = None
    if session:
        record = get_session(session, store=store)
        modes, session_id = [record.mode], record.id
    else:
        modes = ["paper", "live"] if all_modes else [mode]
    latches = killswitch.latch(modes, reason, settings.operator, session_id=session_id, store=store)
    for latch in latches:
        console.print(f"kill switch latched for {latch.mode}: running {latch.mode} sessions halt now; "
                      f"clear with `ats kill --clear --mode {latch.mode} --reason …`")


def register(app: typer.Typer) -> None:
    app.add_typer(sessions_app, name="sessions")
    app.command("kill")(kill_cmd)

"""``ats audit list|verify``."""

from __future__ import annotations

import typer

from ats.cli._common import console, fail, load_settings, print_json

audit_app = typer.Typer(help="The append-only, hash-chained audit log.", no_args_is_help=True)


@audit_app.command("list")
def list_cmd(
    action: str | None = typer.Option(None, "--action", help="Only rows of this action, e.g. approval.approve."),
    limit: int = typer.Option(50, "--limit", min=1, help="Newest N rows."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the newest audit rows, oldest first."""
    from ats import audit
    from ats.store import open_store

    rows = audit.list_rows(action=action, limit=limit, store=open_store(load_settings().resolved_database_url))
    if json_out:
        print_json([row.as_dict() for row in rows])
        return
    from rich.table import Table

    table = Table(title=f"audit log ({len(rows)} rows)")
    for column in ("seq", "ts", "actor", "action", "subject", "payload", "hash"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(str(row.seq), row.ts, row.actor, row.action, row.subject, row.payload, row.hash[:12])
    console.print(table)


@audit_app.command("verify")
def verify_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Walk the hash chain: exit 0 if intact, 4 naming the first bad sequence number if not."""
    from ats import audit
    from ats.errors import AuditChainBroken
    from ats.store import open_store

    try:
        result = audit.verify(open_store(load_settings().resolved_database_url))
    except AuditChainBroken as exc:
        if json_out:
            print_json({"ok": False, "first_bad_seq": exc.seq, "reason": exc.reason})
            raise typer.Exit(4) from None
        fail(f"audit chain broken at seq {exc.seq}: {exc.reason}", 4)
    if json_out:
        print_json({"ok": True, "rows": result.rows, "head_hash": result.head_hash})
    else:
        console.print(f"audit log intact: {result.rows} rows, head {result.head_hash}")


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")

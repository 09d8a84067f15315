"""``ats audit list|verify|anchor``."""

from __future__ import annotations

import typer

from ats.cli._common import console, fail, load_settings, print_json

audit_app = typer.Typer(help="The append-only, hash-chained, keyed and anchored audit log.", no_args_is_help=True)


@audit_app.command("list")
def list_cmd(
    action: str | None = typer.Option(None, "--action", help="Only rows of this action, e.g. approval.approve."),
    limit: int = typer.Option(50, "--limit", min=1, help="Newest N rows."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the newest audit rows, oldest first."""
    from ats.governance import audit
    from ats.store import open_store

    rows = audit.list_rows(action=action, limit=limit, store=open_store(load_settings().resolved_database_url))
    if json_out:
        print_json([row.as_dict() for row in rows])
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"audit log ({len(rows)} rows)")
    for column in ("seq", "ts", "actor", "action", "subject", "payload", "hash"):
        table.add_column(column, overflow="fold")
    for row in rows:
        # Recorded text is shown as written, never read as console markup (a note "[/]" or
        # "[bold]" would otherwise break or change the view of an append-only log).
        table.add_row(str(row.seq), row.ts, escape(row.actor), escape(row.action), escape(row.subject),
                      escape(row.payload), row.hash[:12])
    console.print(table)


@audit_app.command("verify")
def verify_cmd(
    anchor: str | None = typer.Option(None, "--anchor", metavar="SEQ:HASH",
                                      help="Also require a head published earlier (by `ats audit anchor`)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Walk the chain (hashes, HMACs under the audit key, the anchored head): exit 0 if intact, 4 naming
    the first bad sequence number if not, 2 if the key or anchor file is unusable."""
    from ats.core.errors import AuditChainBroken
    from ats.governance import audit
    from ats.store import open_store

    settings = load_settings()
    expect = _parse_anchor(anchor) if anchor else None
    try:
        result = audit.verify(open_store(settings.resolved_database_url), expect=expect)
    except AuditChainBroken as exc:
        if json_out:
            print_json({"ok": False, "first_bad_seq": exc.seq, "reason": exc.reason})
            raise typer.Exit(4) from None
        fail(f"audit chain broken at seq {exc.seq}: {exc.reason}", 4)
    if json_out:
        print_json({"ok": True, "rows": result.rows, "head_hash": result.head_hash, "keyed_rows": result.keyed_rows,
                    "rows_before_keying": result.rows_before_keying,
                    "anchor": result.anchor.as_dict() if result.anchor else None, "anchor_file": result.anchor_file})
        return
    keyed = f"{result.keyed_rows} keyed"
    if result.rows_before_keying:
        keyed += f", {result.rows_before_keying} rows before keying (hash only)"
    anchored = (f"anchored head seq {result.anchor.seq} present" if result.anchor
                else f"no anchor for this store in {result.anchor_file}")
    console.print(f"audit log intact: {result.rows} rows, head {result.head_hash} ({keyed}; {anchored})",
                  highlight=False)


def _parse_anchor(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    if not seq.strip().isdigit() or len(digest.strip()) != 64:
        fail(f"--anchor {text!r}: expected SEQ:HASH as published by `ats audit anchor`, e.g. 120:3f9a…", 2)
    return int(seq), digest.strip().lower()


@audit_app.command("anchor")
def anchor_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Publish the head (seq, hash, HMAC) outside the database: the anchor file and ATS_ALERT_URLS (apprise).
    Scheduled by the `audit-anchor` deployment.  Exit 1 if an apprise target did not take it."""
    from ats.governance.audit_anchor import publish
    from ats.store import open_store

    settings = load_settings()
    anchor, delivered = publish(store=open_store(settings.resolved_database_url), settings=settings)
    if json_out:
        print_json({"anchor": anchor.as_dict(), "file": str(settings.audit.resolved_anchor_file),
                    "delivered": delivered})
    else:
        sent = {None: "no ATS_ALERT_URLS: file only", True: "sent through apprise",
                False: "NOT delivered to every apprise target"}[delivered]
        console.print(f"anchored audit head seq {anchor.seq} {anchor.hash} in {settings.audit.resolved_anchor_file} "
                      f"({sent})", highlight=False)
    if delivered is False:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")

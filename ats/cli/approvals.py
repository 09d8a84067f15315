"""``ats approve-live``, ``ats revoke-live``, ``ats approvals``."""

from __future__ import annotations

import typer

from ats.cli._common import console, load_settings, print_json


def approve_live(
    strategy: str = typer.Option(..., "--strategy", help="Registered strategy name, e.g. ibs_reversion."),
    instrument: str = typer.Option(..., "--instrument", help="SYMBOL.VENUE, e.g. QQQ.NASDAQ."),
    note: str = typer.Option(..., "--note", help="Why this sleeve may trade real money (required)."),
) -> None:
    """Record an audited go-live approval, pinned to the strategy's code fingerprint."""
    from ats import approvals
    from ats.store import open_store

    settings = load_settings()
    approval = approvals.approve_live(strategy, instrument, note, settings.operator,
                                      store=open_store(settings.resolved_database_url))
    console.print(
        f"approved {approval.strategy} on {approval.instrument} for live trading "
        f"(by {approval.approved_by}, code {approval.fingerprint[:12]}, audit seq {approval.audit_seq})"
    )


def revoke_live(
    strategy: str = typer.Option(..., "--strategy", help="Registered strategy name."),
    instrument: str = typer.Option(..., "--instrument", help="SYMBOL.VENUE."),
    note: str = typer.Option("", "--note", help="Why (recorded in the audit log)."),
) -> None:
    """Revoke a go-live approval (a new audited record; nothing is deleted)."""
    from ats import approvals
    from ats.store import open_store

    settings = load_settings()
    seq = approvals.revoke_live(strategy, instrument, settings.operator, note,
                                store=open_store(settings.resolved_database_url))
    console.print(f"revoked the go-live approval of {strategy} on {instrument} (audit seq {seq})")


def list_approvals(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the current go-live approvals."""
    from ats import approvals
    from ats.store import open_store

    current = approvals.current_approvals(store=open_store(load_settings().resolved_database_url))
    if json_out:
        print_json([a.as_dict() for a in current])
        return
    from rich.table import Table

    table = Table(title=f"current go-live approvals ({len(current)})")
    for column in ("strategy", "instrument", "approved by", "at", "code", "note"):
        table.add_column(column, overflow="fold")
    for a in current:
        table.add_row(a.strategy, a.instrument, a.approved_by, a.approved_at, a.fingerprint[:12], a.note)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("approve-live")(approve_live)
    app.command("revoke-live")(revoke_live)
    app.command("approvals")(list_approvals)

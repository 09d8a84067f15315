"""``ats approve-live``, ``ats revoke-live``, ``ats approvals``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from ats.cli._common import console, describe_set, load_settings, print_json

if TYPE_CHECKING:
    from ats.store import Store

PARAMS_HELP = "Strategy params as JSON: the set approved (default: the strategy's defaults)."
BAR_SPEC_HELP = "Bar spec STEP-AGGREGATION-PRICE_TYPE of the set approved."


def approve_live(
    strategy: str = typer.Option(..., "--strategy", help="Registered strategy name, e.g. ibs_reversion."),
    instrument: str = typer.Option(..., "--instrument", help="SYMBOL.VENUE, e.g. QQQ.NASDAQ."),
    note: str = typer.Option(..., "--note", help="Why this sleeve may trade real money (required)."),
    params: str | None = typer.Option(None, "--params", help=PARAMS_HELP),
    bar_spec: str = typer.Option("1-DAY-LAST", "--bar-spec", help=BAR_SPEC_HELP),
) -> None:
    """Record an audited go-live approval, pinned to the strategy's code fingerprint, params and bar spec."""
    from ats.governance import approvals
    from ats.store import open_store

    settings = load_settings()
    approval = approvals.approve_live(strategy, instrument, note, settings.operator, params=params,
                                      bar_spec=bar_spec, store=open_store(settings.resolved_database_url))
    console.print(
        f"approved {approval.strategy} on {approval.instrument} for live trading with {describe_set(approval.pinned)} "
        f"(by {approval.approved_by}, code {approval.fingerprint[:12]}, audit seq {approval.audit_seq})",
        highlight=False, markup=False,
    )


def revoke_live(
    strategy: str = typer.Option(..., "--strategy", help="Registered strategy name."),
    instrument: str = typer.Option(..., "--instrument", help="SYMBOL.VENUE."),
    note: str = typer.Option("", "--note", help="Why (recorded in the audit log)."),
    params: str | None = typer.Option(None, "--params", help="Strategy params as JSON: the set revoked."),
    bar_spec: str = typer.Option("1-DAY-LAST", "--bar-spec", help="Bar spec of the set revoked."),
) -> None:
    """Revoke the go-live approval of one params/bar-spec set (a new audited record; nothing is deleted)."""
    from ats.core.pins import param_set
    from ats.governance import approvals
    from ats.store import open_store

    settings = load_settings()
    store = open_store(settings.resolved_database_url)
    seq = approvals.revoke_live(strategy, instrument, settings.operator, note, params=params, bar_spec=bar_spec,
                                store=store)
    revoked = param_set(strategy, instrument, params, bar_spec)
    console.print(f"revoked the go-live approval of {strategy} on {instrument} with {revoked.describe()} "
                  f"(audit seq {seq})", highlight=False, markup=False)
    for other in approvals.approved_sets(strategy, instrument, store=store):
        console.print(f"still approved: {other.describe()} (revoke with {other.cli_args()})",
                      highlight=False, markup=False)
    _say_which_live_session_halts(store)


def _say_which_live_session_halts(store: Store) -> None:
    """A running live session that trades a revoked set halts on it (it reads its approvals every
    second): say so, so the operator knows what the revocation did."""
    from ats.governance import approvals
    from ats.governance.sessions import running_sessions

    for record in running_sessions("live", store=store):
        revoked = approvals.revocation_among(record.sleeve_list(), store=store)
        if revoked is not None:
            console.print(f"the running live session {record.id} trades it: it halts within a second "
                          "(trading HALTED, open orders cancelled, node stopped)", highlight=False, markup=False)


def list_approvals(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the current go-live approvals."""
    from ats.governance import approvals
    from ats.store import open_store

    current = approvals.current_approvals(store=open_store(load_settings().resolved_database_url))
    if json_out:
        print_json([a.as_dict() for a in current])
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"current go-live approvals ({len(current)})")
    for column in ("strategy", "instrument", "params", "bar spec", "approved by", "at", "code", "note"):
        table.add_column(column, overflow="fold")
    for a in current:
        pinned = a.pinned
        table.add_row(escape(a.strategy), escape(a.instrument),
                      escape(pinned.params_json) if pinned else "(before pinning)", escape(a.bar_spec or "—"),
                      escape(a.approved_by), a.approved_at, a.fingerprint[:12], escape(a.note))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("approve-live")(approve_live)
    app.command("revoke-live")(revoke_live)
    app.command("approvals")(list_approvals)

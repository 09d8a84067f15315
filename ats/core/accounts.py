"""IB account ids: the one rule for which id belongs to which mode.

A paper account is ``DU`` followed by digits, a live account ``U`` followed by digits.  The
settings, the gates, the gateway probe and the simulator all ask here.  (Masking an id for display
is :mod:`ats.core.masking`'s; it also knows the advisor forms ``F…``/``DF…``.)
"""

from __future__ import annotations

import re

from ats.core.errors import InputError
from ats.core.masking import mask_account

# ASCII digits only, and \Z not $: ``$`` also matches before a trailing newline ("U1234567\n").
LIVE_ACCOUNT_RE = re.compile(r"^U\d+\Z", re.ASCII)
PAPER_ACCOUNT_RE = re.compile(r"^DU\d+\Z", re.ASCII)
ACCOUNT_RE = {"paper": PAPER_ACCOUNT_RE, "live": LIVE_ACCOUNT_RE}
ACCOUNT_FORM = {"paper": "DU followed by digits", "live": "U followed by digits"}
ACCOUNT_PREFIX = {"paper": "DU…", "live": "U…"}  # the form in a gate's one-line refusal
# The simulator's default accounts (and the demo's): one of each form.
EXAMPLE_ACCOUNT = {"paper": "DU1234567", "live": "U1234567"}


def account_mode(account_id: str | None) -> str | None:
    """``"paper"`` or ``"live"`` by the form of ``account_id``; ``None`` if it has neither."""
    for mode, pattern in ACCOUNT_RE.items():
        if pattern.match(account_id or ""):
            return mode
    return None


def is_account_of(mode: str, account_id: str | None) -> bool:
    """Has ``account_id`` the form of ``mode`` (``"paper"``: ``DU``+digits, ``"live"``: ``U``+digits)?"""
    return mode in ACCOUNT_RE and account_mode(account_id) == mode


def account_problem(account_id: str, mode: str) -> str | None:
    """Why ``account_id`` is not an account id of ``mode`` (never the id itself), or ``None``."""
    if is_account_of(mode, account_id):
        return None
    form = ACCOUNT_FORM[mode]
    if account_id != account_id.strip() or any(not ch.isprintable() for ch in account_id):
        return (f"expected a {mode} account id: {form} only (this one has whitespace or a control "
                "character, e.g. a trailing newline from a pasted value)")
    return f"expected a {mode} account id: {form}" + (" (a DU… id is a paper account)" if mode == "live" else "")


def check_account_id(account_id: str, mode: str) -> str:
    """Return ``account_id`` if it has the form of ``mode``; else raise :class:`InputError` (masked id)."""
    if not is_account_of(mode, account_id):
        raise InputError(f"{mode} account id {mask_account(account_id)!s} is not a {mode} account: "
                         f"expected {ACCOUNT_FORM.get(mode, 'paper or live')}")
    return account_id

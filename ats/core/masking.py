"""Account-id masking: the one rule for display, alerts and log files (``U1234567`` → ``U***4567``).

Standard library only: the node's log filter (:mod:`ats.trading.node_log`) runs it in a small process
of its own that must start at once.
"""

from __future__ import annotations

import re

# IB account ids: a U/DU (individual, paper) or F/DF (advisor) prefix and digits.  No word
# boundary on the left: Nautilus writes them glued to other text (``INTERACTIVE_BROKERS-DU1234567``),
# and masking a look-alike costs nothing while missing an id leaks it.
ACCOUNT_ID_RE = re.compile(r"(?:DU|DF|U|F)\d{4,}", re.ASCII)


def mask_account(account_id: str | None) -> str:
    """Mask an IB account id for display and alerts: ``U1234567`` → ``U***4567``."""
    if not account_id:
        return "(not set)"
    prefix = account_id[:2] if account_id.startswith(("DU", "DF")) else account_id[:1]
    tail = account_id[-4:] if len(account_id) > len(prefix) + 4 else ""
    return f"{prefix}***{tail}"


def mask_accounts_in(text: str) -> str:
    """``text`` with every IB account id in it masked."""
    return ACCOUNT_ID_RE.sub(lambda m: mask_account(m.group(0)), text)

"""A simulated IB Gateway speaking the TWS API wire protocol (server version 200).

The real NautilusTrader IB adapter and the stock ``ibapi`` client connect to it over TCP as
they would to IB Gateway: contracts, daily bars replayed on a controllable clock, orders and
fills on a cash account, reconciliation after a restart, an order ledger, and injectable
faults.  Start it in-process with :class:`SimGateway` or as a process with
``python -m ats.ibsim`` / ``ats sim``.
"""

from __future__ import annotations

from ats.ibsim.errors import SimInputError
from ats.ibsim.market import Market, SimClock, default_data_path
from ats.ibsim.server import DEFAULT_ACCOUNTS, ControlClient, SimGateway, validate_account
from ats.ibsim.state import commission_for

__all__ = [
    "DEFAULT_ACCOUNTS",
    "ControlClient",
    "Market",
    "SimClock",
    "SimGateway",
    "SimInputError",
    "commission_for",
    "default_data_path",
    "validate_account",
]

"""A simulated IB Gateway speaking the TWS API wire protocol (server version 200).

The real NautilusTrader IB adapter and the stock ``ibapi`` client connect to it over TCP as
they would to IB Gateway: contracts, daily bars replayed on a controllable clock, orders and
fills on a cash account, reconciliation after a restart, an order ledger, and injectable
faults.  Start it in-process with :class:`SimGateway` or as a process with
``python -m ats.ibsim`` / ``ats sim``.

Modules:

==================  ==========================================================================
``server``          :class:`SimGateway`: the asyncio TCP server, its event loop thread, the
                    market clock driving fills, delivery of answers to the client sessions
``handlers``        the version handshake, the request loop and the request handlers
``account_data``    account updates, PnL, completed orders and reference-data requests
``faults``          injectable faults: drops, outages, restarts, errors, held fills and acks
``control``         the JSON-lines control port and :class:`ControlClient`
``host``            :class:`~ats.ibsim.host.GatewayHost`: what those mixins use of ``SimGateway``
``session``         one client connection: socket, negotiated version, subscriptions
``state``           :class:`~ats.ibsim.state.GatewayState`: the account's orders (placing,
                    modifying, what-if, funds, fills, OCA groups and brackets, cancels)
``orders``          :class:`~ats.ibsim.orders.PlaceRequest` and IB's checks and reject codes
``account``         :class:`~ats.ibsim.account.CashAccount`: cash, positions, executions,
                    account values; :func:`commission_for`
``ledger``          :class:`~ats.ibsim.ledger.OrderLedger`: every order request, in order
``book``            order terms and when the replayed price path fills an order
``market``          stored daily bars replayed on :class:`SimClock`
``incoming``        client → server requests decoded (text or protobuf)
``outgoing``        server → client messages encoded at each client's version
``wire``            wire format: field text, request field parsing, contracts
``versions``        the TWS API server versions and what each changes
``errors``          :class:`SimInputError` and the other simulator errors
==================  ==========================================================================
"""

from __future__ import annotations

from ats.ibsim.account import commission_for
from ats.ibsim.errors import SimInputError
from ats.ibsim.market import Market, SimClock, default_data_path
from ats.ibsim.server import DEFAULT_ACCOUNTS, ControlClient, SimGateway, validate_account

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

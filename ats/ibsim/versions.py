"""TWS API server versions: what the simulator negotiates and what each version changes.

A real IB Gateway answers the client's ``v<min>..<max>`` with ``min(client max, its own max)``
(and its own max when the ranges do not overlap: the client then decides).  From the negotiated
version on, every message follows that version: the field branches of ``ibapi/decoder.py`` and
``ibapi/client.py`` (``MIN_SERVER_VER_*``), binary 4-byte message ids from 201
(``MIN_SERVER_VER_PROTOBUF``), and protobuf bodies per message group from 201 to 213.

The version constants come from the ``ibapi`` package the project pins (the wire contract);
the default server version is the highest it knows, as a current gateway's.

Which *server → client* messages travel as protobuf from which version is not in ``ibapi`` (its
decoder reads both forms at every version).  The simulator switches each answer at the version
its request group switches (``ibapi.common.PROTOBUF_MSG_IDS``): executions and errors at 201,
orders at 203, open/completed-order lists at 204, contract data at 205, market data at 206,
accounts and positions at 207, historical data at 208, PnL at 210, ids and times at 213.
"""

from __future__ import annotations

from ibapi import server_versions as sv
from ibapi.common import PROTOBUF_MSG_IDS
from ibapi.message import IN

MIN_VERSION = sv.MIN_CLIENT_VER  # 100: the oldest v100+ protocol version a gateway speaks
DEFAULT_VERSION = sv.MAX_CLIENT_VER  # the highest version ibapi knows, as a current gateway
PROTOBUF = sv.MIN_SERVER_VER_PROTOBUF  # binary message ids and the first protobuf messages
PROTOBUF_MSG_ID = 200  # a protobuf message's id is its text id + 200

# Client → server: from which version a request arrives as protobuf (ibapi's own table).
PROTOBUF_REQUESTS: dict[int, int] = dict(PROTOBUF_MSG_IDS)

# Server → client: from which version the simulator answers a message as protobuf.
PROTOBUF_ANSWERS: dict[int, int] = {
    IN.ERR_MSG: sv.MIN_SERVER_VER_PROTOBUF,
    IN.EXECUTION_DATA: sv.MIN_SERVER_VER_PROTOBUF,
    IN.EXECUTION_DATA_END: sv.MIN_SERVER_VER_PROTOBUF,
    IN.COMMISSION_AND_FEES_REPORT: sv.MIN_SERVER_VER_PROTOBUF,
    IN.OPEN_ORDER: sv.MIN_SERVER_VER_PROTOBUF_PLACE_ORDER,
    IN.ORDER_STATUS: sv.MIN_SERVER_VER_PROTOBUF_PLACE_ORDER,
    IN.OPEN_ORDER_END: sv.MIN_SERVER_VER_PROTOBUF_COMPLETED_ORDER,
    IN.COMPLETED_ORDER: sv.MIN_SERVER_VER_PROTOBUF_COMPLETED_ORDER,
    IN.COMPLETED_ORDERS_END: sv.MIN_SERVER_VER_PROTOBUF_COMPLETED_ORDER,
    IN.CONTRACT_DATA: sv.MIN_SERVER_VER_PROTOBUF_CONTRACT_DATA,
    IN.CONTRACT_DATA_END: sv.MIN_SERVER_VER_PROTOBUF_CONTRACT_DATA,
    IN.TICK_PRICE: sv.MIN_SERVER_VER_PROTOBUF_MARKET_DATA,
    IN.TICK_SIZE: sv.MIN_SERVER_VER_PROTOBUF_MARKET_DATA,
    IN.TICK_SNAPSHOT_END: sv.MIN_SERVER_VER_PROTOBUF_MARKET_DATA,
    IN.MARKET_DATA_TYPE: sv.MIN_SERVER_VER_PROTOBUF_MARKET_DATA,
    IN.MANAGED_ACCTS: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
    IN.POSITION_DATA: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
    IN.POSITION_END: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
    IN.ACCOUNT_SUMMARY: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
    IN.ACCOUNT_SUMMARY_END: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
    IN.ACCT_VALUE: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
    IN.PORTFOLIO_VALUE: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
    IN.ACCT_UPDATE_TIME: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
    IN.ACCT_DOWNLOAD_END: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
    IN.HISTORICAL_DATA: sv.MIN_SERVER_VER_PROTOBUF_HISTORICAL_DATA,
    IN.HISTORICAL_DATA_UPDATE: sv.MIN_SERVER_VER_PROTOBUF_HISTORICAL_DATA,
    IN.HISTORICAL_DATA_END: sv.MIN_SERVER_VER_PROTOBUF_HISTORICAL_DATA,
    IN.REAL_TIME_BARS: sv.MIN_SERVER_VER_PROTOBUF_HISTORICAL_DATA,
    IN.HEAD_TIMESTAMP: sv.MIN_SERVER_VER_PROTOBUF_HISTORICAL_DATA,
    IN.HISTORICAL_TICKS: sv.MIN_SERVER_VER_PROTOBUF_HISTORICAL_DATA,
    IN.HISTORICAL_TICKS_BID_ASK: sv.MIN_SERVER_VER_PROTOBUF_HISTORICAL_DATA,
    IN.HISTORICAL_TICKS_LAST: sv.MIN_SERVER_VER_PROTOBUF_HISTORICAL_DATA,
    IN.TICK_BY_TICK: sv.MIN_SERVER_VER_PROTOBUF_HISTORICAL_DATA,
    IN.ACCOUNT_UPDATE_MULTI: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
    IN.ACCOUNT_UPDATE_MULTI_END: sv.MIN_SERVER_VER_PROTOBUF_ACCOUNTS_POSITIONS,
    IN.SYMBOL_SAMPLES: sv.MIN_SERVER_VER_PROTOBUF_REST_MESSAGES_2,
    IN.SECURITY_DEFINITION_OPTION_PARAMETER_END: sv.MIN_SERVER_VER_PROTOBUF_REST_MESSAGES_2,
    IN.PNL: sv.MIN_SERVER_VER_PROTOBUF_SCAN_DATA,
    IN.PNL_SINGLE: sv.MIN_SERVER_VER_PROTOBUF_SCAN_DATA,
    IN.NEXT_VALID_ID: sv.MIN_SERVER_VER_PROTOBUF_REST_MESSAGES_3,
    IN.CURRENT_TIME: sv.MIN_SERVER_VER_PROTOBUF_REST_MESSAGES_3,
    IN.CURRENT_TIME_IN_MILLIS: sv.MIN_SERVER_VER_PROTOBUF_REST_MESSAGES_3,
}


def negotiate(client_min: int, client_max: int, server_max: int) -> int | None:
    """The version a gateway speaking ``[MIN_VERSION, server_max]`` answers a client range with;
    ``None`` when the ranges do not overlap (the gateway then answers its own version and the
    client gives up)."""
    if client_max < client_min:
        return None
    version = min(client_max, server_max)
    if version < max(client_min, MIN_VERSION):
        return None
    return version


def check_server_version(version: int) -> int:
    """A server version the simulator can speak, or :class:`ValueError` saying which can."""
    if not MIN_VERSION <= version <= DEFAULT_VERSION:
        raise ValueError(f"server version {version} is outside {MIN_VERSION}..{DEFAULT_VERSION} "
                         f"(the versions ibapi {_ibapi_version()} speaks)")
    return version


def binary_ids(version: int) -> bool:
    """From 201 every message id is a 4-byte big-endian integer, not decimal text."""
    return version >= PROTOBUF


def request_is_protobuf(msg_id: int, version: int) -> bool:
    threshold = PROTOBUF_REQUESTS.get(msg_id)
    return threshold is not None and version >= threshold


def answer_is_protobuf(msg_id: int, version: int) -> bool:
    threshold = PROTOBUF_ANSWERS.get(msg_id)
    return threshold is not None and version >= threshold


def _ibapi_version() -> str:
    try:
        from importlib.metadata import version

        return version("nautilus-ibapi")
    except Exception:  # noqa: BLE001 - only for the message
        return "(installed)"

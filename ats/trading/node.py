"""Builds the Nautilus TradingNode for a mode: IB data + execution clients, risk caps, reconciliation.

One node per session.  Paper and live never share a namespace: distinct trader ids
(``ATS-PAPER-001`` / ``ATS-LIVE-001``), distinct gateways (ports), and with ``ATS_REDIS_URL`` a
Redis cache keyed by the trader id, so a restarted node remembers its own orders as well as
reconciling them against the broker.  Shutdown timeouts are kept short so that a stop fits
inside Prefect's 30 s cancellation grace.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict
from urllib.parse import urlparse

from ats.core.settings import Mode, ModeSettings
from ats.core.sleeves import Sleeve

if TYPE_CHECKING:
    from nautilus_trader.adapters.interactive_brokers.config import InteractiveBrokersInstrumentProviderConfig
    from nautilus_trader.cache.config import CacheConfig
    from nautilus_trader.config import LoggingConfig, TradingNodeConfig

IB = "INTERACTIVE_BROKERS"
CLIENT_ID = 1  # data and exec clients share one socket (same client id) per gateway


def trader_id_for(mode: str, node_id: str = "001") -> str:
    return f"ATS-{mode.upper()}-{node_id}"


@dataclass(frozen=True)
class NodePlan:
    """Everything the node is built from, for the session summary and the audit log."""

    mode: Mode
    trader_id: str
    host: str
    port: int
    account_id: str
    sleeves: tuple[Sleeve, ...]
    max_notional_per_order: int
    max_order_submit_rate: str
    redis_url: str | None

    @property
    def instruments(self) -> list[str]:
        return sorted({s.instrument for s in self.sleeves})

    def risk_caps(self) -> dict[str, object]:
        return {
            "max_notional_per_order": {i: self.max_notional_per_order for i in self.instruments},
            "max_order_submit_rate": self.max_order_submit_rate,
        }


def plan_for(mode_settings: ModeSettings, sleeves: list[Sleeve], account_id: str,
             redis_url: str | None, node_id: str = "001") -> NodePlan:
    return NodePlan(
        mode=mode_settings.mode, trader_id=trader_id_for(mode_settings.mode, node_id), host=mode_settings.host,
        port=mode_settings.port, account_id=account_id, sleeves=tuple(sleeves),
        max_notional_per_order=mode_settings.max_notional_per_order,
        max_order_submit_rate=mode_settings.max_order_submit_rate, redis_url=redis_url,
    )


class _IbClientSettings(TypedDict):
    """What the IB data and execution clients share (one socket, one client id)."""

    ibg_host: str
    ibg_port: int
    ibg_client_id: int
    instrument_provider: InteractiveBrokersInstrumentProviderConfig
    connection_timeout: int
    request_timeout_secs: int


def _cache_config(redis_url: str | None) -> CacheConfig | None:
    from nautilus_trader.cache.config import CacheConfig
    from nautilus_trader.common.config import DatabaseConfig

    if not redis_url:
        return None
    parsed = urlparse(redis_url)
    database = DatabaseConfig(
        type="redis", host=parsed.hostname or "127.0.0.1", port=parsed.port or 6379,
        username=parsed.username, password=parsed.password, ssl=parsed.scheme == "rediss",
    )
    # Keys are prefixed with the trader id (use_trader_prefix): paper and live never collide.
    return CacheConfig(database=database, use_trader_prefix=True, flush_on_start=False, buffer_interval_ms=None)


def _logging_config(trader_id: str, log_dir: Path | None, log_level: str) -> LoggingConfig:
    """Console at ``log_level``; with ``log_dir`` an INFO file log there, account ids masked.

    Nautilus' own file writer would put the full IB account id in a large share of its lines
    (account states, order and position events, reconciliation reports): its file goes through
    :mod:`ats.trading.node_log` instead, which writes ``log_dir/<trader id>_<UTC time>_<id>.log`` with
    every account id masked (``U***4567``).  No fsync from Nautilus (its "file" is a FIFO,
    which cannot be synced); the filter fsyncs the real file.
    """
    from nautilus_trader.config import LoggingConfig

    target = None
    if log_dir:
        from ats.trading.node_log import masked_log_target

        try:
            target = masked_log_target(Path(log_dir), trader_id)
        except OSError as exc:
            # The session runs without its file log rather than with an unmasked one.
            logging.getLogger("ats.trading.node").warning("no node log file under %s: the masking filter did not start (%s)",
                                                  log_dir, exc)
    if target is None:
        return LoggingConfig(log_level=log_level, log_colors=False)
    directory, name, _ = target
    return LoggingConfig(log_level=log_level, log_level_file="INFO", log_directory=str(directory),
                         log_file_name=name, fileout_sync_on_flush=False, log_colors=False)


def build_node_config(plan: NodePlan, log_dir: Path | None = None, log_level: str = "WARNING") -> TradingNodeConfig:
    """The TradingNodeConfig of ``plan`` (nothing connects yet; with ``log_dir`` the masked file log starts)."""
    from ibapi.common import MarketDataTypeEnum
    from nautilus_trader.adapters.interactive_brokers.config import (
        InteractiveBrokersDataClientConfig,
        InteractiveBrokersExecClientConfig,
        InteractiveBrokersInstrumentProviderConfig,
        SymbologyMethod,
    )
    from nautilus_trader.config import (
        LiveExecEngineConfig,
        LiveRiskEngineConfig,
        TradingNodeConfig,
    )

    provider = InteractiveBrokersInstrumentProviderConfig(
        symbology_method=SymbologyMethod.IB_SIMPLIFIED, load_ids=frozenset(plan.instruments),
    )
    common: _IbClientSettings = {"ibg_host": plan.host, "ibg_port": plan.port, "ibg_client_id": CLIENT_ID,
                                 "instrument_provider": provider, "connection_timeout": 60, "request_timeout_secs": 15}
    data_cfg = InteractiveBrokersDataClientConfig(
        use_regular_trading_hours=True, market_data_type=MarketDataTypeEnum.REALTIME, **common)
    exec_cfg = InteractiveBrokersExecClientConfig(account_id=plan.account_id, fetch_all_open_orders=False, **common)
    return TradingNodeConfig(
        trader_id=plan.trader_id,
        logging=_logging_config(plan.trader_id, log_dir, log_level),
        cache=_cache_config(plan.redis_url),
        risk_engine=LiveRiskEngineConfig(
            max_order_submit_rate=plan.max_order_submit_rate,
            max_notional_per_order={i: plan.max_notional_per_order for i in plan.instruments},
        ),
        exec_engine=LiveExecEngineConfig(reconciliation=True, reconciliation_lookback_mins=None),
        data_clients={IB: data_cfg},
        exec_clients={IB: exec_cfg},
        timeout_connection=60.0,
        timeout_reconciliation=30.0,
        timeout_portfolio=10.0,
        timeout_disconnection=5.0,
        timeout_post_stop=0.5,  # Nautilus sleeps this long after stop before disconnecting
        timeout_shutdown=5.0,
    )


CONNECT_THREAD_WAIT_S = 5.0  # a connect to the gateway still in flight when its node is disposed


def forget_ib_clients() -> None:
    """Drop the IB adapter's module-level client caches (after a node in this process is disposed).

    The factories cache clients by (host, port, client id); a second node in the same process
    (the demo, an in-process flow) must not reuse the disposed node's client.
    """
    from nautilus_trader.adapters.interactive_brokers import factories

    # The adapter stops its client from a task that a disposed loop never runs: close the
    # sockets here, or the gateway keeps the client id "in use" (error 326) for the next node.
    clients = list(getattr(factories, "IB_CLIENTS", {}).values())
    # Held here until closed below: disconnect() drops the EClient's reference, and a Connection whose
    # in-flight connect then finishes would otherwise be freed with its socket still open.
    connections = [conn for client in clients if (conn := getattr(client._eclient, "conn", None)) is not None]  # noqa: SLF001
    for client in clients:
        with contextlib.suppress(Exception):
            client._eclient.disconnect()  # noqa: SLF001
    # A connect the adapter started in its loop's thread pool (``asyncio.to_thread``) may still be
    # under way — a start aborted by the kill switch mid-connect: its socket appears after the
    # close above (CI: "unclosed socket" from ibapi's Connection.connect in that pool).  Wait
    # (bounded) for those threads, then close those connections again: no socket is left to the
    # garbage collector, none stays open at the gateway.
    for loop in {id(loop): loop for client in clients if (loop := getattr(client, "_loop", None))}.values():
        executor = getattr(loop, "_default_executor", None)
        if executor is None:
            continue
        executor.shutdown(wait=False, cancel_futures=True)  # idle threads end at once, busy ones when done
        loop._default_executor = None  # noqa: SLF001 - a loop used again makes itself a new pool
        for thread in list(getattr(executor, "_threads", ())):
            thread.join(timeout=CONNECT_THREAD_WAIT_S)
    for conn in connections:
        with contextlib.suppress(Exception):
            conn.disconnect()
    # And a connection the adapter replaced while it retried (its EClient no longer points to it):
    # any ibapi Connection of this process still open to these gateways is an orphan of the
    # disposed node (one session per process at a time).
    gateways = {(getattr(client, "_host", None), getattr(client, "_port", None)) for client in clients}
    if gateways:
        import gc

        from ibapi.connection import Connection

        for orphan in [o for o in gc.get_objects() if isinstance(o, Connection)]:
            if (orphan.host, orphan.port) in gateways and orphan.socket is not None:
                with contextlib.suppress(Exception):
                    orphan.disconnect()
    for name in ("IB_CLIENTS", "IB_INSTRUMENT_PROVIDERS", "GATEWAYS"):
        cache = getattr(factories, name, None)
        if isinstance(cache, dict):
            cache.clear()

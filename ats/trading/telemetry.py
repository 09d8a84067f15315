"""A session's telemetry: the bars it traded on and its periodic snapshots.

Every bar the strategies saw is recorded (after they saw it, so a recorded bar always comes
after the decision it triggered); every :data:`SNAPSHOT_INTERVAL_S` the node's state —
connection, trading state, positions, PnL, order counts, time left — is written to the store
(``ats sessions watch``) and kept for the flow run's artifacts.  A store failure halts the
session; any other telemetry failure never takes it down.

The node's state is read where the node runs; the rows are written by the session's writer
thread (:class:`ats.trading.writer.SessionWriter`), in the order they were taken, so a store slow
to grant its write lock never holds up the node's loop.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ats.core.errors import StoreError

if TYPE_CHECKING:
    from nautilus_trader.live.node import TradingNode
    from nautilus_trader.model.data import Bar

    from ats.store import Store
    from ats.trading.node import NodePlan
    from ats.trading.writer import SessionWriter

# Telemetry (the store's snapshot, the Prefect artifacts, ``ats sessions watch``) every this often.
SNAPSHOT_INTERVAL_S = 2.0


class SessionTelemetry:
    """Records a session's bars and snapshots through the session's ``writer`` (a store failure
    there halts the session; any other telemetry failure never does)."""

    def __init__(self, *, session_id: str, plan: NodePlan, store: Store, node: TradingNode,
                 orders: dict[str, int], writer: SessionWriter) -> None:
        self.session_id = session_id
        self.plan = plan
        self.store = store
        self.node = node
        self.orders = orders  # the interposer's counts, read at each snapshot
        self.writer = writer
        self.last_bar: dict[str, str] = {}
        self.latest: dict[str, Any] | None = None  # the last snapshot (any thread may read it)
        self.seq = 0  # bumped with each snapshot
        # snapshot() runs on the node's loop (the node stopping) and on the clock's timer threads:
        # one at a time, read and queued together, so the rows are queued in the order they were
        # read and the last one written is the newest (not a state read before it).
        self._snapshot_lock = threading.Lock()

    def _put(self, what: str, write: Callable[[], None]) -> None:
        def write_telemetry() -> None:
            try:
                write()
            except StoreError:
                raise
            except Exception:  # noqa: BLE001, S110 - telemetry must never take the session down
                pass

        self.writer.put(f"store unavailable while {what}", write_telemetry)

    def record_bar(self, bar: Bar) -> None:
        from ats.governance.sessions import record_bar

        instrument = str(bar.bar_type.instrument_id)
        ts = iso_ns(bar.ts_event)
        self.last_bar[instrument] = ts
        ohlcv = (float(bar.open), float(bar.high), float(bar.low), float(bar.close), float(bar.volume))
        bar_type = str(bar.bar_type)
        self._put("recording a bar",
                  lambda: record_bar(self.session_id, instrument, bar_type, ts, ohlcv, store=self.store))

    def read(self, stop_at: dt.datetime | None, trading_since: dt.datetime | None) -> dict[str, Any]:
        """The node's state now (raises if the node cannot tell)."""
        from nautilus_trader.model.identifiers import InstrumentId

        kernel = self.node.kernel
        cache, portfolio = kernel.cache, kernel.portfolio
        positions: list[dict[str, Any]] = []
        realized, unrealized = 0.0, 0.0
        for instrument in self.plan.instruments:
            iid = InstrumentId.from_str(instrument)
            for position in cache.positions_open(instrument_id=iid):
                positions.append({"instrument": instrument, "side": position.side.name,
                                  "quantity": float(position.quantity), "avg_px_open": float(position.avg_px_open)})
            pnl = portfolio.realized_pnl(iid)
            realized += float(pnl.as_double()) if pnl is not None else 0.0
            upnl = portfolio.unrealized_pnl(iid)
            unrealized += float(upnl.as_double()) if upnl is not None else 0.0
        return {
            "connected": bool(kernel.exec_engine.check_connected() and kernel.data_engine.check_connected()),
            "trading_state": kernel.risk_engine.trading_state.name,
            "last_bar": dict(self.last_bar),
            "positions": positions,
            "open_orders": len(cache.orders_open()),
            "realized_pnl": round(realized, 2),
            "unrealized_pnl": round(unrealized, 2),
            "orders": dict(self.orders),
            "stop_at": stop_at.isoformat() if stop_at else None,
            "time_left_s": (round(max(0.0, (stop_at - dt.datetime.now(dt.UTC)).total_seconds()), 1)
                            if stop_at else None),
            "session_seconds": ((stop_at - trading_since).total_seconds() if stop_at and trading_since else None),
        }

    def snapshot(self, stop_at: dt.datetime | None, trading_since: dt.datetime | None) -> None:
        from ats.governance.sessions import record_snapshot

        with self._snapshot_lock:
            try:
                telemetry = self.read(stop_at, trading_since)
            except Exception:  # noqa: BLE001 - telemetry must never take the session down
                return
            self.latest = telemetry
            self.seq += 1
            self._put("writing telemetry", lambda: record_snapshot(self.session_id, telemetry, store=self.store))


def iso_ns(ns: int) -> str:
    """Nanoseconds since the epoch → ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

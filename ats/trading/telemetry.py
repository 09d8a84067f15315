"""A session's telemetry: the bars it traded on and its periodic snapshots.

Every bar the strategies saw is recorded (after they saw it, so a recorded bar always comes
after the decision it triggered); every :data:`SNAPSHOT_INTERVAL_S` the node's state —
connection, trading state, positions, PnL, order counts, time left — is written to the store
(``ats sessions watch``) and kept for the flow run's artifacts.  A store failure halts the
session; any other telemetry failure never takes it down.

The node's state is read where the node runs; the rows are written by one writer thread, in
the order they were taken.  A store slow to grant its write lock (another writer holding it, up
to the store's lock timeout) therefore never holds up the node's loop — its orders, its kill
switch, its halt's cancels.  The session's end is recorded only after the writer has written
everything queued (:meth:`SessionTelemetry.close`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ats.core.errors import StoreError

if TYPE_CHECKING:
    from nautilus_trader.live.node import TradingNode
    from nautilus_trader.model.data import Bar

    from ats.store import Store
    from ats.trading.node import NodePlan

# Telemetry (the store's snapshot, the Prefect artifacts, ``ats sessions watch``) every this often.
SNAPSHOT_INTERVAL_S = 2.0


class SessionTelemetry:
    """Records a session's bars and snapshots; ``on_store_failure(reason)`` halts the session."""

    def __init__(self, *, session_id: str, plan: NodePlan, store: Store, node: TradingNode,
                 orders: dict[str, int], on_store_failure: Callable[[str], None]) -> None:
        self.session_id = session_id
        self.plan = plan
        self.store = store
        self.node = node
        self.orders = orders  # the interposer's counts, read at each snapshot
        self.on_store_failure = on_store_failure
        self.last_bar: dict[str, str] = {}
        self.latest: dict[str, Any] | None = None  # the last snapshot (any thread may read it)
        self.seq = 0  # bumped with each snapshot
        # The rows to write, in order; ``None`` ends the writer.
        self._queue: queue.SimpleQueue[tuple[str, Callable[[], None]] | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_in_order, name="ats-telemetry-writer", daemon=True)
        self._abandoned = False  # close() gave up waiting: nothing more is written
        #: Why a write failed (the store's error), once one did: the session halts, nothing more is written.
        self.failure: str | None = None
        # snapshot() runs on the node's loop (the node stopping) and on the clock's timer threads:
        # one at a time, read and queued together, so the rows are queued in the order they were
        # read and the last one written is the newest (not a state read before it).
        self._snapshot_lock = threading.Lock()
        self._writer.start()

    def _write_in_order(self) -> None:
        while (item := self._queue.get()) is not None:
            what, write = item
            if self.failure is not None or self._abandoned:
                continue
            try:
                write()
            except StoreError as exc:
                self.failure = f"store unavailable while {what}: {exc}"
                self._report_failure(self.failure)
            except Exception:  # noqa: BLE001 - telemetry must never take the session down
                pass

    def _report_failure(self, reason: str) -> None:
        """The halt runs on the node's loop; once the loop has closed, the session has ended."""
        with contextlib.suppress(RuntimeError):
            self.node.kernel.loop.call_soon_threadsafe(self.on_store_failure, reason)

    def close(self, timeout: float) -> bool:
        """Write what is queued (waiting at most ``timeout`` s), then end the writer; True when
        everything queued was written or given up on a store failure (:attr:`failure` says
        which).  False when the writer was still writing after ``timeout``: what it has not
        begun is then dropped, never written after the session's end is recorded."""
        self._queue.put(None)
        self._writer.join(timeout)
        if self._writer.is_alive():
            self._abandoned = True
            return False
        return True

    def record_bar(self, bar: Bar) -> None:
        from ats.governance.sessions import record_bar

        instrument = str(bar.bar_type.instrument_id)
        ts = iso_ns(bar.ts_event)
        self.last_bar[instrument] = ts
        ohlcv = (float(bar.open), float(bar.high), float(bar.low), float(bar.close), float(bar.volume))
        bar_type = str(bar.bar_type)
        self._queue.put(("recording a bar",
                         lambda: record_bar(self.session_id, instrument, bar_type, ts, ohlcv, store=self.store)))

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
            self._queue.put(("writing telemetry",
                             lambda: record_snapshot(self.session_id, telemetry, store=self.store)))


def iso_ns(ns: int) -> str:
    """Nanoseconds since the epoch → ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

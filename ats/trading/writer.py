"""A session's store writer: one thread writes the session's rows, in the order they were queued.

Everything a running session writes to the store goes through one :class:`SessionWriter`: the
order intents' audit rows (the order goes on to the risk engine only once its row is written —
:mod:`ats.trading.interposer`), the order events' audit rows, the halt's audit row, the bars and
the snapshots (:mod:`ats.trading.telemetry`).  The node's loop only queues them, so a store slow
to grant its write lock (another process holding it, up to the store's lock timeout) never holds
the loop up — its kill switch, its halt's cancels at the broker — and the rows land in the store
in the order the session made them.

The first write that raises halts the session (``on_failure(reason)``, called on the node's
loop) and nothing queued after it is written.  The session's end is recorded only after
:meth:`SessionWriter.close` (:func:`ats.trading.runner.run_session`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
from collections.abc import Callable
from typing import NamedTuple


class _Write(NamedTuple):
    failure: str  # what the session's reason says when this write fails (the error follows it)
    write: Callable[[], object]
    then: Callable[[], object] | None  # run on the writer thread once the write has succeeded


class SessionWriter:
    """Writes the queued rows on one thread; ``on_failure(reason)`` runs on ``loop`` when one fails."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_failure: Callable[[str], object]) -> None:
        self.loop = loop
        self.on_failure = on_failure
        #: Why a write failed (``"<what>: <error>"``), once one did: nothing more is written.
        self.failure: str | None = None
        self._abandoned = False  # close() gave up waiting: nothing more is written
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()  # None ends the thread
        self._thread = threading.Thread(target=self._write_in_order, name="ats-session-writer", daemon=True)
        self._thread.start()

    def put(self, failure: str, write: Callable[[], object], *, then: Callable[[], object] | None = None) -> None:
        """Queue ``write``; if it raises, the session halts with ``f"{failure}: {error}"``.
        ``then`` runs on the writer thread once the write has succeeded (never after a failure)."""
        self._queue.put(_Write(failure, write, then))

    def call_on_loop(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` on the node's loop; once the loop has closed, the session has ended."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(callback)

    def _write_in_order(self) -> None:
        while (item := self._queue.get()) is not None:
            if self.failure is not None or self._abandoned:
                continue
            try:
                item.write()
            except Exception as exc:  # noqa: BLE001 - fail closed: any failed write halts the session
                self.failure = f"{item.failure}: {exc}"
                self.call_on_loop(functools.partial(self.on_failure, self.failure))
                continue
            if item.then is not None:
                item.then()

    def close(self, timeout: float) -> bool:
        """Write what is queued (waiting at most ``timeout`` s), then end the thread; True when
        everything queued was written or given up on a failure (:attr:`failure` says which).
        False when the thread was still writing after ``timeout``: what it has not begun is then
        dropped, never written after the session's end is recorded."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abandoned = True
            return False
        return True

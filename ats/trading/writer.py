"""A session's store writer: one thread writes the session's rows, in the order they were queued.

Everything a running session writes to the store goes through one :class:`SessionWriter`: the
order intents' audit rows (:mod:`ats.trading.interposer` waits for each before its order goes
on), the order events' audit rows, the halt's audit row, the bars and the snapshots
(:mod:`ats.trading.telemetry`).  The rows land in the store in the order the session made them,
and only an intent is ever waited for on the node's loop — so a store slow to grant its write
lock (another process holding it, up to the store's lock timeout) never holds the loop up over a
snapshot, a bar or an order event, and an order event never holds up the kill switch's cancels.

The first write that raises halts the session (``on_failure(reason)``, called on the node's
loop) and nothing queued after it is written.  The session's end is recorded only after
:meth:`SessionWriter.close` (:func:`ats.trading.runner.run_session`); a row queued after that
(the node's loop run once more as it is disposed) is written at once, on the caller's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("ats.trading.writer")


@dataclass
class QueuedWrite:
    """One queued write; :attr:`done` is set once it was written, failed or given up."""

    what_failed: str  # what the session's reason says when this write fails (the error follows it)
    write: Callable[[], object]
    done: threading.Event = field(default_factory=threading.Event)
    #: Why it was not written (``"<what failed>: <error>"``, or an earlier write's failure), once done.
    failure: str | None = None


class SessionWriter:
    """Writes the queued rows on one thread; ``on_failure(reason)`` runs on ``loop`` when one fails."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_failure: Callable[[str], object]) -> None:
        self.loop = loop
        self.on_failure = on_failure
        #: Why a write failed (``"<what failed>: <error>"``), once one did: nothing more is written.
        self.failure: str | None = None
        self._abandoned = False  # close() gave up waiting: nothing more is written
        self._closed = False
        self._lock = threading.Lock()  # put() against close()
        self._queue: queue.SimpleQueue[QueuedWrite | None] = queue.SimpleQueue()  # None ends the thread
        self._thread = threading.Thread(target=self._write_in_order, name="ats-session-writer", daemon=True)
        self._thread.start()

    def put(self, what_failed: str, write: Callable[[], object]) -> QueuedWrite:
        """Queue ``write``; if it raises, the session halts with ``f"{what_failed}: {error}"``."""
        item = QueuedWrite(what_failed, write)
        with self._lock:
            if not self._closed:
                self._queue.put(item)
                return item
        self._write_late(item)
        return item

    def _write_in_order(self) -> None:
        while (item := self._queue.get()) is not None:
            if self.failure is not None or self._abandoned:
                item.failure = self.failure or "the session's writer was closed before this write"
                item.done.set()
                continue
            try:
                item.write()
            except Exception as exc:  # noqa: BLE001 - fail closed: any failed write halts the session
                self.failure = item.failure = f"{item.what_failed}: {exc}"
                with contextlib.suppress(RuntimeError):  # the loop has closed: the session has ended
                    self.loop.call_soon_threadsafe(functools.partial(self.on_failure, self.failure))
            item.done.set()

    def _write_late(self, item: QueuedWrite) -> None:
        """After close(): written at once, here; a failure is logged (the session is ending)."""
        try:
            item.write()
        except Exception as exc:  # noqa: BLE001 - the session's end is being recorded: say it, go on
            item.failure = f"{item.what_failed}: {exc}"
            log.warning("a row queued after the session's writer closed was not written: %s", item.failure)
        item.done.set()

    def close(self, timeout: float) -> bool:
        """Write what is queued (waiting at most ``timeout`` s), then end the thread; True when
        everything queued was written or given up on a failure (:attr:`failure` says which).
        False when the thread was still writing after ``timeout``: what it has not begun is then
        dropped, never written after the session's end is recorded."""
        with self._lock:
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abandoned = True
            return False
        return True

"""The order ledger: every placeOrder/cancelOrder/reqGlobalCancel that reached the simulator.

Each entry is a dict (what was asked, what became of it: ``result``, with ``code``/``reason``
for a reject; what-if requests as ``kind`` "what_if", nothing placed) numbered by ``seq``.  The
gateway state appends on the server's event loop thread; :meth:`OrderLedger.entries` may be read
from any thread.  With a path, each entry is also appended to that JSONL file.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("ats.ibsim")


class OrderLedger:
    """The order requests, oldest first (see the module docstring)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def entries(self) -> list[dict[str, Any]]:
        """A copy of every order request that reached the simulator, oldest first."""
        with self._lock:
            return [dict(entry) for entry in self._entries]

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            entry["seq"] = len(self._entries) + 1
            self._entries.append(entry)
        if self.path is not None:
            try:
                with self.path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
            except OSError as exc:
                log.error("cannot append to ledger %s: %s", self.path, exc)

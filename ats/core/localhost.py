"""Helpers for processes that meet on this machine: a free loopback port, a bounded wait.

Used by the local Prefect server, the demo, the tests (through ``tests/support.py``) and the
benchmarks.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], object], timeout: float = 60.0, what: str = "condition",
               interval: float = 0.02) -> float:
    """Poll ``predicate`` every ``interval`` s until it is true; return ``time.monotonic()`` then.

    Raises :class:`TimeoutError` naming ``what`` after ``timeout`` s.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic()

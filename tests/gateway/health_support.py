"""Helpers for the gateway-health tests: a local alert endpoint, a settable clock, settings."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ats.core.alert_sink import AlertEndpoint  # noqa: F401 - re-exported for the tests
from support import wait_until  # noqa: F401 - re-exported: every wait polls a condition


@dataclass
class FakeClock:
    """A clock the test moves by hand: ``clock()`` returns ``now``."""

    now: datetime = field(default_factory=lambda: datetime(2026, 11, 24, 19, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def make_settings(data_dir: Path, **env: str):  # noqa: ANN201
    """Settings from ``env`` only (ATS_ prefix added), no .env file."""
    from ats.core.settings import load_settings

    full = {"ATS_DATA_DIR": str(data_dir)}
    full.update({f"ATS_{k.upper()}": v for k, v in env.items()})
    return load_settings(env=full, dotenv=data_dir / "no.env")


def read_frame(conn) -> bytes:  # noqa: ANN001
    """One length-prefixed TWS API frame from ``conn``."""
    head = read_exact(conn, 4)
    return read_exact(conn, int.from_bytes(head, "big"))


def read_exact(conn, n: int) -> bytes:  # noqa: ANN001
    """Exactly ``n`` bytes from ``conn``."""
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client closed")
        data += chunk
    return data


@contextlib.contextmanager
def hold_client_id(sim, client_id: int):  # noqa: ANN001, ANN201
    """An API client connected to ``sim`` with ``client_id`` for the duration (IB refuses a second
    connection with an id in use: error 326).  Text message ids (v100..200)."""
    import socket

    from ibapi import comm

    holder = socket.create_connection(("127.0.0.1", sim.port), timeout=5)
    try:
        holder.sendall(b"API\0" + comm.make_initial_msg("v100..200"))
        read_frame(holder)  # server version reply
        holder.sendall(comm.make_msg(71, False, comm.make_field(2) + comm.make_field(client_id) + comm.make_field("")))
        assert sim.wait_for(lambda: client_id in sim.clients, timeout=10)
        yield holder
    finally:
        holder.close()

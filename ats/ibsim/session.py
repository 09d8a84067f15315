"""One client connection to the simulator: its socket, negotiated version and subscriptions."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from ats.ibsim.market import Instrument
from ats.ibsim.outgoing import OutMsg


@dataclass
class HistSub:
    """A ``reqHistoricalData`` subscription (``keepUpToDate`` ones get bar updates)."""

    req_id: int
    instrument: Instrument
    keep_up_to_date: bool


@dataclass(eq=False)
class ClientSession:
    """One client socket; every message sent is encoded at :attr:`version`."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: str
    version: int = 0  # the negotiated server version (0 until the handshake)
    client_id: int | None = None
    started: bool = False
    closed: bool = False
    hist_subs: dict[int, HistSub] = field(default_factory=dict)
    rtb_subs: dict[int, tuple[Instrument, int]] = field(default_factory=dict)  # reqId -> (instrument, last epoch)
    mkt_subs: dict[int, Instrument] = field(default_factory=dict)
    mkt_last: dict[int, float] = field(default_factory=dict)  # reqId -> last price sent
    summary_subs: dict[int, set[str] | None] = field(default_factory=dict)
    account_updates: bool = False  # reqAccountUpdates subscribed
    account_multi_subs: dict[int, str] = field(default_factory=dict)  # reqId -> model code
    pnl_subs: dict[int, int | None] = field(default_factory=dict)  # reqId -> conId (None: the account)
    tbt_subs: dict[int, tuple[Instrument, int]] = field(default_factory=dict)  # reqId -> (instrument, tick type)

    def send(self, message: OutMsg | bytes) -> None:
        if self.closed:
            return
        data = message if isinstance(message, bytes) else message.encode(self.version)
        try:
            self.writer.write(data)
        except (ConnectionError, RuntimeError, OSError):
            self.closed = True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
        with contextlib.suppress(ConnectionError, RuntimeError, OSError):
            self.writer.close()

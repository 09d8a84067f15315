"""What a session trades against: a real IB Gateway on real time, or a simulator.

A paper rung earned in 75 s on the embedded simulator's accelerated clock must not admit a live
session against a real gateway (issue 17, finding 2).  So every session records the gateway it
traded against, read off the wire rather than taken from configuration:

* **server version** — from the API handshake;
* **clock offset** — the gateway's current time (``reqCurrentTime``) minus this machine's.  A real
  gateway's clock is the exchange's "now" (IB refuses API clients whose clocks drift far); a
  simulator answers with its *simulated* market clock, a replayed day years back;
* **clock speed** (at the end of the session) — how far the gateway's clock moved per second of
  ours: about 1 on a real gateway, hundreds of thousands on an accelerated replay, and jumps on a
  manually driven one.

``kind`` is ``simulator`` when the gateway's clock is more than :data:`REAL_CLOCK_TOLERANCE_S`
away from ours (or the runner itself started the simulator), ``gateway`` when it is within it,
and ``unknown`` when the gateway did not answer the question.  Only ``gateway`` sessions on a
real-time clock count as real paper evidence (see :func:`ats.research.ladder.evaluate_paper_rung`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

Kind = Literal["simulator", "gateway", "unknown"]

REAL_CLOCK_TOLERANCE_S = 6 * 3600.0
"""A gateway whose clock is further than this from ours is not on real time (a replay, a simulator)."""

REALTIME_SPEED_RANGE = (0.5, 2.0)
"""Gateway-clock seconds per second of ours that still count as real time."""

MIN_SPEED_WINDOW_S = 10.0
"""Shortest window over which a clock speed is measured (``reqCurrentTime`` has whole seconds)."""


@dataclass(frozen=True)
class GatewayIdentity:
    """What the session's gateway said about itself at the start (and its clock speed at the end)."""

    kind: Kind
    server_version: int | None = None
    clock_offset_s: float | None = None
    clock_speed: float | None = None
    started_by_ats: bool = False  # the runner (or the sim controller) started this simulator itself
    # Private to the speed measurement: both clocks when the identity was taken.
    gateway_time: float | None = None
    local_time: float | None = None

    @property
    def real_time(self) -> bool:
        """A real gateway on real time (the only kind of session that is real paper evidence)."""
        if self.kind != "gateway":
            return False
        low, high = REALTIME_SPEED_RANGE
        return self.clock_speed is None or low <= self.clock_speed <= high

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["real_time"] = self.real_time
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> GatewayIdentity:
        data = dict(data or {})
        data.pop("real_time", None)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{"kind": "unknown", **known})

    def with_speed(self, later: GatewayIdentity) -> GatewayIdentity:
        """This identity with the clock speed measured against a ``later`` one of the same gateway."""
        if None in (self.gateway_time, self.local_time, later.gateway_time, later.local_time):
            return self
        elapsed = later.local_time - self.local_time  # type: ignore[operator]
        if elapsed < MIN_SPEED_WINDOW_S:
            return self  # the gateway's clock has whole seconds: too short to tell a speed
        speed = (later.gateway_time - self.gateway_time) / elapsed  # type: ignore[operator]
        kind = self.kind
        if kind == "gateway" and not REALTIME_SPEED_RANGE[0] <= speed <= REALTIME_SPEED_RANGE[1]:
            kind = "simulator"  # a clock that runs fast or jumps is not the exchange's
        return GatewayIdentity(kind, self.server_version, self.clock_offset_s, round(speed, 3),
                               self.started_by_ats, self.gateway_time, self.local_time)


#: The identity probe's API client id, its own: the gateway-health watch probes every few seconds
#: with ``ATS_HEALTH_PROBE_CLIENT_ID`` (977) and IB refuses an id in use (326), which would make a
#: session start against a gateway it could not identify.
IDENTITY_CLIENT_ID = 975


def identify_gateway(host: str, port: int, *, timeout: float = 5.0, started_by_ats: bool = False) -> GatewayIdentity:
    """Ask the gateway at ``host:port`` its server version and current time (one short probe)."""
    from ats.gateway.probe import probe

    asked_at = time.time()
    result = probe(host, port, timeout=timeout, ask_time=True, client_id=IDENTITY_CLIENT_ID)
    answered_at = time.time()
    if result.gateway_time is None:
        kind: Kind = "simulator" if started_by_ats else "unknown"
        return GatewayIdentity(kind, result.server_version, started_by_ats=started_by_ats)
    local = (asked_at + answered_at) / 2
    offset = result.gateway_time - local
    kind = "simulator" if started_by_ats or abs(offset) > REAL_CLOCK_TOLERANCE_S else "gateway"
    return GatewayIdentity(kind, result.server_version, round(offset, 3), None, started_by_ats,
                           result.gateway_time, local)

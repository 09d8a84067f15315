"""The session telemetry's writer thread, without a node: what close() promises."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from ats.governance import sessions
from ats.trading.telemetry import SessionTelemetry


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _telemetry(loop: asyncio.AbstractEventLoop, failures: list[str]) -> SessionTelemetry:
    node: Any = SimpleNamespace(kernel=SimpleNamespace(loop=loop))
    telemetry = SessionTelemetry(session_id="s", plan=Any, store=Any, node=node, orders={},
                                 on_store_failure=failures.append)
    telemetry.read = lambda stop_at, trading_since: {"n": telemetry.seq}  # type: ignore[method-assign]
    return telemetry


def test_a_writer_still_busy_when_closed_says_so_and_writes_nothing_after(
        loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: the first snapshot's write hangs (a store slow to grant its lock); a second is queued.
    release = threading.Event()
    written: list[dict[str, Any]] = []

    def record_snapshot(session_id: str, payload: dict[str, Any], *, store: object) -> None:
        if not written:
            release.wait(10)
        written.append(payload)

    monkeypatch.setattr(sessions, "record_snapshot", record_snapshot)
    telemetry = _telemetry(loop, [])
    telemetry.snapshot(None, None)
    telemetry.snapshot(None, None)

    # Act
    finished = telemetry.close(0.2)
    release.set()
    telemetry._writer.join(5)  # noqa: SLF001

    # Assert: close said it could not finish; what had not begun was dropped, not written late.
    assert finished is False
    assert [p["n"] for p in written] == [0]

"""The session's writer thread under the telemetry, without a node: what close() promises."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from ats.governance import sessions
from ats.trading.telemetry import SessionTelemetry
from ats.trading.writer import SessionWriter


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _telemetry(loop: asyncio.AbstractEventLoop, failures: list[str]) -> SessionTelemetry:
    node: Any = SimpleNamespace(kernel=SimpleNamespace(loop=loop))
    telemetry = SessionTelemetry(session_id="s", plan=Any, store=Any, node=node, orders={},
                                 writer=SessionWriter(loop, failures.append))
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
    finished = telemetry.writer.close(0.2)
    release.set()
    telemetry.writer._thread.join(5)  # noqa: SLF001

    # Assert: close said it could not finish; what had not begun was dropped, not written late.
    assert finished is False
    assert [p["n"] for p in written] == [0]


def test_snapshots_taken_at_once_on_two_threads_are_written_in_the_order_they_were_read(
        loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: the node's state is read on the timer thread, slowly; meanwhile the loop takes the
    # node-stopping snapshot (a newer state).
    written: list[dict[str, Any]] = []
    monkeypatch.setattr(sessions, "record_snapshot",
                        lambda session_id, payload, *, store: written.append(payload))
    telemetry = _telemetry(loop, [])
    taken = itertools.count()
    reading, go_on = threading.Event(), threading.Event()

    def read(stop_at: object, trading_since: object) -> dict[str, Any]:
        n = next(taken)
        if n == 0:
            reading.set()
            go_on.wait(5)
        return {"n": n}

    telemetry.read = read  # type: ignore[method-assign]

    # Act
    first = threading.Thread(target=telemetry.snapshot, args=(None, None))
    first.start()
    reading.wait(5)
    second = threading.Thread(target=telemetry.snapshot, args=(None, None))
    second.start()
    second.join(0.3)
    go_on.set()
    first.join(5)
    second.join(5)
    assert telemetry.writer.close(5)

    # Assert: the newest state is the last one written and the latest one shown.
    assert [p["n"] for p in written] == [0, 1]
    assert telemetry.latest == {"n": 1}

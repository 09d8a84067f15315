"""Another process holds the store's write lock while a session decides an order.

The order goes out only once its intent row is written (nothing reaches the broker unaudited);
a kill meanwhile denies it at once instead of waiting for the lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from runner_support import run_with_driver, session_settings, store_write_lock_held, wait_until

from ats.core.sleeves import Sleeve
from ats.governance import audit, kill_wire, killswitch
from ats.governance.sessions import session_detail
from ats.trading.runner import SessionRequest

pytestmark = pytest.mark.slow

BUY_ONE = Sleeve("order_check", "QQQ.NASDAQ", "1-DAY-LAST", {"quantities": [1]})  # one market BUY on the first bar


def _placed(sim) -> list[dict]:  # noqa: ANN001
    return [r for r in sim.ledger if r["kind"] == "place"]


@contextlib.contextmanager
def _order_waiting_for_its_intent(sim, settings, guard) -> Iterator[None]:  # noqa: ANN001
    """The store locked by another connection, then the bar that makes the strategy buy: the
    order waits for its intent row until the block ends."""
    with store_write_lock_held(settings):
        sim.advance(1)
        wait_until(lambda: guard.interposer.orders_waiting == 1, what="the order waiting for its intent row")
        yield


def test_an_order_goes_out_only_once_its_intent_row_is_written(sim_factory, isolated_env: Path) -> None:
    # Arrange
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    settings = session_settings(sim, isolated_env)
    seen = {}

    def buy_while_the_store_is_locked(guard, store) -> None:  # noqa: ANN001
        # Act: the bar that makes the strategy buy arrives while the store is locked.
        with _order_waiting_for_its_intent(sim, settings, guard):
            seen["placed_while_locked"] = _placed(sim)
        wait_until(lambda: guard.interposer.orders["filled"] == 1, what="the fill once the store is free")

    outcome, store = run_with_driver(sim, settings, SessionRequest("paper", [BUY_ONE]), buy_while_the_store_is_locked)

    # Assert: nothing reached the broker before its intent was recorded; then the order went out
    # once, and every row was written in the order it happened.
    assert seen["placed_while_locked"] == []
    assert len(_placed(sim)) == 1
    assert outcome.status == "stopped", outcome.reason
    events = [e["event"] for e in session_detail(outcome.session_id, store=store)["order_events"]]
    assert events == ["intent", "submitted", "filled"]
    assert outcome.summary["orders"]["filled"] == 1


def test_a_kill_while_an_order_waits_for_its_intent_row_denies_it_at_once(
        sim_factory, isolated_env: Path) -> None:
    # Arrange: the store is locked when the strategy decides its order.
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    settings = session_settings(sim, isolated_env)
    request = SessionRequest("paper", [BUY_ONE], for_seconds=600)  # ended by the kill
    seen = {}

    def kill_while_the_order_waits(guard, store) -> None:  # noqa: ANN001
        with _order_waiting_for_its_intent(sim, settings, guard):
            # Act
            kill_wire.send(killswitch.store_key_of(store), ["paper"],
                           {"kind": "kill", "modes": ["paper"], "session": None, "reason": "store busy",
                            "actor": "test"})
            # The wait gives way to the halt while the store is still locked (its lock timeout is 60 s).
            wait_until(lambda: guard.interposer.orders["denied"] == 1, timeout=30, what="the waiting order denied")
            seen["halted_while_locked"] = guard.halting
        wait_until(lambda: guard.ended.is_set(), what="the session's end")

    outcome, store = run_with_driver(sim, settings, request, kill_while_the_order_waits, stop=False)

    # Assert: the order never reached the broker; its intent and its denial were written once the
    # store was free, in that order, before the session's end.
    assert seen["halted_while_locked"] is True
    assert _placed(sim) == []
    assert (outcome.status, outcome.reason) == ("killed", "kill switch by test: store busy")
    events = session_detail(outcome.session_id, store=store)["order_events"]
    assert [e["event"] for e in events] == ["intent", "denied"]
    assert events[1]["details"]["reason"] == "the session halted before the order went out"
    actions = [r.action for r in audit.list_rows(store=store, limit=1000)]
    assert actions.index("order.intent") < actions.index("order.denied") < actions.index("session.killed")


def test_a_stop_while_an_order_waits_for_its_intent_row_denies_it(sim_factory, isolated_env: Path) -> None:
    # Arrange: the store is locked when the strategy decides its order.
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    settings = session_settings(sim, isolated_env)
    request = SessionRequest("paper", [BUY_ONE], for_seconds=600)  # ended by the stop
    seen = {}

    def stop_while_the_order_waits(guard, store) -> None:  # noqa: ANN001
        with _order_waiting_for_its_intent(sim, settings, guard):
            # Act: the stop time, from another thread (as the clock's timer thread calls it).
            guard.stop("stopped", "reached the stop time")
            wait_until(lambda: guard.interposer.orders["denied"] == 1, timeout=30, what="the waiting order denied")
        wait_until(lambda: guard.ended.is_set(), what="the session's end")
        seen["placed"] = _placed(sim)

    outcome, store = run_with_driver(sim, settings, request, stop_while_the_order_waits, stop=False)

    # Assert: a stop sends nothing new — the waiting order was denied, never placed.
    assert seen["placed"] == [] and _placed(sim) == []
    assert (outcome.status, outcome.reason) == ("stopped", "reached the stop time")
    events = session_detail(outcome.session_id, store=store)["order_events"]
    assert [e["event"] for e in events] == ["intent", "denied"]
    assert events[1]["details"]["reason"] == "the session is stopping"

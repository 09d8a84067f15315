"""Risk caps deny inside the node; the kill switch halts a running session from another process."""

from __future__ import annotations

from pathlib import Path

import pytest
from runner_support import drive_session, loop_answers, session_settings, store_write_lock_held, wait_until

from ats.core.alert_sink import AlertEndpoint
from ats.core.errors import KillLatched
from ats.core.sleeves import Sleeve
from ats.governance import audit, killswitch
from ats.governance.sessions import get_session, last_snapshot, session_detail
from ats.store import open_store
from ats.trading.gates import check_gates
from ats.trading.runner import SessionRequest
from support import run_ats

pytestmark = pytest.mark.slow


def test_order_above_the_cap_and_a_burst_above_the_rate_never_reach_the_broker(sim_factory, isolated_env: Path) -> None:
    # Arrange: live-like caps on the paper simulator: 5000 USD per order, 2 orders per second.
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    settings = session_settings(sim, isolated_env, ATS_PAPER_RISK_MAX_NOTIONAL_PER_ORDER="5000",
                                ATS_PAPER_RISK_MAX_ORDER_SUBMIT_RATE="2/00:00:01")
    # 20 shares of QQQ (~450 USD) = ~9000 USD > cap; then a burst of five 1-share orders.
    request = SessionRequest("paper", [Sleeve("order_check", "QQQ.NASDAQ", "1-DAY-LAST",
                                              {"quantities": [20, 1, 1, 1, 1, 1]})])

    # Act
    driven = drive_session(sim, settings, request, days=1)

    # Assert
    outcome, store = driven.outcome, driven.store
    events = session_detail(outcome.session_id, store=store)["order_events"]
    intents = [e for e in events if e["event"] == "intent"]
    denied = [e for e in events if e["event"] == "denied"]
    assert len(intents) == 6
    assert any(e["quantity"] == 20 and "NOTIONAL" in e["details"]["reason"].upper() for e in denied)
    burst_denied = [e for e in denied if e["quantity"] == 1]
    assert burst_denied, "the burst above 2 orders/s must be throttled/denied"
    placed = [row for row in sim.ledger if row["kind"] == "place"]
    assert all(row["quantity"] == "1" for row in placed), placed
    assert len(placed) == 5 - len(burst_denied)
    actions = [r.action for r in audit.list_rows(store=store, limit=1000)]
    assert actions.count("order.intent") == 6
    assert actions.count("order.denied") == len(denied)


def test_ats_kill_from_another_process_halts_the_session_and_latches(sim_factory, isolated_env: Path) -> None:
    # Arrange
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    endpoint = AlertEndpoint()
    settings = session_settings(sim, isolated_env, ATS_ALERT_URLS=endpoint.url)
    request = SessionRequest("paper", [Sleeve("order_check", "QQQ.NASDAQ", "1-DAY-LAST",
                                              {"quantities": [1], "limit_price": 100.0})],
                             for_seconds=600)  # ended by the kill; not by the clock of the day
    env = {"ATS_DATA_DIR": str(isolated_env)}
    killed = {}

    def kill_after_first_day(guard, day: int) -> None:
        # A resting limit order is open at the broker: the kill must cancel it.
        wait_until(lambda: any(r["kind"] == "place" for r in sim.ledger), what="the limit order at the broker")
        killed["result"] = run_ats("kill", "--mode", "paper", "--reason", "test kill", env=env)

    # Act
    try:
        driven = drive_session(sim, settings, request, days=1, during=kill_after_first_day, stop=False,
                              settle=False)
        # The session halts on the kill socket before `ats kill` has written its latch and exited.
        wait_until(lambda: "result" in killed, what="ats kill to exit")
        titles = endpoint.titles()
    finally:
        endpoint.close()

    # Assert
    outcome, store = driven.outcome, driven.store
    assert killed["result"].returncode == 0, killed["result"].stderr
    assert outcome.status == "killed"
    assert "kill switch by" in outcome.reason and "test kill" in outcome.reason
    assert get_session(outcome.session_id, store=store).status == "killed"
    assert [r["kind"] for r in sim.ledger] == ["place", "cancel"]
    assert titles == ["ats: KILL SWITCH (paper)", "ats: paper session killed"]
    actions = [r.action for r in audit.list_rows(store=store, limit=1000)]
    assert {"kill.latch", "session.halted", "session.killed"} <= set(actions)
    with pytest.raises(KillLatched, match="the paper kill switch is latched"):
        check_gates(request, settings, store)
    cleared = run_ats("kill", "--clear", "--mode", "paper", "--reason", "investigated", env=env)
    assert cleared.returncode == 0, cleared.stderr
    assert killswitch.latched("paper", store=store) is None
    check_gates(request, settings, store)


def test_a_kill_while_an_order_is_in_flight_cancels_it_once_the_broker_acknowledges_it(
        sim_factory, isolated_env: Path) -> None:
    # Arrange: the gateway has the limit order but holds its answers back, so the node still
    # sees it in flight (SUBMITTED) when the kill switch halts the session.
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    settings = session_settings(sim, isolated_env)
    request = SessionRequest("paper", [Sleeve("order_check", "QQQ.NASDAQ", "1-DAY-LAST",
                                              {"quantities": [1], "limit_price": 100.0})],
                             for_seconds=600)  # ended by the kill; not by the clock of the day
    sim.hold_acks(True)

    def kill_while_the_order_is_in_flight(guard, day: int) -> None:
        wait_until(lambda: sim.held_acks > 0, what="the limit order at the broker, not yet acknowledged")
        killswitch.latch(["paper"], "kill with an order in flight", "test", store=guard.store)
        wait_until(lambda: "session.halted" in [r.action for r in audit.list_rows(store=guard.store, limit=1000)],
                   what="the session to halt")
        sim.release_acks()  # the broker acknowledges: the order is open there now

    # Act
    driven = drive_session(sim, settings, request, days=1, during=kill_while_the_order_is_in_flight, stop=False,
                           settle=False)

    # Assert: the order was cancelled at the broker and the kill is reported clean.
    outcome = driven.outcome
    assert (outcome.status, outcome.reason) == ("killed", "kill switch by test: kill with an order in flight")
    assert [(r["kind"], r["result"]) for r in sim.ledger] == [("place", "accepted"), ("cancel", "cancelled")]
    assert sim.snapshot()["open_orders"] == []


def test_a_kill_whose_cancel_the_broker_never_answers_ends_in_error_saying_so_once(
        sim_factory, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: a limit order open at the broker; then the gateway stops answering order
    # requests, so the kill's cancel stays unanswered past the cancel grace (shortened here).
    from ats.trading import supervisor

    monkeypatch.setattr(supervisor, "CANCEL_GRACE_S", 0.5)
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    settings = session_settings(sim, isolated_env)
    request = SessionRequest("paper", [Sleeve("order_check", "QQQ.NASDAQ", "1-DAY-LAST",
                                              {"quantities": [1], "limit_price": 100.0})],
                             for_seconds=600)  # ended by the kill; not by the clock of the day

    def kill_with_the_cancel_unanswered(guard, day: int) -> None:
        wait_until(lambda: any(r["kind"] == "place" for r in sim.ledger), what="the limit order at the broker")
        sim.hold_acks(True)
        killswitch.latch(["paper"], "kill with the broker silent", "test", store=guard.store)

    # Act
    driven = drive_session(sim, settings, request, days=1, during=kill_with_the_cancel_unanswered, stop=False,
                           settle=False)
    sim.release_acks()

    # Assert: never reported as a clean kill, and the warning is in the reason once (the kill
    # poll goes on firing while the node stops).
    outcome = driven.outcome
    assert outcome.status == "error"
    assert outcome.reason.startswith("kill switch by test: kill with the broker silent; 1 order(s) still open")
    assert outcome.reason.count("check and cancel them at IB") == 1
    assert get_session(outcome.session_id, store=driven.store).reason == outcome.reason


def test_revoking_the_approval_of_a_running_live_sleeve_halts_the_session(sim_factory, isolated_env: Path) -> None:
    # Arrange: a live session (simulator) with its paper rung and approval; a limit order rests
    # at the broker when the approval is revoked.
    from ats.core.pins import param_set
    from ats.governance import approvals
    from ats.research import ladder
    from ats.strategies import get_strategy

    sim = sim_factory(mode="live", account="U1234567", clock="manual", start="2024-06-03")
    settings = session_settings(sim, isolated_env, ATS_ENABLE_LIVE_TRADING="true")
    params = {"quantities": [1], "limit_price": 100.0}
    request = SessionRequest("live", [Sleeve("order_check", "QQQ.NASDAQ", "1-DAY-LAST", params)],
                             for_seconds=600, i_understand="U1234567")
    store = open_store(settings.resolved_database_url)
    pinned = param_set("order_check", "QQQ.NASDAQ", params, "1-DAY-LAST")
    ladder.record_verdict("paper", "order_check", "QQQ.NASDAQ", passed=True, reasons=["test setup"], metrics={},
                          params=pinned.params, bar_spec="1-DAY-LAST", data_start=None, data_end=None,
                          fingerprint=get_strategy("order_check").fingerprint(), actor="test", store=store)
    approvals.approve_live("order_check", "QQQ.NASDAQ", "reviewed", "alice", params=params, store=store)

    def revoke_with_an_order_resting(guard, day: int) -> None:
        wait_until(lambda: any(r["kind"] == "place" for r in sim.ledger), what="the limit order at the broker")
        approvals.revoke_live("order_check", "QQQ.NASDAQ", "bob", "risk review", params=params, store=guard.store)

    # Act
    driven = drive_session(sim, settings, request, days=1, during=revoke_with_an_order_resting, stop=False,
                           settle=False)

    # Assert: halted on the revocation, the resting order cancelled at the broker, audited.
    outcome = driven.outcome
    assert outcome.status == "killed"
    assert outcome.reason.startswith("the go-live approval of order_check@QQQ.NASDAQ was revoked by bob at ")
    assert outcome.reason.endswith(" (risk review)")
    assert [r["kind"] for r in sim.ledger] == ["place", "cancel"]
    actions = [r.action for r in audit.list_rows(store=driven.store, limit=1000)]
    assert actions.index("approval.revoke") < actions.index("session.halted") < actions.index("session.killed")


def test_a_kill_cancels_at_the_broker_while_another_writer_holds_the_store(
        sim_factory, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: a limit order open at the broker; then another process's connection takes the
    # SQLite store's write lock and keeps it, and a telemetry snapshot is taken meanwhile (its
    # write waits for the lock; snapshots every 0.1 s for the test).
    from ats.governance import kill_wire
    from ats.trading import supervisor

    monkeypatch.setattr(supervisor, "SNAPSHOT_INTERVAL_S", 0.1)
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    settings = session_settings(sim, isolated_env)
    request = SessionRequest("paper", [Sleeve("order_check", "QQQ.NASDAQ", "1-DAY-LAST",
                                              {"quantities": [1], "limit_price": 100.0})],
                             for_seconds=600)  # ended by the kill; not by the clock of the day
    seen = {}

    def kill_while_the_store_is_locked(guard, day: int) -> None:
        wait_until(lambda: any(r["kind"] == "place" for r in sim.ledger), what="the limit order at the broker")
        # The order's own events (submitted, accepted) may still be on their way to the store.
        with store_write_lock_held(settings):
            taken = guard.recorder.seq
            wait_until(lambda: guard.recorder.seq >= taken + 2, what="a snapshot taken while the store is locked")
            kill_wire.send(killswitch.store_key_of(guard.store), ["paper"],
                           {"kind": "kill", "modes": ["paper"], "session": None, "reason": "store busy",
                            "actor": "test"})
            # Act: the cancel must reach the broker while the store is still locked.
            wait_until(lambda: any(r["kind"] == "cancel" for r in sim.ledger), what="the cancel at the broker")
            # Its confirmation is an order event whose row waits for the lock: on the writer, not the loop.
            wait_until(lambda: guard.interposer.orders["canceled"] == 1, what="the broker's cancel confirmation")
            seen["loop_answers_while_locked"] = loop_answers(guard)
            seen["halted_rows_while_locked"] = [
                r for r in audit.list_rows(action="session.halted", store=guard.store) if r.subject == guard.session_id]

    driven = drive_session(sim, settings, request, days=1, during=kill_while_the_store_is_locked, stop=False,
                           settle=False)

    # Assert: cancelled before the halt (or the snapshots) could be recorded; recorded once the
    # lock was free, the last snapshot before the session's end.
    outcome = driven.outcome
    assert seen["halted_rows_while_locked"] == []
    assert seen["loop_answers_while_locked"] is True
    assert [r["kind"] for r in sim.ledger] == ["place", "cancel"]
    assert (outcome.status, outcome.reason) == ("killed", "kill switch by test: store busy")
    actions = [r.action for r in audit.list_rows(store=driven.store, limit=1000)]
    assert actions.index("session.halted") < actions.index("session.killed")
    last = last_snapshot(outcome.session_id, store=driven.store)
    assert last is not None and last["trading_state"] == "HALTED" and last["open_orders"] == 0


def test_a_store_failure_on_the_last_snapshot_ends_the_session_in_error(
        sim_factory, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Arrange: the snapshot taken as the node stops cannot be written — the store keeps its
    # write lock a while, then refuses — so the failure arrives after the node's loop ended.
    import time

    from ats.core.errors import StoreError
    from ats.governance import sessions
    from ats.trading import supervisor

    monkeypatch.setattr(supervisor, "SNAPSHOT_INTERVAL_S", 3600.0)  # the first and the last only
    written: list[dict] = []
    real_record_snapshot = sessions.record_snapshot

    def record_snapshot(session_id: str, payload: dict, *, store) -> None:  # noqa: ANN001
        if written:
            time.sleep(1.0)
            raise StoreError("store write failed: database is locked")
        written.append(payload)
        real_record_snapshot(session_id, payload, store=store)

    monkeypatch.setattr(sessions, "record_snapshot", record_snapshot)
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    settings = session_settings(sim, isolated_env)
    request = SessionRequest("paper", [Sleeve("order_check", "QQQ.NASDAQ", "1-DAY-LAST", {"quantities": [1]})])

    # Act
    driven = drive_session(sim, settings, request, days=1)

    # Assert: not a clean stop; the reason says which write failed.
    outcome = driven.outcome
    assert outcome.status == "error", outcome.reason
    assert "store unavailable while writing telemetry: store write failed: database is locked" in outcome.reason
    assert get_session(outcome.session_id, store=driven.store).status == "error"

"""A runner SIGKILLed while its order is in flight (sent, not yet filled), then restarted.

The simulator holds fills (``SimGateway.hold_fills``), so the runner's entry order reaches the
gateway and rests as Submitted; the runner process is killed with SIGKILL; the fill happens
while no runner is connected; a new runner starts.  It must adopt the fill and the position
through reconciliation and never send the order again.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from fault_support import counts, placed, runner_env, start_runner, wait_until

from ats.governance.sessions import list_sessions, session_detail
from ats.store import open_store
from support import later, reap

pytestmark = pytest.mark.slow

# buy_threshold 0.99: the first bar with a range buys; sell_threshold 1.0: never sells.
ARGS = ["--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ",
        "--params", '{"buy_threshold": 0.99, "sell_threshold": 1.0}', "--until", later()]


def _running_session(store) -> str:  # noqa: ANN001
    running = [s for s in list_sessions("paper", store=store) if s.status == "running"]
    return running[0].id if running else ""


@pytest.fixture
def redis_node_id():
    """A node id of this test's own for the Redis variant (its keys are deleted afterwards)."""
    import uuid

    import redis

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("Redis on 127.0.0.1:6379 does not answer")
    node_id = "F" + uuid.uuid4().hex[:10]
    yield node_id
    for key in client.scan_iter(match=f"*ATS-PAPER-{node_id}*"):
        client.delete(key)
    client.close()


@pytest.mark.parametrize("cache", ["memory", "redis"])
def test_sigkill_with_the_order_in_flight_then_restart_adopts_the_fill(
        cache: str, sim_factory, isolated_env: Path, request: pytest.FixtureRequest) -> None:
    # Arrange
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    extra = {}
    if cache == "redis":
        extra = {"ATS_REDIS_URL": "redis://127.0.0.1:6379/0", "ATS_NODE_ID": request.getfixturevalue("redis_node_id")}
    env = runner_env(sim, isolated_env, **extra)
    store = open_store()
    first = start_runner("ats.paper", ARGS, env)
    second = None
    try:
        wait_until(lambda: sim.bar_subscriptions >= 1, what="the first runner's bar subscription")
        first_session = _running_session(store)
        sim.hold_fills(True)
        sim.advance(1)
        wait_until(lambda: len(placed(sim)) == 1, what="the entry order at the gateway")
        wait_until(lambda: counts(store, first_session).get("submitted", 0) == 1, what="the submission recorded")
        held = sim.snapshot()

        # Act: SIGKILL while the order is in flight; it fills with nobody connected; restart.
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
        wait_until(lambda: sim.clients == [], what="the simulator to see the dead client")
        sim.release_fills()
        second = start_runner("ats.paper", ARGS, env)
        wait_until(lambda: _running_session(store) not in ("", first_session), what="the second session")
        second_session = _running_session(store)
        wait_until(lambda: sim.bar_subscriptions >= 1, what="the second runner's bar subscription")
        wait_until(lambda: (session_detail(second_session, store=store)["last_snapshot"] or {}).get("positions"),
                   what="the adopted position in a snapshot")
        for _ in range(2):
            before = counts(store, second_session)["bars"]
            sim.advance(1)
            wait_until(lambda b=before: counts(store, second_session)["bars"] > b, what="a bar in session 2")
        second.send_signal(signal.SIGINT)
        output, errors = second.communicate(timeout=60)
    finally:
        reap(first)
        reap(second)

    # Assert: the order was in flight when the runner died …
    [order] = placed(sim)
    assert [o["order_id"] for o in held["open_orders"]] == [order["order_id"]] and held["fills"] == []
    first_events = [e["event"] for e in session_detail(first_session, store=store)["order_events"]]
    assert "submitted" in first_events and "filled" not in first_events
    # … it filled once at the gateway, and the new session adopted fill and position without a new order.
    assert [f["order_id"] for f in sim.snapshot()["fills"]] == [order["order_id"]]
    detail = session_detail(second_session, store=store)
    assert detail["status"] == "killed" and "SIGINT" in detail["reason"], output + errors
    assert [e for e in detail["order_events"] if e["event"] == "intent"] == []
    assert [(p["side"], p["quantity"]) for p in detail["last_snapshot"]["positions"]] == [
        ("LONG", float(order["quantity"]))]
    assert len(placed(sim)) == 1
    if cache == "redis":
        # The restarted node remembered the order itself and saw it fill during reconciliation.
        client_order_id = order["order_ref"].rsplit(":", 1)[0]
        adopted = [e for e in detail["order_events"] if e["client_order_id"] == client_order_id]
        assert [e["event"] for e in adopted] == ["filled"], detail["order_events"]

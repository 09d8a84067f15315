"""With ATS_REDIS_URL the node keeps its cache in Redis under its own trader id."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest
from runner_support import drive_session, session_settings

from ats.core.sleeves import Sleeve
from ats.trading.runner import SessionRequest

pytestmark = pytest.mark.slow
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_node_id():
    """A node id of this test's own (its Redis keys' prefix); the keys are deleted afterwards."""
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Redis on 127.0.0.1:6379 does not answer (CI=true: required)")
        pytest.skip("Redis on 127.0.0.1:6379 does not answer")
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    node_id = "T" + uuid.uuid4().hex[:10]
    yield node_id, client
    for key in client.scan_iter(match=f"*ATS-PAPER-{node_id}*"):
        client.delete(key)
    client.close()


def test_restarted_node_remembers_its_orders_from_redis(sim_factory, isolated_env: Path, redis_node_id) -> None:
    # Arrange
    node_id, client = redis_node_id
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    settings = session_settings(sim, isolated_env, ATS_REDIS_URL=REDIS_URL, ATS_NODE_ID=node_id)
    buy_once = Sleeve("ibs_reversion", "QQQ.NASDAQ", "1-DAY-LAST", {"buy_threshold": 0.99, "sell_threshold": 1.0})
    first = drive_session(sim, settings, SessionRequest("paper", [buy_once]), days=1)
    [order] = [r for r in sim.ledger if r["kind"] == "place"]
    client_order_id = order["order_ref"].rsplit(":", 1)[0]
    seen = {}

    def look_in_the_cache(guard, day: int) -> None:
        cached = guard.node.kernel.cache.order(_client_order_id(client_order_id))
        seen["status"] = cached.status.name if cached is not None else None

    # Act: a second node with the same trader id, after the first stopped.
    second = drive_session(sim, settings, SessionRequest("paper", [buy_once]), days=1, during=look_in_the_cache)

    # Assert
    assert first.outcome.status == second.outcome.status == "stopped"
    keys = [k.decode() for k in client.scan_iter(match=f"*ATS-PAPER-{node_id}*")]
    assert any(client_order_id in k for k in keys), keys
    assert seen["status"] == "FILLED"
    assert len([r for r in sim.ledger if r["kind"] == "place"]) == 1


def _client_order_id(value: str):  # noqa: ANN202
    from nautilus_trader.model.identifiers import ClientOrderId

    return ClientOrderId(value)

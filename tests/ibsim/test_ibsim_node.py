"""A real NautilusTrader TradingNode (IB data + exec clients, reconciliation on) against the simulator.

Each node runs in its own subprocess (``ibsim_node_script.py``), because the adapter caches its
IB clients at module level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from ibsim_support import NodeProcess

from ats.ibsim import SimGateway, versions

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def node() -> Iterator[Callable[..., NodeProcess]]:
    nodes: list[NodeProcess] = []

    def start(port: int, phase: str) -> NodeProcess:
        process = NodeProcess(port, phase)
        nodes.append(process)
        return process

    yield start
    for process in nodes:
        process.kill()


def _bar_dates(node: NodeProcess) -> list[int]:
    return [e["ts_event"] for e in node.named("bar")]


# 176: an older gateway (text only); 200: the last text-only version; 203: binary ids, protobuf
# executions, errors and orders; the default: a current gateway (everything the adapter uses in
# protobuf).  The adapter asks v100..v223 and gets min(223, the gateway's version).
GATEWAY_VERSIONS = [176, 200, 203, versions.DEFAULT_VERSION]


@pytest.mark.parametrize("server_version", GATEWAY_VERSIONS)
def test_node_trades_then_a_restarted_node_reconciles_position_and_open_order(
    sim_factory, node: Callable[..., NodeProcess], server_version: int
) -> None:
    sim = sim_factory(server_version=server_version)
    first = node(sim.port, "trade")

    first.wait_event("instrument", lambda e: e["id"] == "QQQ.NASDAQ" and e["price_precision"] == 2)
    assert sim.wait_for(lambda: sim.bar_subscriptions == 1, 60)
    filled = first.wait_event("filled")
    opened = first.wait_event("position_opened")
    sim.advance()
    bar = first.wait_event("bar")
    canceled = first.wait_event("canceled")
    resting_id = first.wait_event("resting_submitted")["client_order_id"]
    resting = first.wait_event("accepted", lambda e: e["client_order_id"] == resting_id)

    price = sim.market.instruments["QQQ.NASDAQ"].bar_on(sim.market.calendar[sim.position_in_session.day - 1]).close
    assert float(filled["last_px"]) == price and filled["last_qty"] == "10" and filled["commission"] == "1.00 USD"
    assert (opened["side"], opened["quantity"]) == ("LONG", "10")
    assert bar["ts_event"] == 1717372800 * 10**9  # 2024-06-03, published when 06-04 began
    assert canceled["client_order_id"] != resting_id
    kinds = [(e["kind"], e["result"]) for e in sim.ledger]
    assert kinds == [("place", "filled"), ("place", "accepted"), ("cancel", "cancelled"), ("place", "accepted")]
    assert sim.ledger[0]["order_ref"].startswith(filled["client_order_id"] + ":")

    first.kill()
    assert sim.wait_for(lambda: sim.clients == [], 10)
    ledger_before = sim.ledger

    second = node(sim.port, "check")
    report = second.wait_event("reconciled")

    assert report["positions"] == [{"instrument": "QQQ.NASDAQ", "side": "LONG", "quantity": "10"}]
    (order,) = report["orders"]
    assert order["venue_order_id"] == resting["venue_order_id"]
    assert order["client_order_id"] == resting_id
    assert (order["status"], order["side"], order["quantity"], order["price"]) == ("ACCEPTED", "BUY", "3", "100.00")
    assert sim.ledger == ledger_before, "reconciliation must not send orders"
    assert set(sim.negotiated_versions) == {server_version}


def test_node_keeps_receiving_bars_after_drop_outage_ibc_restart_and_error_1100(
    sim_gateway: SimGateway, node: Callable[..., NodeProcess]
) -> None:
    sim = sim_gateway
    probe = node(sim.port, "bars")
    assert sim.wait_for(lambda: sim.bar_subscriptions == 1, 60)
    sim.advance()
    probe.wait_event("bar")

    for fault in (sim.drop_connections, lambda: sim.outage(7), lambda: sim.restart(1),
                  lambda: sim.send_error(1100)):
        connections = sim.api_connections
        fault()
        assert sim.wait_for(lambda: sim.bar_subscriptions == 0, 10)
        # The adapter waits 5 s before it reconnects (longer while the outage refuses it).
        assert sim.wait_for(lambda connections=connections: sim.api_connections > connections
                            and sim.bar_subscriptions == 1, 60)
        seen = len(_bar_dates(probe))
        sim.advance()
        probe.wait_event("bar", lambda e, seen=seen: len(_bar_dates(probe)) > seen)

    dates = sorted(set(_bar_dates(probe)))
    assert len(dates) == 5, dates  # 2024-06-03 .. 06-07, one new day per phase
    assert sim.api_connections == 5

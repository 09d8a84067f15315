"""Benchmark the IB Gateway simulator.

1. Orders per second round-tripped placeOrder → execDetails through the stock ``ibapi`` EClient:
   sequential (send one, wait for its execDetails) and pipelined (send all, wait for all), at
   server version 200 (the last text-only one) and at the default (223: binary ids, protobuf
   orders, executions and errors), with the ratio default/200.
2. Connect-to-ready time of a real Nautilus TradingNode (IB data + exec clients, reconciliation
   on) in a subprocess: process start → strategy ``on_start``, and ``node.build()`` → ``on_start``.

Run: ``.venv/bin/python benchmarks/ibsim.py [--orders 500] [--nodes 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

from ibapi.client import EClient
from ibapi.contract import Contract
from ibapi.order import Order
from ibapi.wrapper import EWrapper

from ats.ibsim import SimGateway, versions

REPO = Path(__file__).resolve().parents[1]
NODE_SCRIPT = REPO / "tests" / "ibsim" / "ibsim_node_script.py"


class _Wrapper(EWrapper):
    def __init__(self) -> None:
        super().__init__()
        self.cond = threading.Condition()
        self.next_id: int | None = None
        self.fills = 0

    def nextValidId(self, orderId: int) -> None:  # noqa: N802, N803 - ibapi's names
        with self.cond:
            self.next_id = orderId
            self.cond.notify_all()

    def execDetails(self, reqId, contract, execution) -> None:  # noqa: N802, N803, ANN001
        with self.cond:
            self.fills += 1
            self.cond.notify_all()

    def error(self, *args) -> None:  # noqa: ANN002
        pass


def _qqq() -> Contract:
    c = Contract()
    c.secType, c.exchange, c.primaryExchange, c.localSymbol = "STK", "SMART", "NASDAQ", "QQQ"
    return c


def _mkt(action: str) -> Order:
    o = Order()
    o.action, o.totalQuantity, o.orderType, o.tif = action, Decimal(1), "MKT", "GTC"
    return o


def bench_orders(n: int, server_version: int) -> dict[str, float]:
    sim = SimGateway(start="2024-06-03", cash=10_000_000, server_version=server_version).start()
    wrapper = _Wrapper()
    client = EClient(wrapper)
    client.connect("127.0.0.1", sim.port, 1)
    thread = threading.Thread(target=client.run, daemon=True)
    thread.start()
    try:
        with wrapper.cond:
            assert wrapper.cond.wait_for(lambda: wrapper.next_id is not None, 10)
        order_id = max(wrapper.next_id or 1, 1)
        contract = _qqq()

        t0 = time.perf_counter()
        for i in range(n):
            client.placeOrder(order_id, contract, _mkt("BUY" if i % 2 == 0 else "SELL"))
            order_id += 1
            with wrapper.cond:
                assert wrapper.cond.wait_for(lambda i=i: wrapper.fills >= i + 1, 10)
        sequential = time.perf_counter() - t0

        base = wrapper.fills
        t0 = time.perf_counter()
        for i in range(n):
            client.placeOrder(order_id, contract, _mkt("BUY" if i % 2 == 0 else "SELL"))
            order_id += 1
        with wrapper.cond:
            assert wrapper.cond.wait_for(lambda: wrapper.fills >= base + n, 60)
        pipelined = time.perf_counter() - t0
        assert len(sim.ledger) == 2 * n
        assert sim.negotiated_versions == [server_version]
    finally:
        client.disconnect()
        thread.join(timeout=10)
        sim.stop()
    return {"orders": n, "sequential_orders_per_s": n / sequential, "sequential_ms_per_order": 1000 * sequential / n,
            "pipelined_orders_per_s": n / pipelined}


def bench_node(runs: int) -> dict[str, float]:
    totals, builds = [], []
    for _ in range(runs):
        sim = SimGateway(start="2024-06-03").start()
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, str(NODE_SCRIPT), "--port", str(sim.port), "--phase", "bars"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=str(REPO),
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        building = None
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if not line.startswith("@@ "):
                    continue
                event = json.loads(line[3:])
                if event["event"] == "building":
                    building = time.monotonic()
                if event["event"] == "started":
                    now = time.monotonic()
                    totals.append(now - t0)
                    builds.append(now - (building or t0))
                    break
            else:
                raise RuntimeError("the node exited before it was ready")
        finally:
            proc.kill()
            proc.wait(timeout=10)
            sim.stop()
    return {"runs": runs, "process_start_to_ready_s": statistics.median(totals),
            "build_to_ready_s": statistics.median(builds), "min_build_to_ready_s": min(builds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    by_version = {v: bench_orders(args.orders, v) for v in (200, versions.DEFAULT_VERSION)}
    for version, orders in by_version.items():
        print(f"orders at server version {version} (stock EClient, MKT 1 share, {orders['orders']} each way):")
        print(f"  sequential place→execDetails: {orders['sequential_orders_per_s']:.0f} orders/s "
              f"({orders['sequential_ms_per_order']:.2f} ms per round trip)")
        print(f"  pipelined:                    {orders['pipelined_orders_per_s']:.0f} orders/s")
    text, proto = by_version[200], by_version[versions.DEFAULT_VERSION]
    print(f"ratio {versions.DEFAULT_VERSION}/200: sequential "
          f"{proto['sequential_orders_per_s'] / text['sequential_orders_per_s']:.2f}, pipelined "
          f"{proto['pipelined_orders_per_s'] / text['pipelined_orders_per_s']:.2f}")
    node = bench_node(args.nodes)
    print(f"Nautilus TradingNode connect-to-ready (median of {node['runs']} runs):")
    print(f"  process start → on_start: {node['process_start_to_ready_s']:.2f} s")
    print(f"  node.build() → on_start (connect, load QQQ, reconcile): {node['build_to_ready_s']:.2f} s (best {node['min_build_to_ready_s']:.2f} s)")


if __name__ == "__main__":
    main()

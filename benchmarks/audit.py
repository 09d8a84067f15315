"""Audit log benchmark: durable append latency (SQLite) and verify speed.

    uv run python benchmarks/audit.py [--appends 2000] [--verify-rows 100000]

Prints append latency p50/p99 (each append its own durable commit: WAL, synchronous=FULL,
BEGIN IMMEDIATE), the same figure for a raw durable sqlite3 commit as the yardstick, and
verify speed in rows/s.  Targets: p99 append <= 2 ms; verify >= 300,000 rows/s.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from ats.governance import audit
from ats.store import open_store


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def raw_commit_latencies(path: Path, n: int) -> list[float]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    out = []
    for i in range(n):
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (v) VALUES (?)", (f"row {i}",))
        conn.execute("COMMIT")
        out.append(time.perf_counter() - start)
    conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--verify-rows", type=int, default=100_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        # The benchmark's key and anchor file, never the user's (each append writes the anchor).
        os.environ["ATS_AUDIT_KEY_FILE"] = str(tmp_path / "audit.key")
        os.environ["ATS_AUDIT_ANCHOR_FILE"] = str(tmp_path / "audit.anchor.json")
        store = open_store(f"sqlite:///{tmp_path / 'bench.sqlite3'}")
        for i in range(50):  # warm up
            audit.append("bench", "bench.warmup", "w", {"i": i}, store=store)
        latencies = []
        for i in range(args.appends):
            start = time.perf_counter()
            audit.append("bench@host", "order.intent", "ibs_reversion@QQQ.NASDAQ",
                         {"i": i, "side": "BUY", "quantity": 10, "session": "abc"}, store=store)
            latencies.append(time.perf_counter() - start)
        raw = raw_commit_latencies(tmp_path / "raw.sqlite3", args.appends)

        big = open_store(f"sqlite:///{tmp_path / 'verify.sqlite3'}")
        with big.write() as conn:
            for i in range(args.verify_rows):
                audit.append_in(conn, "bench@host", "order.intent", "ibs_reversion@QQQ.NASDAQ",
                                {"i": i, "side": "BUY", "quantity": 10})
        audit.verify(big)  # warm the page cache
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            result = audit.verify(big)
            runs.append(time.perf_counter() - start)
        elapsed = min(runs)

    p50, p99 = _percentile(latencies, 50) * 1e3, _percentile(latencies, 99) * 1e3
    r50, r99 = _percentile(raw, 50) * 1e3, _percentile(raw, 99) * 1e3
    print(f"append (durable, SQLite) n={args.appends}: p50 {p50:.3f} ms  p99 {p99:.3f} ms  "
          f"mean {statistics.mean(latencies) * 1e3:.3f} ms   target p99 <= 2 ms")
    print(f"raw durable sqlite3 commit:             p50 {r50:.3f} ms  p99 {r99:.3f} ms   "
          f"ratio append/raw p99 {p99 / r99:.2f}")
    print(f"verify: {result.rows} rows in {elapsed:.3f} s = {result.rows / elapsed:,.0f} rows/s   "
          f"target >= 300,000 rows/s")


if __name__ == "__main__":
    main()

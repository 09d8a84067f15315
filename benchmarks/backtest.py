"""Backtest speed: bars per second over the full QQQ history, and a 50-point parameter sweep.

Run: ``.venv/bin/python benchmarks/backtest.py`` (uses a scratch data dir; prints the figures).
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path


def main() -> None:
    from ats.backtest import run_backtest
    from ats.catalog import import_csv, shipped_csv

    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch)
        started = time.perf_counter()
        import_csv(shipped_csv(), "QQQ.NASDAQ", data_dir)
        print(f"import of the shipped QQQ CSV: {time.perf_counter() - started:.2f} s")

        run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, data_dir=data_dir, start="2024-01-01")  # warm imports
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            result = run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, data_dir=data_dir)
            timings.append(time.perf_counter() - started)
        best = min(timings)
        print(f"full history: {result.bars} bars, {result.num_trades} trades, best of 3 {best:.2f} s "
              f"-> {result.bars / best:,.0f} bars/s")

        buys = [0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50]
        sells = [0.60, 0.70, 0.80, 0.90, 0.95]
        grid = list(itertools.product(buys, sells))
        assert len(grid) == 50
        started = time.perf_counter()
        best_point = None
        for buy, sell in grid:
            run = run_backtest("ibs_reversion", "QQQ.NASDAQ", {"buy_threshold": buy, "sell_threshold": sell},
                               data_dir=data_dir)
            if best_point is None or run.sharpe > best_point[2]:
                best_point = (buy, sell, run.sharpe)
        elapsed = time.perf_counter() - started
        print(f"50-point sweep (buy x sell thresholds, full history): {elapsed:.1f} s "
              f"({elapsed / 50:.2f} s per run); best Sharpe {best_point[2]:.2f} at buy {best_point[0]}, "
              f"sell {best_point[1]}")


if __name__ == "__main__":
    main()

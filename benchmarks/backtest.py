"""Backtest speed: the rung over the full QQQ history against a raw NautilusTrader BacktestEngine,
and a 50-point parameter sweep on one process and on every core.

Run: ``.venv/bin/python benchmarks/backtest.py [--runs 3]`` (a scratch data dir; prints figures,
asserts nothing).  Targets (issue 16): full history ≤ 0.5 s; 50-point sweep ≤ 20 s on 2 cores.

* **rung**: :func:`ats.research.backtest.run_backtest` over the stored bars — the first run in the process
  (catalog read, ticks and engine built) and the best of ``--runs`` afterwards;
* **raw engine**: what one writes with Nautilus alone over the same stored bars and the same
  strategy class and params: ``BacktestEngine`` with its defaults (bar execution, the portfolio
  analyzer on), logging bypassed as in the rung; built, run and disposed each time (best of
  ``--runs``).  Its fills differ (Nautilus fills a market order at the deciding bar's close);
  the work is the same — 6,496 bars, the same decisions' worth of orders;
* **sweep**: :func:`ats.research.sweep.run_sweep` over buy 0.05…0.50 × sell 0.60…0.95 (50 points)
  with ``processes=1`` and with every core this process may use; also as a ratio to the raw
  engine's time, which keeps figures comparable when the machine's speed drifts.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

BUYS = [0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50]
SELLS = [0.60, 0.70, 0.80, 0.90, 0.95]


def raw_engine_run(data_dir: Path, params: dict) -> tuple[float, int]:
    """Seconds of one plain Nautilus backtest over the stored QQQ bars; the orders it made."""
    import msgspec
    from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
    from nautilus_trader.config import LoggingConfig
    from nautilus_trader.model.currencies import USD
    from nautilus_trader.model.enums import AccountType, OmsType
    from nautilus_trader.model.identifiers import TraderId
    from nautilus_trader.model.objects import Money

    from ats.core.params import parse_params
    from ats.research.backtest import _fee_model_class
    from ats.research.catalog import load_bars, load_instrument
    from ats.strategies import get_strategy

    strategy_cls, _ = get_strategy("ibs_reversion").load()
    config = msgspec.structs.replace(parse_params("ibs_reversion", params, "QQQ.NASDAQ"), external_order_claims=None)
    bars = load_bars("QQQ.NASDAQ", data_dir)
    instrument = load_instrument("QQQ.NASDAQ", data_dir)
    started = time.perf_counter()
    engine = BacktestEngine(BacktestEngineConfig(trader_id=TraderId("RAW-001"),
                                                 logging=LoggingConfig(log_level="ERROR", bypass_logging=True)))
    try:
        engine.add_venue(instrument.id.venue, oms_type=OmsType.NETTING, account_type=AccountType.CASH,
                         starting_balances=[Money(100_000, USD)], base_currency=USD, fee_model=_fee_model_class()())
        engine.add_instrument(instrument)
        engine.add_data(bars)
        engine.add_strategy(strategy_cls(config))
        engine.run()
        orders = len(engine.cache.orders())
    finally:
        engine.dispose()
    return time.perf_counter() - started, orders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="Timed runs of the rung and the raw engine (best kept).")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    from ats.research.backtest import run_backtest
    from ats.research.catalog import import_csv, shipped_csv
    from ats.research.sweep import default_processes, run_sweep

    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch)
        started = time.perf_counter()
        import_csv(shipped_csv(), "QQQ.NASDAQ", data_dir)
        print(f"import of the shipped QQQ CSV: {time.perf_counter() - started:.2f} s")

        run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, start="2024-06-01", bars=[
            ("2024-06-03", 1, 2, 0.5, 1.5, 1), ("2024-06-04", 1, 2, 0.5, 0.6, 1)])  # imports, not the catalog
        started = time.perf_counter()
        result = run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, data_dir=data_dir)
        first = time.perf_counter() - started
        timings = []
        for _ in range(args.runs):
            started = time.perf_counter()
            result = run_backtest("ibs_reversion", "QQQ.NASDAQ", {}, data_dir=data_dir)
            timings.append(time.perf_counter() - started)
        rung = min(timings)
        print(f"rung, full history: {result.bars} bars, {len(result.decisions)} orders, {result.num_trades} trades: "
              f"first run in the process {first:.3f} s, best of {args.runs} {rung:.3f} s "
              f"({result.bars / rung:,.0f} bars/s; target <= 0.5 s)")

        raw = [raw_engine_run(data_dir, {}) for _ in range(args.runs)]
        best_raw = min(t for t, _ in raw)
        print(f"raw NautilusTrader BacktestEngine, same bars and strategy: {raw[0][1]} orders, best of {args.runs} "
              f"{best_raw:.3f} s -> rung / raw = {rung / best_raw:.2f}")

        grid = {"buy_threshold": BUYS, "sell_threshold": SELLS}
        cores = default_processes()
        figures = {}
        for processes in sorted({1, cores}):
            sweep = run_sweep("ibs_reversion", "QQQ.NASDAQ", grid, data_dir=data_dir, processes=processes)
            figures[processes] = sweep.seconds
            best = sweep.best
            print(f"50-point sweep (buy x sell thresholds, full history) on {processes} process(es): "
                  f"{sweep.seconds:.1f} s ({sweep.seconds / 50:.2f} s per point); best sharpe "
                  f"{best.metrics['sharpe']:.2f} at {best.params}; sweep / raw engine = {sweep.seconds / best_raw:.1f}")
        if cores > 1:
            print(f"sweep speed-up on {cores} processes: {figures[1] / figures[cores]:.2f}x (target <= 20 s on 2 cores)")


if __name__ == "__main__":
    main()

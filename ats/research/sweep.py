"""Parameter sweeps of the backtest rung: a grid of params run on every core, ranked by a metric.

``ats ladder sweep --grid '{"buy_threshold": [0.1, 0.2], "sell_threshold": [0.7, 0.8]}'`` runs the
cartesian product of the grid (in the grid's order) over the stored bars:

* **Every point is validated first** (as ``--params`` would be), so a typo or an impossible
  combination (``buy_threshold`` not below ``sell_threshold``) is refused before any work.
* **Processes, not threads**: the engine holds the GIL.  ``processes=N`` is this process and
  N - 1 spawned workers; each reads the catalog once and builds one
  :class:`ats.research.backtest.Backtester` (bars, ticks, engine) that it resets for each point it
  is given.  This process starts on the points at once (from the back of the grid) while the
  workers import Nautilus; ``processes=1`` runs every point here.  A point's result is exactly
  what ``ats ladder run`` of that params set gives (tests check this).  The workers are spawned,
  so a script of your own that calls :func:`run_sweep` with more than one process needs the usual
  ``if __name__ == "__main__":`` guard (the ``ats`` command and ``python -m`` entry points are safe).
* **The best point is in-sample**: chosen on the same bars it is measured on, its numbers are
  optimistic.  ``train_until`` splits the bars (walk-forward): the grid runs on the bars up to
  and including that date, and the chosen point is then run once on the bars after it — its
  out-of-sample metrics are the honest figure.
* Sweeps are stored (:func:`record_sweep`: the grid, the code fingerprint, every point) but are
  research only: no gate reads them, a sweep earns no rung.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ats.core.errors import AtsError, InputError
from ats.core.params import DEFAULT_BAR_SPEC, check_instrument_id, decode_params_json, parse_params

if TYPE_CHECKING:
    from ats.core.settings import Settings
    from ats.research.backtest import Backtester
    from ats.store import Store

#: Metrics a sweep can be sorted by, and whether more is better.
METRICS: dict[str, bool] = {
    "sharpe": True,
    "total_return": True,
    "cagr": True,
    "win_rate": True,
    "final_equity": True,
    "num_trades": True,
    "exposure": True,
    "max_drawdown": False,
}
MAX_POINTS = 10_000
IN_SAMPLE_WARNING = ("the best point is in-sample: it was chosen on the same bars it is measured on, so its "
                     "numbers are optimistic; judge it out of sample (--train-until DATE) before trusting it")


@dataclass(frozen=True)
class SweepPoint:
    """One grid point: its params (as given in the grid) and the backtest's metrics."""

    params: dict[str, Any]
    metrics: dict[str, Any]


@dataclass
class SweepResult:
    """A finished sweep; ``points`` are sorted best first by ``sort_by``."""

    strategy: str
    instrument: str
    bar_spec: str
    grid: dict[str, list[Any]]
    fingerprint: str
    sort_by: str
    data_start: str
    data_end: str
    train_until: str | None
    points: list[SweepPoint]
    processes: int
    seconds: float
    out_of_sample: dict[str, Any] | None = None  # {"start", "end", "metrics"} of the best point
    sweep_id: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def best(self) -> SweepPoint:
        return self.points[0]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["best"] = asdict(self.best)
        return data


# --------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------
def parse_grid(strategy: str, instrument: str, grid: str | dict | None,
               bar_spec: str = DEFAULT_BAR_SPEC) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    """The grid (``{param: [values…]}``) and its points in grid order, every point validated.

    Raises :class:`InputError` with one line: not a JSON object, an empty grid, a value that is
    not a non-empty list of numbers/strings/booleans/null, a repeated value, more than
    :data:`MAX_POINTS` points, or the first point the strategy refuses (and how many are bad).
    """
    example = '\'{"buy_threshold": [0.1, 0.2], "sell_threshold": [0.7, 0.8]}\''
    try:
        raw = decode_params_json(grid)
    except InputError as exc:
        raise InputError(str(exc).replace("params", "the grid", 1).replace("'{\"buy_threshold\": 0.15}'", example)) \
            from None
    if not raw:
        raise InputError(f"the grid is empty; give each parameter to sweep a list of values, e.g. {example}")
    for name, values in raw.items():
        if not isinstance(values, list) or not values:
            raise InputError(f"grid parameter {name!r} must be a non-empty list of values, got {json.dumps(values)} "
                             f"(e.g. {example})")
        for value in values:
            if isinstance(value, (dict, list)):
                raise InputError(f"grid parameter {name!r}: {json.dumps(value)} is not a single value")
        canonical = [json.dumps(v, sort_keys=True) for v in values]
        repeated = next((v for v in canonical if canonical.count(v) > 1), None)
        if repeated is not None:
            raise InputError(f"grid parameter {name!r} lists {repeated} more than once")
    size = math.prod(len(v) for v in raw.values())
    if size > MAX_POINTS:
        raise InputError(f"the grid has {size:,} points; at most {MAX_POINTS:,} are allowed — use fewer values")
    names = list(raw)
    points = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*raw.values())]
    bad: list[tuple[dict[str, Any], str]] = []
    for point in points:
        try:
            parse_params(strategy, point, instrument, bar_spec)
        except InputError as exc:
            if not bad and str(exc).startswith("unknown parameter"):
                raise InputError(f"grid: {exc}") from None
            bad.append((point, str(exc)))
    if bad:
        point, reason = bad[0]
        raise InputError(f"grid point {json.dumps(point)}: {reason} ({len(bad)} of {len(points)} points are "
                         "invalid; narrow the grid)")
    return raw, points


def check_sort_metric(sort_by: str) -> str:
    if sort_by not in METRICS:
        raise InputError(f"unknown sort metric {sort_by!r}; choose one of {', '.join(METRICS)}")
    return sort_by


def rank(points: list[SweepPoint], sort_by: str) -> list[SweepPoint]:
    """Best first by ``sort_by`` (highest, or lowest for max_drawdown); no value last; ties keep grid order."""
    higher = METRICS[check_sort_metric(sort_by)]

    def key(point: SweepPoint) -> tuple[int, float]:
        value = point.metrics.get(sort_by)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return (1, 0.0)
        return (0, -value if higher else value)

    return sorted(points, key=key)


# --------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------
_WORKER: Backtester | None = None  # the worker process's Backtester


def _worker_start(strategy: str, instrument: str, start: str | None, end: str | None, data_dir: str,
                  bar_spec: str) -> None:
    global _WORKER
    from ats.research.backtest import Backtester

    _WORKER = Backtester(strategy, instrument, start=start, end=end, data_dir=data_dir, bar_spec=bar_spec)


def _worker_run(index: int, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    assert _WORKER is not None, "the pool's initializer (_worker_start) builds the worker's Backtester"
    return index, _WORKER.run(params).metrics()


def default_processes() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_sweep(strategy: str, instrument: str, grid: str | dict, *, data_dir: Path | str,
              start: str | None = None, end: str | None = None, train_until: str | None = None,
              sort_by: str = "sharpe", processes: int | None = None, bar_spec: str = DEFAULT_BAR_SPEC,
              progress: Callable[[int, int], None] | None = None) -> SweepResult:
    """Run every point of ``grid`` on ``processes`` processes (default: every core) and rank them.

    With ``train_until`` the points run on the bars up to that date and the best one is run
    again on the bars after it (``out_of_sample``).  ``progress(done, total)`` is called as
    points finish.  Raises :class:`InputError` on bad input, before any point runs.
    """
    from ats.research import catalog
    from ats.research.backtest import Backtester, parse_day
    from ats.strategies import get_strategy

    spec = get_strategy(strategy)
    check_instrument_id(instrument)
    check_sort_metric(sort_by)
    if processes is not None and processes < 1:
        raise InputError(f"processes must be at least 1 (got {processes})")
    grid, points = parse_grid(strategy, instrument, grid, bar_spec)
    if str(instrument) == catalog.DEFAULT_INSTRUMENT and bar_spec == DEFAULT_BAR_SPEC:
        catalog.ensure_default_data(data_dir)

    split = parse_day(train_until, "--train-until")
    last = parse_day(end, "end")
    if split is not None and last is not None and split >= last:
        raise InputError(f"--train-until {split} must be before --end {last}: the bars after it are the test")
    train_end = split.isoformat() if split is not None else end
    backtester = Backtester(strategy, instrument, start=start, end=train_end, data_dir=data_dir, bar_spec=bar_spec)
    tester = None
    if split is not None:
        try:
            tester = Backtester(strategy, instrument, start=(split + timedelta(days=1)).isoformat(), end=end,
                                data_dir=data_dir, bar_spec=bar_spec)
        except InputError:
            raise InputError(f"no bars after --train-until {split} (the bars end {backtester.rows[-1].date}); "
                             "choose an earlier date") from None

    workers = min(processes or default_processes(), len(points))
    began = time.perf_counter()
    try:
        if workers == 1:
            metrics = []
            for done, params in enumerate(points, start=1):
                metrics.append(backtester.run(params).metrics())
                if progress:
                    progress(done, len(points))
        else:
            metrics = _run_in_processes(backtester, strategy, instrument, start, train_end, str(data_dir), bar_spec,
                                        points, workers, progress)
        ranked = rank([SweepPoint(p, m) for p, m in zip(points, metrics, strict=True)], sort_by)
        out_of_sample = None
        if tester is not None:
            result = tester.run(ranked[0].params)
            out_of_sample = {"start": result.start, "end": result.end, "metrics": result.metrics()}
    finally:
        backtester.close()
        if tester is not None:
            tester.close()
    return SweepResult(
        strategy=strategy, instrument=instrument, bar_spec=bar_spec, grid=grid, fingerprint=spec.fingerprint(),
        sort_by=sort_by, data_start=backtester.rows[0].date.isoformat(), data_end=backtester.rows[-1].date.isoformat(),
        train_until=split.isoformat() if split else None, points=ranked, processes=workers,
        seconds=time.perf_counter() - began, out_of_sample=out_of_sample,
        warnings=[] if split else [IN_SAMPLE_WARNING])


def _run_in_processes(backtester: Backtester, strategy: str, instrument: str, start: str | None,
                      end: str | None, data_dir: str, bar_spec: str, points: list[dict[str, Any]], workers: int,
                      progress: Callable[[int, int], None] | None) -> list[dict[str, Any]]:
    """The points on ``workers`` processes: this one and ``workers - 1`` spawned ones.

    A spawned worker first imports Nautilus and pandas (about 3 s on a slow machine) while this
    process has them and its Backtester ready, so it starts on the points at once: the workers
    take points from the front of the grid, this process from the back (a point still queued is
    cancelled in the pool and run here), until none is left.
    """
    import multiprocessing
    import queue
    from concurrent.futures import Future, ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: Nautilus' Rust side and OpenBLAS run threads a forked child could
    # inherit mid-lock.
    context = multiprocessing.get_context("spawn")
    results: dict[int, dict[str, Any]] = {}
    finished: queue.SimpleQueue[Future[tuple[int, dict[str, Any]]]] = queue.SimpleQueue()

    def report(index: int, metrics: dict[str, Any]) -> None:
        results[index] = metrics
        if progress:
            progress(len(results), len(points))

    def report_finished(block: bool) -> None:
        while True:
            try:
                future = finished.get(block=block)
            except queue.Empty:
                return
            if not future.cancelled():  # a cancelled point ran in this process
                report(*future.result())
            if block:
                return

    with ProcessPoolExecutor(max_workers=workers - 1, mp_context=context, initializer=_worker_start,
                             initargs=(strategy, instrument, start, end, data_dir, bar_spec)) as pool:
        futures = [pool.submit(_worker_run, i, params) for i, params in enumerate(points)]
        for future in futures:
            future.add_done_callback(finished.put)
        try:
            for index in reversed(range(len(points))):
                if futures[index].cancel():  # no worker has taken it yet
                    report(index, backtester.run(points[index]).metrics())
                report_finished(block=False)
            while len(results) < len(points):
                report_finished(block=True)
        except BrokenProcessPool as exc:
            raise AtsError(f"a sweep worker process died ({exc}); run with --processes 1 to see why") from None
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return [results[index] for index in range(len(points))]


def sweep_and_record(strategy: str, instrument: str, grid: str | dict, *, settings: Settings,
                     start: str | None = None, end: str | None = None, train_until: str | None = None,
                     sort_by: str = "sharpe", processes: int | None = None, heatmap: str | Path | None = None,
                     axes: str | None = None, store: Store | None = None,
                     progress: Callable[[int, int], None] | None = None) -> SweepResult:
    """What ``ats ladder sweep`` and the research-ladder flow do: check every input, run the sweep,
    write the heat map (``heatmap``, over ``axes``), store the sweep."""
    from ats.research.report import check_output_path, write_sweep_heatmap

    parsed, _ = parse_grid(strategy, instrument, grid)
    check_sort_metric(sort_by)
    plot = heatmap_axes(parsed, axes) if heatmap else None
    if heatmap:
        check_output_path(heatmap, "--heatmap")
    result = run_sweep(strategy, instrument, grid, data_dir=settings.data_dir, start=start, end=end,
                       train_until=train_until, sort_by=sort_by, processes=processes, progress=progress)
    if heatmap and plot:
        write_sweep_heatmap(result, heatmap, *plot)
    record_sweep(result, actor=settings.operator, store=store)
    return result


# --------------------------------------------------------------------------------------------
# The record
# --------------------------------------------------------------------------------------------
def record_sweep(result: SweepResult, *, actor: str, store: Store | None = None) -> int:
    """Store the sweep (grid, fingerprint, windows, every point, the choice); returns its id."""
    from ats.governance.audit import canonical_json
    from ats.store import open_store, utcnow_iso
    from ats.store.engine import inserted_id
    from ats.store.models import sweeps

    store = store or open_store()
    with store.write() as conn:
        row = conn.execute(sweeps.insert().values(
            strategy=result.strategy, instrument=result.instrument, bar_spec=result.bar_spec,
            grid=canonical_json(result.grid), fingerprint=result.fingerprint, sort_by=result.sort_by,
            data_start=result.data_start, data_end=result.data_end, train_until=result.train_until,
            points=canonical_json([asdict(p) for p in result.points]), best=canonical_json(asdict(result.best)),
            out_of_sample=canonical_json(result.out_of_sample) if result.out_of_sample is not None else None,
            processes=result.processes, seconds=result.seconds, actor=actor, at=utcnow_iso()))
    result.sweep_id = inserted_id(row)
    return result.sweep_id


def load_sweep(sweep_id: int, *, store: Store | None = None) -> dict[str, Any] | None:
    """A stored sweep as a dict (JSON columns decoded), or ``None``."""
    from sqlalchemy import select

    from ats.store import open_store
    from ats.store.models import sweeps

    store = store or open_store()
    with store.read() as conn:
        row = conn.execute(select(sweeps).where(sweeps.c.id == sweep_id)).mappings().first()
    if row is None:
        return None
    data = dict(row)
    for column in ("grid", "points", "best", "out_of_sample"):
        if data[column] is not None:
            data[column] = json.loads(data[column])
    return data


def heatmap_axes(grid: dict[str, list[Any]], axes: str | None) -> tuple[str, str | None]:
    """The two parameters of the heat map: ``axes`` (``"x,y"``) or the first two that vary."""
    if axes:
        names = [a.strip() for a in axes.split(",")]
        if len(names) != 2 or not all(names) or names[0] == names[1]:
            raise InputError(f"--axes {axes!r}: expected two different grid parameters, e.g. buy_threshold,sell_threshold")
        for name in names:
            if name not in grid:
                raise InputError(f"--axes: {name!r} is not in the grid (grid parameters: {', '.join(grid)})")
        return names[0], names[1]
    varying = [name for name, values in grid.items() if len(values) > 1] or list(grid)
    return varying[0], (varying[1] if len(varying) > 1 else None)

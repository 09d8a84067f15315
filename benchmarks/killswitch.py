"""Kill switch benchmark: from `ats kill` to trading state HALTED, and to node stopped.

    uv run python benchmarks/killswitch.py [--runs 20]

Each run starts a paper session in-process (the real TradingNode + IB adapter) against a fresh
in-process simulator with a manual clock; the ``order_check`` strategy leaves a resting limit
order open at the broker after one ``sim.advance(1)``; then the real CLI
``python -m ats.cli kill --mode paper --reason bench`` runs in a subprocess, as an operator's
would.  Latencies are measured from the ``kill.latch`` audit row's ``ts`` (the moment the latch
is written, inside the CLI's transaction), not from the CLI's process start:

* HALTED:        latch -> ``session.halted`` audit row ``ts`` (written right after the risk
                 engine's trading state is set to HALTED);
* cancel@broker: latch -> the simulator's ledger row of the cancel request;
* stop called:   latch -> ``node.stop()`` requested by the session guard (open orders gone);
* node stopped:  latch -> ``node.run()`` returned (the node's stop sequence finished);
* dispose in/out: latch -> ``node.dispose()`` called / returned (instrumented, like the two above);
* stopped_at:    latch -> the session's ``stopped_at`` in the store (after dispose);
* disposed:      latch -> ``run_session`` returned.

The CLI's own wall time (process start to exit) is reported separately.  Target: HALTED
within 250 ms p99.  The kill switch is cleared (``killswitch.clear``) between runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

TARGET_HALTED_MS = 250.0
SLEEVE_PARAMS = {"quantities": [1], "limit_price": 100.0}  # well below the market: the order rests


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def _wait_until(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


def _epoch(iso: str) -> float:
    """An ats UTC timestamp (``...Z`` or an ISO offset) as seconds since the epoch."""
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _clean_env(data_dir: Path) -> dict[str, str]:
    """This process's environment without any ATS_* variable of the caller, on our data dir."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ATS_")}
    env["ATS_DATA_DIR"] = str(data_dir)
    env.setdefault("COLUMNS", "200")
    return env


def one_run(index: int, data_dir: Path, store, cli_env: dict[str, str]) -> dict[str, float]:  # noqa: ANN001
    from ats import audit, killswitch
    from ats.ibsim import SimGateway
    from ats.runner import SessionRequest, check_gates, run_session
    from ats.sessions import get_session
    from ats.settings import load_settings
    from ats.sleeves import Sleeve

    sim = SimGateway(mode="paper", clock="manual", start="2024-06-03").start()
    try:
        env = {**_clean_env(data_dir), "ATS_IB_PAPER_PORT": str(sim.port), "ATS_IB_PAPER_ACCOUNT_ID": sim.account}
        settings = load_settings(env, dotenv=data_dir / "no.env")
        until = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)).isoformat(timespec="seconds")
        request = SessionRequest("paper", [Sleeve("order_check", "QQQ.NASDAQ", "1-DAY-LAST", dict(SLEEVE_PARAMS))],
                                 until=until)
        account, _ = check_gates(request, settings, store)
        marks: dict[str, float] = {}
        errors: list[BaseException] = []

        def driver(guard) -> None:  # noqa: ANN001
            try:
                _wait_until(lambda: sim.bar_subscriptions >= 1, what="the bar subscription")
                sim.advance(1)
                _wait_until(lambda: any(r["kind"] == "place" for r in sim.ledger), what="the limit order at the broker")
                cache = guard.node.kernel.cache
                _wait_until(lambda: len(cache.orders_open()) >= 1, what="the order open in the node")
                start = time.time()
                done = subprocess.run([sys.executable, "-m", "ats.cli", "kill", "--mode", "paper", "--reason", "bench"],
                                      env=cli_env, cwd=data_dir, capture_output=True, text=True, timeout=120)
                marks["cli_start"], marks["cli_end"] = start, time.time()
                if done.returncode != 0:
                    raise RuntimeError(f"ats kill exited {done.returncode}: {done.stderr[-1000:]}")
            except BaseException as exc:  # noqa: BLE001 - surfaced in the main thread
                errors.append(exc)
                guard.request_stop(f"benchmark driver failed: {exc}")

        def on_running(guard) -> None:  # noqa: ANN001
            # Instrumentation only (instance attributes of this run's guard and node): when the
            # guard asks the node to stop, and when node.run() returns (the node has stopped).
            stop_node, node_run, node_dispose = guard._stop_node, guard.node.run, guard.node.dispose  # noqa: SLF001

            def timed_stop_node() -> None:
                marks.setdefault("stop_called", time.time())
                stop_node()

            def timed_run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
                try:
                    return node_run(*args, **kwargs)
                finally:
                    marks["node_stopped"] = time.time()

            def timed_dispose(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
                marks["dispose_called"] = time.time()
                try:
                    return node_dispose(*args, **kwargs)
                finally:
                    marks["dispose_returned"] = time.time()

            guard._stop_node = timed_stop_node  # noqa: SLF001
            guard.node.run = timed_run
            guard.node.dispose = timed_dispose
            threading.Thread(target=driver, args=(guard,), daemon=True, name="bench-driver").start()

        outcome = run_session(request, settings, store, account=account, on_running=on_running)
        returned = time.time()
        if errors:
            raise errors[0]
        if outcome.status != "killed":
            raise RuntimeError(f"run {index}: session ended {outcome.status}: {outcome.reason}")
        rows = audit.list_rows(store=store, limit=50)
        latch_ts = _epoch([r for r in rows if r.action == "kill.latch"][-1].ts)
        halted_ts = _epoch([r for r in rows if r.action == "session.halted" and r.subject == outcome.session_id][-1].ts)
        stopped_at = _epoch(get_session(outcome.session_id, store=store).stopped_at)
        ledger = sim.ledger
        if [r["kind"] for r in ledger] != ["place", "cancel"]:
            raise RuntimeError(f"run {index}: unexpected broker ledger {ledger}")
        cancel_ts = _epoch(ledger[1]["time"])
        killswitch.clear("paper", "benchmark run finished", settings.operator, store=store)
        return {
            "halted": (halted_ts - latch_ts) * 1e3,
            "cancel@broker": (cancel_ts - latch_ts) * 1e3,
            "stop called": (marks["stop_called"] - latch_ts) * 1e3,
            "node stopped": (marks["node_stopped"] - latch_ts) * 1e3,
            "dispose called": (marks["dispose_called"] - latch_ts) * 1e3,
            "dispose returned": (marks["dispose_returned"] - latch_ts) * 1e3,
            "stopped_at": (stopped_at - latch_ts) * 1e3,
            "disposed": (returned - latch_ts) * 1e3,
            "cli start->latch": (latch_ts - marks["cli_start"]) * 1e3,
            "cli wall": (marks["cli_end"] - marks["cli_start"]) * 1e3,
        }
    finally:
        sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    from ats.settings import get_settings
    from ats.store import open_store
    from ats.store.engine import forget_stores

    started = time.monotonic()
    results: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="ats-bench-kill-") as tmp:
        data_dir = Path(tmp) / "ats-data"
        data_dir.mkdir()
        cli_env = _clean_env(data_dir)
        # In-process code that reads the process settings (get_settings) sees the same data dir.
        for key in [k for k in os.environ if k.upper().startswith("ATS_")]:
            del os.environ[key]
        os.environ["ATS_DATA_DIR"] = str(data_dir)
        os.chdir(tmp)  # no stray .env of the caller's directory
        get_settings.cache_clear()
        store = open_store(f"sqlite:///{data_dir / 'ats.sqlite3'}")
        try:
            for i in range(args.runs):
                result = one_run(i, data_dir, store, cli_env)
                results.append(result)
                print(f"run {i + 1:2d}/{args.runs}: HALTED {result['halted']:6.1f} ms  "
                      f"node stopped {result['node stopped']:7.1f} ms  disposed {result['disposed']:7.1f} ms  "
                      f"cli wall {result['cli wall']:6.0f} ms", flush=True)
        finally:
            forget_stores()
            get_settings.cache_clear()
    total = time.monotonic() - started

    print()
    print(f"kill switch, paper session on the simulator, n={len(results)} "
          f"(latency from the kill.latch audit row ts; {total:.0f} s total)")
    print(f"{'':22s} {'p50':>9s} {'p99':>9s} {'max':>9s} {'mean':>9s}")
    for key in ("halted", "cancel@broker", "stop called", "node stopped", "dispose called", "dispose returned",
                "stopped_at", "disposed",
                "cli start->latch", "cli wall"):
        values = [r[key] for r in results]
        label = {"halted": "latch -> HALTED", "cancel@broker": "latch -> cancel@broker",
                 "stop called": "latch -> node.stop()", "node stopped": "latch -> node stopped",
                 "dispose called": "latch -> dispose() in", "dispose returned": "latch -> dispose() out",
                 "stopped_at": "latch -> stopped_at", "disposed": "latch -> disposed",
                 "cli start->latch": "ats kill start->latch", "cli wall": "ats kill wall time"}[key]
        print(f"{label:22s} {_percentile(values, 50):7.1f}ms {_percentile(values, 99):7.1f}ms "
              f"{max(values):7.1f}ms {statistics.mean(values):7.1f}ms")
    p99 = _percentile([r["halted"] for r in results], 99)
    print(f"HALTED p99 {p99:.1f} ms / target {TARGET_HALTED_MS:.0f} ms = ratio {p99 / TARGET_HALTED_MS:.2f}"
          f"   ({'met' if p99 <= TARGET_HALTED_MS else 'MISSED'})")


if __name__ == "__main__":
    main()

"""Go-live benchmark: flow start to node RUNNING (confirmation by ``i_understand``), cancel to node stopped.

    uv run python benchmarks/golive.py [--runs 3] [--skip-inprocess] [--skip-served]

Both parts use a real local Prefect server this script starts (``prefect server start`` on a
free port, its own PREFECT_HOME, fresh SQLite) and stops; every ats store lives in a temporary
data directory.

(a) In-process: ``flows.go_live.go_live(..., i_understand=<live account>)`` with every gate
    satisfied (a passing paper verdict, a go-live approval) and ``ATS_GATEWAY_CONTROLLER=sim``
    with this process's ``SimController``: the swap really stops the paper simulator and starts
    the live one.  Measured from the ``go_live(...)`` call to node RUNNING, where RUNNING is the
    live simulator seeing the node's bar subscription; the split comes from the Prefect flow
    run's start time, the controller's stop/start calls and the audit rows ``gateway.swap``,
    ``confirmation.accepted``, ``session.start`` and the session's first telemetry snapshot
    (written by the session actor's ``on_start``).  Each session is then ended with the live
    kill switch (cleared again), and the simulators are swapped back to paper for the next run.
(b) Served: ``python -m deployments`` (live trading enabled, ``ATS_GATEWAY_CONTROLLER=external``)
    with a live simulator this script runs on the live port; a go-live run is created from the
    deployment, waits until its node holds a resting order at the broker, and is cancelled as
    the Prefect UI does (``Cancelling``, forced).  Measured from the cancel request to the
    ``session.halted`` audit row (SIGTERM taken as the kill switch), to the cancel at the broker,
    to the session's ``stopped_at``, and to the run's final state.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ats.core.localhost import free_port, wait_until
from ats.core.prefect_server import LocalPrefectServer

REPO = Path(__file__).resolve().parents[1]
LIVE_ACCOUNT = "U1234567"
PAPER_ACCOUNT = "DU1234567"
STRATEGY, INSTRUMENT = "order_check", "QQQ.NASDAQ"
PARAMS = {"quantities": [1], "limit_price": 100.0}  # a resting limit order, well below the market


# ------------------------------------------------------------------------------------ helpers

_wait_until = functools.partial(wait_until, interval=0.005)  # poll fast: the waits are measured


def _epoch(value) -> float:  # noqa: ANN001
    """An ats ISO timestamp (``...Z``) or a datetime as seconds since the epoch."""
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


# The sessions here run until the benchmark cancels or kills them; this only bounds a stuck one.
SESSION_FOR_S = 30 * 60


def _base_env() -> dict[str, str]:
    """This process's environment without the caller's ATS_* and PREFECT_* variables."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith(("ATS_", "PREFECT_"))}


def _satisfy_gates(store) -> None:  # noqa: ANN001
    """A passing paper verdict on the current code and a go-live approval for the sleeve and its PARAMS."""
    from ats.governance import approvals
    from ats.research import ladder
    from ats.strategies import get_strategy

    ladder.record_verdict("paper", STRATEGY, INSTRUMENT, passed=True, reasons=["benchmark setup"], metrics={},
                          params=dict(PARAMS), data_start=None, data_end=None,
                          fingerprint=get_strategy(STRATEGY).fingerprint(), actor="bench", store=store)
    approvals.approve_live(STRATEGY, INSTRUMENT, "benchmark", "bench", params=dict(PARAMS), store=store)


def _stop_process(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 60) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=timeout)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class PrefectServer(LocalPrefectServer):
    """The local Prefect server of ``ats.core.prefect_server`` with a fast scheduler loop."""

    def __init__(self, home: Path) -> None:
        super().__init__(home, scheduler_loop_s=5)


def _stats(values: list[float]) -> str:
    return f"median {statistics.median(values):8.0f} ms   max {max(values):8.0f} ms"


# ------------------------------------------------------------------------------------ (a) in-process

def bench_inprocess(runs: int, tmp: Path, server: PrefectServer) -> list[dict[str, float]]:
    """go_live in this process against SimController simulators; flow start -> node RUNNING."""
    data_dir = tmp / "inprocess-data"
    env = {"ATS_DATA_DIR": str(data_dir), "ATS_ENABLE_LIVE_TRADING": "true",
           "ATS_IB_LIVE_ACCOUNT_ID": LIVE_ACCOUNT, "ATS_IB_PAPER_ACCOUNT_ID": PAPER_ACCOUNT,
           "ATS_IB_PAPER_PORT": str(free_port()), "ATS_IB_LIVE_PORT": str(free_port()),
           "ATS_GATEWAY_CONTROLLER": "sim", "ATS_GATEWAY_START_TIMEOUT_SECONDS": "20",
           "ATS_AUDIT_KEY_FILE": str(tmp / "audit-config" / "audit.key")}
    for key in [k for k in os.environ if k.upper().startswith("ATS_")]:
        del os.environ[key]
    os.environ.update(env)

    import nautilus_trader.adapters.interactive_brokers.factories  # noqa: F401 - the node's imports, warm
    import nautilus_trader.live.node  # noqa: F401
    from prefect.client.orchestration import get_client
    from sqlalchemy import select

    import flows.go_live  # noqa: F401 - imported before timing (flow, tasks, prefect)
    from ats.core.settings import get_settings
    from ats.gateway.controllers import SimController, use_controller
    from ats.governance import audit, killswitch
    from ats.governance.sessions import get_session
    from ats.store import open_store
    from ats.store.models import session_snapshots
    from flows.go_live import go_live

    get_settings.cache_clear()
    settings = get_settings()
    store = open_store(settings.resolved_database_url)
    _satisfy_gates(store)

    class TimedSimController(SimController):
        """The process SimController, noting when the swap stops paper and when live is up."""

        marks: dict[str, float]

        def stop(self, mode: str) -> None:
            if mode == "paper" and self.sim("paper") is not None:
                self.marks.setdefault("paper_stop_called", time.time())
            super().stop(mode)

        def start(self, mode: str) -> None:
            super().start(mode)
            if mode == "live":
                self.marks.setdefault("live_started", time.time())

    controller = TimedSimController(settings, clock="manual", start="2024-06-03")
    use_controller(controller)
    results = []
    try:
        for index in range(runs):
            controller.stop("live")
            controller.start("paper")
            marks: dict[str, float] = {}
            controller.marks = marks
            errors: list[BaseException] = []
            done = threading.Event()

            def watch(marks: dict[str, float] = marks, errors: list[BaseException] = errors,
                      done: threading.Event = done) -> None:
                try:
                    _wait_until(lambda: done.is_set() or controller.sim("live") is not None, timeout=120,
                                what="the live simulator", interval=0.002)
                    live = controller.sim("live")
                    _wait_until(lambda: done.is_set() or live.bar_subscriptions >= 1, timeout=120,
                                what="the live node's bar subscription", interval=0.002)
                    if done.is_set():
                        raise RuntimeError("go_live returned before the node was RUNNING")
                    marks["running"] = time.time()
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)
                finally:
                    # End the session with the live kill switch (cleared once the flow returns).
                    marks["latch"] = time.time()
                    killswitch.latch(["live"], "benchmark run measured", "bench", store=store)

            watcher = threading.Thread(target=watch, daemon=True, name="bench-watch")
            watcher.start()
            marks["call"] = time.time()
            state = go_live(strategy=STRATEGY, instrument=INSTRUMENT, params=dict(PARAMS),
                            i_understand=LIVE_ACCOUNT, for_seconds=SESSION_FOR_S, return_state=True)
            marks["returned"] = time.time()
            done.set()
            watcher.join(timeout=30)
            killswitch.clear("live", "benchmark run finished", "bench", store=store)
            if errors:
                raise errors[0]
            outcome = state.result()
            if outcome["status"] != "killed":
                raise RuntimeError(f"run {index}: session ended {outcome['status']}: {outcome['reason']}")

            async def read_run(run_id):  # noqa: ANN001, ANN202
                async with get_client() as client:
                    return await client.read_flow_run(run_id)

            flow_run = asyncio.run(read_run(state.state_details.flow_run_id))
            session_id = outcome["session_id"]
            rows = [r for r in audit.list_rows(store=store, limit=200) if _epoch(r.ts) >= marks["call"]]
            first = {}
            for row in rows:
                first.setdefault(row.action, row)
            with store.read() as conn:
                snapshot_ts = conn.execute(select(session_snapshots.c.ts)
                                           .where(session_snapshots.c.session_id == session_id)
                                           .order_by(session_snapshots.c.id).limit(1)).scalar_one()
            stopped_at = get_session(session_id, store=store).stopped_at
            t = {
                "call": marks["call"],
                "flow_running": _epoch(flow_run.start_time),
                "swap_begins": marks["paper_stop_called"],
                "live_started": marks["live_started"],
                "swap_row": _epoch(first["gateway.swap"].ts),
                "confirmed": _epoch(first["confirmation.accepted"].ts),
                "session_start": _epoch(first["session.start"].ts),
                "actor_started": _epoch(snapshot_ts),
                "running": marks["running"],
            }
            result = {
                "prefect: call -> flow run RUNNING": t["flow_running"] - t["call"],
                "gates (rung, approval, ...)": t["swap_begins"] - t["flow_running"],
                "swap: paper down, live up": t["live_started"] - t["swap_begins"],
                "swap: verify live + audit": t["swap_row"] - t["live_started"],
                "one-gateway + confirmation": t["confirmed"] - t["swap_row"],
                "confirmed -> session.start": t["session_start"] - t["confirmed"],
                "node build+connect -> actor on_start": t["actor_started"] - t["session_start"],
                "actor on_start -> bar subscription": t["running"] - t["actor_started"],
                "TOTAL call -> node RUNNING": t["running"] - t["call"],
                "(kill latch -> go_live returned)": marks["returned"] - marks["latch"],
                "(kill latch -> stopped_at)": _epoch(stopped_at) - marks["latch"],
            }
            results.append({k: v * 1e3 for k, v in result.items()})
            print(f"  (a) run {index + 1}/{runs}: call -> node RUNNING {result['TOTAL call -> node RUNNING'] * 1e3:7.0f} ms",
                  flush=True)
    finally:
        controller.close()
        use_controller(None)
    return results


# ------------------------------------------------------------------------------------ (b) served

SERVE_TIMEOUT_S = 180


def bench_served(runs: int, tmp: Path, server: PrefectServer) -> tuple[list[dict[str, float]], float]:
    """A served go-live run cancelled like the Prefect UI does; cancel -> node stopped."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    from ats.governance import audit
    from ats.governance.sessions import list_sessions
    from ats.ibsim import SimGateway
    from ats.store import open_store

    data_dir = tmp / "served-data"
    data_dir.mkdir()
    live_port = free_port()
    env = {**_base_env(), **server.env(), "ATS_DATA_DIR": str(data_dir), "ATS_ENABLE_LIVE_TRADING": "true",
           "ATS_IB_LIVE_ACCOUNT_ID": LIVE_ACCOUNT, "ATS_IB_PAPER_PORT": str(free_port()),
           "ATS_IB_LIVE_PORT": str(live_port), "ATS_GATEWAY_CONTROLLER": "external",
           "ATS_GATEWAY_START_TIMEOUT_SECONDS": "20", "ATS_HEALTH_INTERVAL_SECONDS": "3600",
           "ATS_AUDIT_KEY_FILE": str(tmp / "audit-config" / "audit.key")}  # the key the parent seeds with
    store = open_store(f"sqlite:///{data_dir / 'ats.sqlite3'}")
    _satisfy_gates(store)
    log = open(data_dir / "serve.log", "w")  # noqa: SIM115 - closed below
    serve_started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "deployments"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    results = []
    try:
        async def deployment_id():  # noqa: ANN202
            async with get_client() as client:
                for _ in range(SERVE_TIMEOUT_S * 10):
                    if proc.poll() is not None:
                        raise RuntimeError("python -m deployments exited: " + (data_dir / "serve.log").read_text()[-2000:])
                    try:
                        return (await client.read_deployment_by_name("go-live/go-live")).id
                    except Exception:  # noqa: BLE001 - not registered yet
                        await asyncio.sleep(0.1)
                raise TimeoutError("the go-live deployment never appeared")

        deployment = asyncio.run(deployment_id())
        serve_ready_s = time.monotonic() - serve_started

        for index in range(runs):
            live = SimGateway(mode="live", account=LIVE_ACCOUNT, port=live_port, clock="manual",
                              start="2024-06-03").start()
            try:
                params = {"strategy": STRATEGY, "instrument": INSTRUMENT, "params": dict(PARAMS),
                          "i_understand": LIVE_ACCOUNT, "for_seconds": SESSION_FOR_S}

                async def create(params=params):  # noqa: ANN001, ANN202
                    async with get_client() as client:
                        return await client.create_flow_run_from_deployment(deployment, parameters=params)

                created = time.time()
                run = asyncio.run(create())
                _wait_until(lambda live=live: live.bar_subscriptions >= 1, timeout=SERVE_TIMEOUT_S,
                            what="the served live node's bar subscription", interval=0.01)
                running = time.time()
                live.advance(1)
                _wait_until(lambda live=live: [r["kind"] for r in live.ledger] == ["place"],
                            what="the resting order at the broker")
                time.sleep(0.5)  # let the node see the order accepted (open) before the cancel

                async def cancel(run=run) -> None:  # noqa: ANN001
                    async with get_client() as client:
                        await client.set_flow_run_state(run.id, Cancelling(), force=True)

                cancel_at = time.time()
                asyncio.run(cancel())

                def session(run=run):  # noqa: ANN001, ANN202
                    found = [s for s in list_sessions("live", store=store) if s.flow_run_id == str(run.id)]
                    return found[0] if found else None

                _wait_until(lambda: (s := session()) is not None and s.status != "running", timeout=90,
                            what="the served session to end", interval=0.01)
                ended = session()

                async def final_state(run=run):  # noqa: ANN001, ANN202
                    async with get_client() as client:
                        for _ in range(1200):
                            current = await client.read_flow_run(run.id)
                            if current.state.is_final():
                                return current.state, time.time()
                            await asyncio.sleep(0.05)
                        raise TimeoutError(f"run {run.id} never reached a final state ({current.state.name})")

                state, seen_final = asyncio.run(final_state())
                halted = [r for r in audit.list_rows(store=store, limit=200)
                          if r.action == "session.halted" and r.subject == ended.id]
                ledger = live.ledger
                cancels = [r for r in ledger if r["kind"] == "cancel"]
                result = {
                    "(create run -> node RUNNING)": running - created,
                    "cancel -> HALTED (session.halted)": _epoch(halted[0].ts) - cancel_at if halted else float("nan"),
                    "cancel -> cancel at broker": _epoch(cancels[0]["time"]) - cancel_at if cancels else float("nan"),
                    "cancel -> session stopped_at": _epoch(ended.stopped_at) - cancel_at,
                    "cancel -> run final state (server ts)": _epoch(state.timestamp) - cancel_at,
                    "cancel -> run final state (seen)": seen_final - cancel_at,
                }
                results.append({k: v * 1e3 for k, v in result.items()})
                print(f"  (b) run {index + 1}/{runs}: session {ended.status} ({ended.reason}), "
                      f"run {state.type.value}; ledger {[r['kind'] for r in ledger]}; "
                      f"cancel -> stopped_at {result['cancel -> session stopped_at'] * 1e3:.0f} ms", flush=True)
            finally:
                live.stop()
    finally:
        _stop_process(proc, signal.SIGINT, timeout=60)
        log.close()
    return results, serve_ready_s


# ------------------------------------------------------------------------------------ main

def _print_table(title: str, results: list[dict[str, float]]) -> None:
    print(title)
    for key in results[0]:
        values = [r[key] for r in results]
        print(f"  {key:40s} {_stats(values)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-inprocess", action="store_true", help="skip part (a)")
    parser.add_argument("--skip-served", action="store_true", help="skip part (b)")
    args = parser.parse_args()

    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="ats-bench-golive-"))
    try:
        home = tmp / "prefect-home"
        home.mkdir()
        with PrefectServer(home) as server:
            # This process's flows and clients talk to our server (set before prefect is imported).
            for key in [k for k in os.environ if k.upper().startswith("PREFECT_")]:
                del os.environ[key]
            os.environ.update({"PREFECT_API_URL": server.url, "PREFECT_HOME": str(home),
                               "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_LOGGING_TO_API_ENABLED": "false"})
            os.chdir(tmp)  # no stray .env of the caller's directory
            print(f"local Prefect server up in {server.startup_s:.1f} s ({server.url})", flush=True)
            inprocess = [] if args.skip_inprocess else bench_inprocess(args.runs, tmp, server)
            served, serve_ready = ([], 0.0) if args.skip_served else bench_served(args.runs, tmp, server)
    finally:
        from ats.store.engine import forget_stores

        forget_stores()
        os.chdir(REPO)
        shutil.rmtree(tmp, ignore_errors=True)
    total = time.monotonic() - started

    print()
    if inprocess:
        _print_table(f"(a) go_live in-process, confirmation by i_understand, SimController swap, n={len(inprocess)}:",
                     inprocess)
        totals = [r["TOTAL call -> node RUNNING"] for r in inprocess]
        node = [r["node build+connect -> actor on_start"] + r["actor on_start -> bar subscription"] for r in inprocess]
        print(f"  go-live overhead before the node (call -> session.start): median "
              f"{statistics.median(t - n for t, n in zip(totals, node, strict=True)):.0f} ms; node share of the total "
              f"{statistics.median(n / t for t, n in zip(totals, node, strict=True)):.2f}")
    if served:
        _print_table(f"(b) served go-live run (python -m deployments), cancelled like the Prefect UI, n={len(served)} "
                     f"(serve ready in {serve_ready:.1f} s):", served)
        stopped = [r["cancel -> session stopped_at"] for r in served]
        print(f"  cancel -> stopped_at max / Prefect's 30 s cancellation grace = ratio {max(stopped) / 30_000:.2f}")
    print(f"total {total:.0f} s")


if __name__ == "__main__":
    main()

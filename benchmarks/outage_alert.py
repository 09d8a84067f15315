"""Outage alert in seconds (issue 13, part 5): gateway down → alert, back → recovery alert, as
ratios to the targets (≤ 10 s each), and the Prefect database's growth for one day of health
checks before (a flow run per probe) and after (one watch run a day).

Real parts end to end: the IB Gateway simulator (``SimGateway.outage``), the real probe, the
health state machine on a SQLite store, apprise posting to a local HTTP endpoint.

1. **The watch** (:func:`ats.gateway.health.watch_gateway`, what the ``gateway-health`` run does
   all day) at the default interval (``ATS_HEALTH_INTERVAL_SECONDS``, 3 s) and K = 2: the outage
   starts at a random phase of its probes, so the alert is expected 3–6 s after, the recovery
   alert 0–3 s after the gateway is back.
2. **A running session's own monitor** (the real TradingNode + IB adapter; a check every second):
   ``--session-trials`` outages during one paper session, no watch running.
3. **Prefect's database**: a real local ``prefect server`` (its own SQLite) — the rows and bytes
   one run of each shape adds, measured, then extrapolated to a day: *before*, the old
   ``gateway-health`` flow (one flow run with one task run, one check, one log line) × 2,880
   (a probe every 30 s); *after*, a watch run probing for ``--watch-seconds`` / 6 and one for
   ``--watch-seconds`` (its rows do not grow with its probes: both are measured) × 2 a day (the
   daily run and one started by a restarted ``serve``).  Bytes are what the rows and their
   indexes take in the pages (SQLite ``dbstat``), not the file's size (free pages, the WAL).
   The runs are in-process flow calls against the server; a served, scheduled run adds its
   Scheduled/Pending states on top, so *before* is a lower bound.

IBC's restart windows are disabled so that the figures do not depend on the hour.

    uv run python benchmarks/outage_alert.py [--trials 5] [--session-trials 3] [--runs 40]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ats.core.alert_sink import AlertEndpoint  # noqa: E402
from ats.core.localhost import wait_until  # noqa: E402
from ats.core.settings import load_settings  # noqa: E402
from ats.gateway.health import HealthPolicy, run_health_check, watch_gateway  # noqa: E402
from ats.ibsim import SimGateway  # noqa: E402
from ats.store import open_store  # noqa: E402

TARGET_DOWN_S = 10.0  # issue 13: outage → alert
TARGET_UP_S = 10.0  # issue 13: recovery → recovery alert
OLD_PROBES_PER_DAY = 24 * 3600 // 30  # the old gateway-health deployment: a flow run every 30 s
NO_WINDOWS = {"ATS_HEALTH_DAILY_RESTART_TIME": "", "ATS_HEALTH_WEEKLY_RESTART_DAY": ""}


_wait = functools.partial(wait_until, interval=0.01)  # returns time.monotonic() when the condition holds


def _arrival(endpoint: AlertEndpoint, word: str, count: int, timeout: float) -> float:
    """Monotonic time at which the ``count``-th alert whose title holds ``word`` had arrived."""
    return _wait(lambda: sum(word in t for t in endpoint.titles()) >= count, timeout, f"alert {count} ({word})")


def _settings(tmp: Path, sim: SimGateway, endpoint: AlertEndpoint, **extra: str):  # noqa: ANN202
    env = {"ATS_DATA_DIR": str(tmp / "data"), "ATS_IB_PAPER_PORT": str(sim.port), "ATS_IB_PAPER_ACCOUNT_ID": sim.account,
           "ATS_ALERT_URLS": endpoint.url, "ATS_AUDIT_KEY_FILE": os.environ["ATS_AUDIT_KEY_FILE"],
           "ATS_AUDIT_ANCHOR_FILE": os.environ["ATS_AUDIT_ANCHOR_FILE"], **NO_WINDOWS, **extra}
    return load_settings(env, dotenv=tmp / "no.env")


def _outages(sim: SimGateway, endpoint: AlertEndpoint, trials: int, rng: random.Random, phase_s: float,
             label: str) -> tuple[list[float], list[float]]:
    """``trials`` outages at a random phase; (down → alert, up → recovery alert) seconds each."""
    down, up = [], []
    for trial in range(1, trials + 1):
        time.sleep(phase_s * (1 + rng.random()))  # healthy for a while, at a random phase of the checks
        t_down = time.monotonic()
        sim.outage(10_000)
        down.append(_arrival(endpoint, "DOWN", trial, 60) - t_down)
        time.sleep(phase_s * rng.random())
        t_up = time.monotonic()
        sim.outage(0)
        sim.wait_listening(30)
        up.append(_arrival(endpoint, "recovered", trial, 60) - t_up)
        print(f"{label} trial {trial}: down → alert {down[-1]:.2f} s, up → recovery alert {up[-1]:.2f} s", flush=True)
    return down, up


def bench_watch(trials: int, rng: random.Random) -> dict:
    policy = HealthPolicy(daily_restart_time=None, weekly_restart_day=None)
    with tempfile.TemporaryDirectory() as tmp:
        sim = SimGateway(mode="paper", account="DU1234567", port=0).start()
        endpoint = AlertEndpoint()
        settings = _settings(Path(tmp), sim, endpoint)
        store = open_store(settings.resolved_database_url)
        stop = threading.Event()
        watch = threading.Thread(target=watch_gateway, kwargs=dict(
            mode="paper", until=datetime.now(UTC) + timedelta(days=1), holder="benchmark", store=store,
            settings=settings, policy=policy, stop=stop), daemon=True)
        watch.start()
        try:
            down, up = _outages(sim, endpoint, trials, rng, policy.interval_seconds, "watch")
        finally:
            stop.set()
            watch.join(timeout=60)
            titles = endpoint.titles()
            endpoint.close()
            sim.stop()
            store.dispose()
    return _figures(down, up, titles, interval_s=policy.interval_seconds)


def bench_session(trials: int, rng: random.Random) -> dict:
    """Outages while a real paper session runs (its own monitor alerts; no watch runs)."""
    from ats.core.sleeves import Sleeve
    from ats.trading.gates import check_gates
    from ats.trading.runner import SessionRequest, run_session
    from ats.trading.supervisor import CONNECTION_CHECK_S

    with tempfile.TemporaryDirectory() as tmp:
        sim = SimGateway(mode="paper", clock="manual", start="2024-06-03").start()
        endpoint = AlertEndpoint()
        settings = _settings(Path(tmp), sim, endpoint)
        store = open_store(settings.resolved_database_url)
        request = SessionRequest("paper", [Sleeve("ibs_reversion", "QQQ.NASDAQ", "1-DAY-LAST", {})], for_seconds=3600)
        account, _ = check_gates(request, settings, store)
        result: dict = {}

        def driver(guard) -> None:  # noqa: ANN001
            try:
                _wait(lambda: sim.bar_subscriptions >= 1, 120, "the bar subscription")
                result["down"], result["up"] = _outages(sim, endpoint, trials, rng, 3 * CONNECTION_CHECK_S,
                                                        "session")
            except BaseException as exc:  # noqa: BLE001 - reported below
                result["error"] = exc
            guard.request_stop("benchmark done")

        try:
            run_session(request, settings, store, account=account,
                        on_guard=lambda guard: threading.Thread(target=driver, args=(guard,), daemon=True).start())
        finally:
            titles = endpoint.titles()
            endpoint.close()
            sim.stop()
            store.dispose()
        if "error" in result:
            raise result["error"]
    gateway_titles = [t for t in titles if "IB gateway" in t]
    return _figures(result["down"], result["up"], gateway_titles, interval_s=CONNECTION_CHECK_S)


def _figures(down: list[float], up: list[float], titles: list[str], *, interval_s: float) -> dict:
    return {
        "check_interval_s": interval_s, "trials": len(down),
        "down_to_alert_s": {"mean": round(statistics.mean(down), 2), "max": round(max(down), 2),
                            "ratio_max_to_target": round(max(down) / TARGET_DOWN_S, 2)},
        "up_to_recovery_alert_s": {"mean": round(statistics.mean(up), 2), "max": round(max(up), 2),
                                   "ratio_max_to_target": round(max(up) / TARGET_UP_S, 2)},
        "down_alerts": sum("DOWN" in t for t in titles), "recovery_alerts": sum("recovered" in t for t in titles),
    }


# --- Prefect's database --------------------------------------------------------------------------

def _db_size(home: Path) -> tuple[int, int]:
    """(rows in every table, bytes used in the b-tree pages of every table and index) of the
    Prefect server's SQLite — ``dbstat``: what the data takes, without free pages or the WAL."""
    db = home / "prefect.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = sum(conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables)
        used = conn.execute("SELECT SUM(pgsize - unused) FROM dbstat").fetchone()[0]
    return rows, int(used)


def _settled_size(home: Path) -> tuple[int, int]:
    """The size once the server has written the logs and events of the runs (they arrive asynchronously)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)
    EventsWorker.drain_all(timeout=30)
    last = _db_size(home)
    while True:
        time.sleep(3)
        now = _db_size(home)
        if now[0] == last[0]:
            return now
        last = now


def bench_prefect_db(runs: int, watch_seconds: float) -> dict:
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from ats.core.prefect_server import LocalPrefectServer
    from flows.gateway_health import gateway_health

    @task(name="gateway-health-check", retries=0, timeout_seconds=120, log_prints=True, cache_policy=NO_CACHE)
    def check(mode: str) -> dict:
        from ats.core.settings import get_settings

        settings = get_settings()
        outcome = run_health_check(mode, store=open_store(settings.resolved_database_url), settings=settings)
        print(f"{mode} gateway: probe {outcome.probe.reason}, state {outcome.state.state}, alerts {outcome.alerts}")
        return outcome.as_dict()

    @flow(name="gateway-health-per-probe", log_prints=True, retries=0)
    def per_probe(mode: str = "paper") -> dict:
        """The shape of the old gateway-health flow: one flow run, one task run, one check."""
        return check(mode)

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "prefect-home"
        sim = SimGateway(mode="paper", account="DU1234567", port=0).start()
        endpoint = AlertEndpoint()
        settings = _settings(Path(tmp), sim, endpoint, ATS_HEALTH_INTERVAL_SECONDS="0.5")
        os.environ.update({"ATS_DATA_DIR": str(Path(tmp) / "data"), "ATS_IB_PAPER_PORT": str(sim.port),
                           "ATS_IB_PAPER_ACCOUNT_ID": sim.account, "ATS_ALERT_URLS": endpoint.url,
                           "ATS_HEALTH_INTERVAL_SECONDS": "0.5", **NO_WINDOWS})
        from ats.core.settings import get_settings

        get_settings.cache_clear()
        store = open_store(settings.resolved_database_url)
        with LocalPrefectServer(home) as server, temporary_settings(updates={PREFECT_API_URL: server.url}):
            per_probe()  # the first run creates the flow's own rows
            start = _settled_size(home)
            for _ in range(runs):
                per_probe()
            after_old = _settled_size(home)
            watches = []
            for seconds in (watch_seconds / 6, watch_seconds):  # a short and a long watch: rows do not grow with probes
                probes_before, before = _probe_count(store), _settled_size(home)
                gateway_health(mode="paper", watch_seconds=seconds)
                after = _settled_size(home)
                watches.append({"watch_run_seconds": round(seconds, 1), "probes": _probe_count(store) - probes_before,
                                "rows": after[0] - before[0], "bytes": after[1] - before[1]})
        endpoint.close()
        sim.stop()
        store.dispose()
    per_run_rows = (after_old[0] - start[0]) / runs
    per_run_bytes = (after_old[1] - start[1]) / runs
    longest = watches[-1]
    return {
        "before": {"shape": "a flow run per probe, every 30 s", "runs_measured": runs,
                   "rows_per_run": round(per_run_rows, 1), "bytes_per_run": round(per_run_bytes),
                   "runs_per_day": OLD_PROBES_PER_DAY, "rows_per_day": round(per_run_rows * OLD_PROBES_PER_DAY),
                   "mib_per_day": round(per_run_bytes * OLD_PROBES_PER_DAY / 2**20, 1)},
        "after": {"shape": "one watch run a day (+1 when serve restarts), a probe every 3 s", "watch_runs": watches,
                  "runs_per_day": 2, "rows_per_day": 2 * longest["rows"],
                  "mib_per_day": round(2 * longest["bytes"] / 2**20, 3)},
        "ratio_after_to_before_rows": round(2 * longest["rows"] / (per_run_rows * OLD_PROBES_PER_DAY), 5),
    }


def _probe_count(store) -> int:  # noqa: ANN001
    from sqlalchemy import func, select

    from ats.store.models import gateway_probes

    with store.read() as conn:
        return conn.execute(select(func.count()).select_from(gateway_probes)).scalar_one()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5, help="outages measured on the watch")
    parser.add_argument("--session-trials", type=int, default=3, help="outages during one running session")
    parser.add_argument("--runs", type=int, default=40, help="old-style flow runs measured in Prefect's database")
    parser.add_argument("--watch-seconds", type=float, default=60.0, help="length of the measured watch run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip", nargs="*", default=[], choices=["watch", "session", "prefect-db"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rng = random.Random(args.seed)
    config = tempfile.TemporaryDirectory()  # the benchmark's audit key and anchor, never the user's
    os.environ["ATS_AUDIT_KEY_FILE"] = str(Path(config.name) / "audit.key")
    os.environ["ATS_AUDIT_ANCHOR_FILE"] = str(Path(config.name) / "audit.anchor.json")
    report: dict = {"targets_s": {"down_to_alert": TARGET_DOWN_S, "up_to_recovery_alert": TARGET_UP_S}}
    if "watch" not in args.skip:
        report["watch"] = bench_watch(args.trials, rng)
    if "session" not in args.skip:
        report["running_session"] = bench_session(args.session_trials, rng)
    if "prefect-db" not in args.skip:
        report["prefect_db_per_day"] = bench_prefect_db(args.runs, args.watch_seconds)
    print(json.dumps(report, indent=2))
    config.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

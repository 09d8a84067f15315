"""Outage-to-alert latency: from the gateway going down to the alert arriving at an HTTP endpoint.

Real parts end to end: the IB Gateway simulator (``SimGateway.outage``), the real probe, the
health state machine on a SQLite store, apprise posting to a local HTTP endpoint.  The health
check runs on a fixed schedule (every ``--interval`` seconds, default the policy's 30 s), like
the served Prefect deployment; the outage starts at a random phase of that schedule, so with
K = 2 the alert is expected (K-1)·interval … K·interval after the outage begins: 30–60 s by
default.  Recovery latency (gateway back → recovery alert) is reported too: 0 … interval.

Maintenance windows are disabled for the measurement so that the figure does not depend on the
wall-clock time of the run.  Prefect's own scheduling overhead is not included.

    uv run python benchmarks/outage_alert.py                 # defaults: 30 s interval, K=2, 1 trial
    uv run python benchmarks/outage_alert.py --interval 2 --trials 5
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ats.gateway.health import HealthPolicy, run_health_check  # noqa: E402
from ats.ibsim import SimGateway  # noqa: E402
from ats.settings import load_settings  # noqa: E402
from ats.store import open_store  # noqa: E402


class Endpoint:
    """Local HTTP endpoint: records (arrival monotonic time, title) of every JSON post."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []
        self.changed = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                with outer.changed:
                    outer.arrivals.append((time.monotonic(), body.get("title", "")))
                    outer.changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/alerts"

    def wait_for(self, word: str, after: float, timeout: float) -> float | None:
        with self.changed:
            ok = self.changed.wait_for(
                lambda: any(t >= after and word in title for t, title in self.arrivals), timeout)
            if not ok:
                return None
            return next(t for t, title in self.arrivals if t >= after and word in title)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Scheduler(threading.Thread):
    """Runs one health check every ``interval`` seconds on a fixed grid (like an interval schedule)."""

    def __init__(self, interval: float, check) -> None:  # noqa: ANN001
        super().__init__(name="health-schedule", daemon=True)
        self.interval = interval
        self.check = check
        self.stopped = threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> None:
        start = time.monotonic()
        n = 0
        while not self.stopped.is_set():
            try:
                self.check()
            except BaseException as exc:  # noqa: BLE001 - reported at the end
                self.errors.append(exc)
            n += 1
            self.stopped.wait(max(0.0, start + n * self.interval - time.monotonic()))


def main() -> int:
    default = HealthPolicy()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=default.interval_seconds, help="seconds between checks")
    parser.add_argument("--failures", type=int, default=default.failures_to_alert, help="K")
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rng = random.Random(args.seed)
    policy = HealthPolicy(interval_seconds=args.interval, failures_to_alert=args.failures,
                          daily_restart_time=None, weekly_restart_day=None)

    down_latency: list[float] = []
    up_latency: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        sim = SimGateway(mode="paper", account="DU1234567", port=0).start()
        endpoint = Endpoint()
        settings = load_settings(env={
            "ATS_DATA_DIR": tmp, "ATS_IB_PAPER_PORT": str(sim.port), "ATS_IB_PAPER_ACCOUNT_ID": "DU1234567",
            "ATS_ALERT_URLS": endpoint.url}, dotenv=Path(tmp) / "none.env")
        store = open_store(settings.resolved_database_url)
        scheduler = Scheduler(args.interval, lambda: run_health_check(
            "paper", store=store, settings=settings, policy=policy))
        scheduler.start()
        try:
            for trial in range(1, args.trials + 1):
                time.sleep(args.interval * (1 + rng.random()))  # healthy for a while, random phase
                t_down = time.monotonic()
                sim.outage(10_000)
                t_alert = endpoint.wait_for("DOWN", t_down, timeout=args.interval * (args.failures + 2) + 30)
                if t_alert is None:
                    print(f"trial {trial}: NO ALERT", flush=True)
                    return 1
                down_latency.append(t_alert - t_down)
                time.sleep(args.interval * rng.random())
                t_up = time.monotonic()
                sim.outage(0)
                sim.wait_listening(30)
                t_recovered = endpoint.wait_for("recovered", t_up, timeout=args.interval * 2 + 30)
                if t_recovered is None:
                    print(f"trial {trial}: NO RECOVERY ALERT", flush=True)
                    return 1
                up_latency.append(t_recovered - t_up)
                print(f"trial {trial}: down→alert {down_latency[-1]:.1f} s, up→recovery alert "
                      f"{up_latency[-1]:.1f} s", flush=True)
        finally:
            scheduler.stopped.set()
            scheduler.join(timeout=args.interval + 30)
            endpoint.close()
            sim.stop()
            store.dispose()
        if scheduler.errors:
            print(f"health check errors: {scheduler.errors[:3]}")
            return 1
    titles = [title for _, title in endpoint.arrivals]
    print(json.dumps({
        "interval_s": args.interval, "failures_to_alert": args.failures, "trials": args.trials,
        "down_to_alert_s": {"mean": round(statistics.mean(down_latency), 2), "min": round(min(down_latency), 2),
                            "max": round(max(down_latency), 2)},
        "expected_range_s": [args.interval * (args.failures - 1), args.interval * args.failures],
        "up_to_recovery_alert_s": {"mean": round(statistics.mean(up_latency), 2), "max": round(max(up_latency), 2)},
        "down_alerts_received": sum("DOWN" in t for t in titles),
        "recovery_alerts_received": sum("recovered" in t for t in titles),
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Drive a real trading session (real TradingNode + IB adapter) against the simulator, in-process.

The session runs on the test's main thread (Nautilus installs signal handlers there); a driver
thread advances the simulator's manual clock one trading day at a time and waits, on the
store, until the node has recorded that day's bar and settled its orders before the next.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ats.core.settings import Settings, load_settings
from ats.governance.sessions import orders_settled, session_progress
from ats.ibsim import SimGateway
from ats.store import Store, open_store
from ats.trading.gates import check_gates
from ats.trading.runner import SessionGuard, SessionOutcome, SessionRequest, run_session
from support import wait_until  # one helper for every test (ats.core.localhost); importers here keep working

DRIVEN_SESSION_MAX_S = 1800.0  # a driven session's length when the test gives none (the driver stops it)


def counts(store: Store, session_id: str) -> dict[str, int]:
    return session_progress(session_id, store=store)


settled = orders_settled


def session_settings(sim: SimGateway, data_dir, **extra: str) -> Settings:  # noqa: ANN001
    env = {"ATS_DATA_DIR": str(data_dir), f"ATS_IB_{sim.mode.upper()}_PORT": str(sim.port),
           f"ATS_IB_{sim.mode.upper()}_ACCOUNT_ID": sim.account, **extra}
    if sim.mode == "live":
        env.setdefault("ATS_IB_PAPER_PORT", str(_closed_port()))
    return load_settings(env)


def _closed_port() -> int:
    from support import free_port

    return free_port()


@contextlib.contextmanager
def store_write_lock_held(settings: Settings) -> Iterator[None]:
    """Another connection (as another process would) takes the SQLite store's write lock and
    keeps it until the block ends."""
    from sqlalchemy import make_url

    holder = sqlite3.connect(make_url(settings.resolved_database_url).database, timeout=60, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def loop_answers(guard: SessionGuard, within: float = 30.0) -> bool:
    """Whether the node's event loop runs a callback within ``within`` s (it is not blocked: the
    store's lock timeout is 60 s)."""
    ran = threading.Event()
    guard.node.kernel.loop.call_soon_threadsafe(ran.set)
    return ran.wait(within)


@dataclass
class DrivenSession:
    outcome: SessionOutcome
    bars_seen: int
    store: Store
    during: dict = field(default_factory=dict)


def run_with_driver(sim: SimGateway, settings: Settings, request: SessionRequest,
                    drive: Callable[[SessionGuard, Store], None], *, stop: bool = True,
                    name: str = "session-driver") -> tuple[SessionOutcome, Store]:
    """Run a real session on this thread; ``drive(guard, store)`` runs on another once the node
    holds its bar subscription.  ``stop``: stop the session when ``drive`` returns.  An exception
    in ``drive`` stops the session and is raised here."""
    if request.until is None and request.for_seconds is None:
        # The default stop is today's market close, already past in the evening: the driver
        # stops the session, so give it a length instead (tests never depend on the hour).
        request = dataclasses.replace(request, for_seconds=DRIVEN_SESSION_MAX_S)
    store = open_store(settings.resolved_database_url)
    account, _ = check_gates(request, settings, store)
    errors: list[BaseException] = []

    def driver(guard: SessionGuard) -> None:
        try:
            wait_until(lambda: sim.bar_subscriptions >= 1, what="the bar subscription")
            drive(guard, store)
            if stop:
                guard.request_stop(f"{name} finished")
        except BaseException as exc:  # noqa: BLE001 - surface in the test thread
            errors.append(exc)
            guard.request_stop(f"{name} failed: {exc}")

    def on_guard(guard: SessionGuard) -> None:
        threading.Thread(target=driver, args=(guard,), daemon=True, name=name).start()

    outcome = run_session(request, settings, store, account=account, on_guard=on_guard)
    if errors:
        raise errors[0]
    return outcome, store


def drive_session(sim: SimGateway, settings: Settings, request: SessionRequest, days: int, *,
                  during: Callable[[SessionGuard, int], None] | None = None,
                  stop: bool = True, settle: bool = True) -> DrivenSession:
    """Run a session; advance the simulator ``days`` trading days, one bar at a time; stop it."""
    seen = {"bars": 0}

    def advance_days(guard: SessionGuard, store: Store) -> None:
        for day in range(days):
            before = counts(store, guard.session_id)["bars"]
            sim.advance(1)
            wait_until(lambda b=before: counts(store, guard.session_id)["bars"] > b, what=f"bar of day {day}")
            if settle:
                wait_until(lambda: settled(counts(store, guard.session_id)), what="orders to settle")
            if during is not None:
                during(guard, day)
        seen["bars"] = counts(store, guard.session_id)["bars"]

    outcome, store = run_with_driver(sim, settings, request, advance_days, stop=stop)
    return DrivenSession(outcome, seen["bars"], store)

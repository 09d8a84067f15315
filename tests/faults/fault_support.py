"""Helpers for the fault suite: scripted sessions, bar and ledger views, runner subprocesses.

A *scripted* session is a real session (the real TradingNode with the IB adapter against the
simulator) run in-process on the test's thread, while a script on another thread moves the
simulator's clock and injects faults; every wait is on a condition with a timeout.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from runner_support import counts, run_with_driver, settled, wait_until
from sqlalchemy import select

from ats.core.settings import Settings
from ats.ibsim import SimGateway
from ats.store import Store
from ats.store.models import session_bars
from ats.trading.runner import SessionGuard, SessionOutcome, SessionRequest

__all__ = ["ScriptedSession", "advance_one_day", "bar_dates", "counts", "placed", "prefect_server",
           "run_scripted_session", "runner_env", "start_runner", "wait_until"]


def bar_dates(store: Store, session_id: str) -> list[str]:
    """The distinct dates of the bars a session recorded, in order (re-published duplicates once)."""
    with store.read() as conn:
        rows = conn.execute(select(session_bars.c.ts_event).where(session_bars.c.session_id == session_id)
                            .order_by(session_bars.c.id)).scalars().all()
    return list(dict.fromkeys(ts[:10] for ts in rows))


def placed(sim: SimGateway) -> list[dict]:
    """The placeOrder requests that reached the simulator."""
    return [row for row in sim.ledger if row["kind"] == "place"]


def advance_one_day(sim: SimGateway, store: Store, session_id: str, *, settle: bool = True) -> str:
    """Complete the simulator's current trading day; wait until the session recorded its bar.

    Waits for the bar of *that* day (by date), so a bar re-published after a reconnect never
    counts as the new one.  Returns the date (``YYYY-MM-DD``).
    """
    day = sim.current_date.isoformat()
    sim.advance(1)
    wait_until(lambda: day in bar_dates(store, session_id), what=f"the bar of {day} recorded")
    if settle:
        wait_until(lambda: settled(counts(store, session_id)), what="orders to settle")
    return day


@dataclass
class ScriptedSession:
    outcome: SessionOutcome
    store: Store
    results: dict


def run_scripted_session(sim: SimGateway, settings: Settings, request: SessionRequest,
                         script: Callable[[SessionGuard, Store, dict], None], *,
                         stop: bool = True) -> ScriptedSession:
    """Run a session until ``script(guard, store, results)`` (on a thread) returns, then stop it.

    The script starts once the node runs and the simulator holds its bar subscription.  An
    exception in the script stops the session and is raised here.  ``stop=False``: the script
    (or a fault) ends the session itself.
    """
    results: dict = {}
    outcome, store = run_with_driver(sim, settings, request, lambda guard, store: script(guard, store, results),
                                     stop=stop, name="fault script")
    return ScriptedSession(outcome, store, results)


def start_runner(module: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """``python -m ats.paper|ats.live ARGS`` with the test's environment plus ``env``."""
    return subprocess.Popen([sys.executable, "-m", module, *args], env={**os.environ, "COLUMNS": "200", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)



def runner_env(sim: SimGateway, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a runner against ``sim`` (no embedded simulator of its own)."""
    mode = sim.mode.upper()
    return {"ATS_DATA_DIR": str(data_dir), f"ATS_IB_{mode}_PORT": str(sim.port),
            f"ATS_IB_{mode}_ACCOUNT_ID": sim.account, "ATS_GATEWAY_CONTROLLER": "docker", **extra}


@contextlib.contextmanager
def prefect_server(home: Path, startup_timeout: float = 90.0) -> Iterator[str]:
    """A real local ``prefect server start`` on a free port with its own PREFECT_HOME; yields its API URL."""
    from ats.core.prefect_server import LocalPrefectServer

    with LocalPrefectServer(home) as server:
        yield server.url

"""``ats sessions watch``: a running session's telemetry from the store's snapshots, refreshed
until the session ends (then the final state, exit 0); ``--json`` one snapshot; an unknown id one
line and a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from runner_support import run_with_driver, session_settings, wait_until

from ats.core.sleeves import Sleeve
from ats.governance.sessions import finish_session, start_session
from ats.store import open_store
from ats.trading.runner import SessionRequest
from support import reap, run_ats

pytestmark = pytest.mark.slow

BUY_ONCE = Sleeve("ibs_reversion", "QQQ.NASDAQ", "1-DAY-LAST", {"buy_threshold": 0.99, "sell_threshold": 1.0})


class Watch:
    """``ats sessions watch ID`` in a subprocess (stdout a pipe), its output collected as it comes."""

    def __init__(self, session_id: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "ats.cli", "sessions", "watch", session_id],
                                     env={**os.environ, "COLUMNS": "200", **env}, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        err = self.proc.stderr.read()
        reap(self.proc, self._reader)
        return code, self.text, err

    def stop(self) -> None:
        reap(self.proc, self._reader)


def test_watch_follows_a_running_session_and_exits_with_its_final_state(sim_factory, isolated_env: Path) -> None:
    # Arrange
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    settings = session_settings(sim, isolated_env)
    env = {"ATS_DATA_DIR": str(isolated_env), "ATS_IB_PAPER_PORT": str(sim.port),
           "ATS_IB_PAPER_ACCOUNT_ID": sim.account}
    seen: dict = {}
    watches: list[Watch] = []

    def drive(guard, store) -> None:  # noqa: ANN001
        watch = Watch(guard.session_id[:8], env)
        watches.append(watch)
        wait_until(lambda: "trading state" in watch.text and "ACTIVE" in watch.text, timeout=60,
                   what="the watch to show the running session")
        seen["before_bar"] = watch.text
        day = sim.current_date.isoformat()
        sim.advance(1)  # a bar arrives, the strategy buys: the next snapshots change
        wait_until(lambda: f"QQQ.NASDAQ {day}" in watch.text and "LONG" in watch.text, timeout=60,
                   what="the watch to show the new bar and the position")
        seen["after_bar"] = watch.text

    # Act
    try:
        outcome, _store = run_with_driver(sim, settings, SessionRequest("paper", [BUY_ONCE], for_seconds=600), drive)
        code, out, err = watches[0].finish()
    finally:
        for watch in watches:
            watch.stop()

    # Assert: refreshed while it ran (no bar, then the bar and the position), then the end.
    assert outcome.status == "stopped", outcome.reason
    assert "connected" in seen["before_bar"] and "LONG" not in seen["before_bar"]
    assert "realised PnL" in seen["after_bar"] and "orders sent / denied" in seen["after_bar"]
    assert "time left" in seen["after_bar"]
    assert code == 0, err
    assert f"session {outcome.session_id} ended: stopped" in out


def _stopped_session() -> str:
    record = start_session("paper", [BUY_ONCE], trader_id="ATS-PAPER-001", account_masked="DU***4567",
                           gateway="127.0.0.1:4002", actor="tester", store=open_store())
    from ats.governance.sessions import record_snapshot

    record_snapshot(record.id, {"connected": True, "trading_state": "ACTIVE", "open_orders": 0}, store=open_store())
    finish_session(record.id, "stopped", "reached the stop time", "tester", store=open_store())
    return record.id


def test_watch_json_prints_the_session_and_its_last_snapshot_once(isolated_env: Path) -> None:
    session_id = _stopped_session()

    shown = run_ats("sessions", "watch", session_id[:8], "--json")

    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert (data["session"]["id"], data["session"]["status"]) == (session_id, "stopped")
    assert (data["snapshot"]["connected"], data["snapshot"]["trading_state"]) == (True, "ACTIVE")


def test_watch_of_an_unknown_session_says_so_in_one_line(isolated_env: Path) -> None:
    _stopped_session()

    missing = run_ats("sessions", "watch", "nope")
    none_running = run_ats("sessions", "watch")

    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        "error: no session 'nope'; see `ats sessions list`"]
    assert none_running.returncode == 2 and len(none_running.stderr.strip().splitlines()) == 1
    assert "no session is running" in none_running.stderr

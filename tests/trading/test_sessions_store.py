"""Sessions in the store: one running session per mode (the database refuses a second), the
sessions CLI, dead runners reaped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ats.core.errors import GateRefused, InputError
from ats.core.sleeves import Sleeve
from ats.governance import audit
from ats.governance.sessions import finish_session, get_session, reap_dead_sessions, start_session
from ats.store import open_store
from ats.store.models import sessions
from support import run_ats

SLEEVES = [Sleeve("ibs_reversion", "QQQ.NASDAQ")]


def _start(mode: str = "paper"):  # noqa: ANN202
    return start_session(mode, SLEEVES, trader_id=f"ATS-{mode.upper()}-001", account_masked="DU***4567",
                         gateway="127.0.0.1:4002", actor="tester", store=open_store())


def test_a_second_running_session_is_refused_by_the_database(store_url: str, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("ATS_DATABASE_URL", store_url)
    from ats.core.settings import get_settings

    get_settings.cache_clear()
    first = _start("paper")

    with pytest.raises(GateRefused, match=rf"\[gate: one-session\] another paper session is running: {first.id}"):
        _start("paper")
    # Paper and live share the IB login: a live session may not start beside a paper one either.
    with pytest.raises(GateRefused, match=rf"another paper session is running: {first.id}"):
        _start("live")

    refusals = audit.list_rows(action="gate.refused", store=open_store())
    assert [r.payload_obj()["gate"] for r in refusals] == ["one-session", "one-session"]
    finish_session(first.id, "stopped", "done", "tester", store=open_store())
    assert _start("live").status == "running"


def test_sessions_cli_lists_and_shows(isolated_env: Path) -> None:
    record = _start("paper")
    finish_session(record.id, "stopped", "reached the stop time", "tester", store=open_store())

    listed = run_ats("sessions", "list", "--mode", "paper", "--json")
    shown = run_ats("sessions", "show", record.id[:8], "--json")
    missing = run_ats("sessions", "show", "nope")

    assert [(s["id"], s["status"]) for s in json.loads(listed.stdout)] == [(record.id, "stopped")]
    detail = json.loads(shown.stdout)
    assert (detail["id"], detail["reason"], detail["bars_received"]) == (record.id, "reached the stop time", 0)
    assert missing.returncode == 2 and "no session 'nope'" in missing.stderr


def test_a_dead_runners_session_is_reaped_as_error(isolated_env: Path) -> None:
    record = _start("paper")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with open_store().write() as conn:
        conn.execute(sessions.update().where(sessions.c.id == record.id).values(pid=int(dead.stdout)))

    reaped = reap_dead_sessions("paper", "tester", store=open_store())

    assert reaped == [record.id]
    reaped_record = get_session(record.id, store=open_store())
    assert reaped_record.status == "error" and "died without stopping the session" in reaped_record.reason


def _renamed(record, new_id: str) -> str:  # noqa: ANN001
    with open_store().write() as conn:
        conn.execute(sessions.update().where(sessions.c.id == record.id).values(id=new_id))
    return new_id


def test_a_session_prefix_of_more_than_one_id_is_refused_and_kill_takes_the_running_one(isolated_env: Path) -> None:
    # Arrange: a stopped paper session and a running live session whose ids start alike.
    from ats.governance.killswitch import kill, latched

    paper = _start("paper")
    finish_session(paper.id, "stopped", "done", "tester", store=open_store())
    paper_id = _renamed(paper, "ab000000-0000-4000-8000-000000000000")
    live_id = _renamed(_start("live"), "ab999999-0000-4000-8000-000000000000")

    # Act
    shown = run_ats("sessions", "show", "ab")
    latches = kill(session="ab", mode=None, all_modes=False, reason=None, actor="tester", store=open_store())

    # Assert: `show` names both and asks for more of the id; the kill latched the running session's mode.
    assert shown.returncode == 2
    [line] = shown.stderr.strip().splitlines()
    assert "'ab' is the start of more than one session id" in line
    assert "ab999999-000… (live, running)" in line and "ab000000-000… (paper, stopped)" in line
    assert [(latch.mode, latch.session_id) for latch in latches] == [("live", live_id)]
    assert latched("live", store=open_store()) is not None and latched("paper", store=open_store()) is None
    assert get_session("ab0", store=open_store()).id == paper_id


def test_a_session_prefix_is_matched_literally(isolated_env: Path) -> None:
    _start("paper")

    with pytest.raises(InputError, match=r"no session '%'"):
        get_session("%", store=open_store())
    with pytest.raises(InputError, match=r"no session '_'"):
        get_session("_", store=open_store())

"""Every live gate refuses with its message, exit code and audit row; the typed confirmation."""

from __future__ import annotations

import datetime as dt
import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from ats import approvals, audit, ladder
from ats.alert_sink import AlertEndpoint
from ats.store import open_store
from ats.strategies import get_strategy
from support import free_port

pytestmark = pytest.mark.slow

LIVE_ACCOUNT = "U1234567"
SLEEVE = ["--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ"]


def _run(module: str, *args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=full, timeout=timeout)


def _until(seconds: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat(timespec="seconds")


@pytest.fixture
def live_env(isolated_env: Path) -> dict[str, str]:
    """Live trading enabled, a live account, the paper port closed; the store of this test."""
    return {
        "ATS_DATA_DIR": str(isolated_env),
        "ATS_ENABLE_LIVE_TRADING": "true",
        "ATS_IB_LIVE_ACCOUNT_ID": LIVE_ACCOUNT,
        "ATS_IB_PAPER_PORT": str(free_port()),
        "ATS_IB_LIVE_PORT": str(free_port()),
        "ATS_GATEWAY_CONTROLLER": "docker",  # no embedded simulator: the test starts its own
    }


def _pass_paper_rung(strategy: str = "ibs_reversion", instrument: str = "QQQ.NASDAQ") -> None:
    ladder.record_verdict("paper", strategy, instrument, passed=True, reasons=["test setup"], metrics={},
                          params={}, data_start=None, data_end=None,
                          fingerprint=get_strategy(strategy).fingerprint(), actor="test", store=open_store())


def _refusals() -> list[dict]:
    return [row.payload_obj() for row in audit.list_rows(action="gate.refused", store=open_store())]


def test_live_refuses_when_live_trading_is_disabled(live_env: dict[str, str]) -> None:
    env = {**live_env, "ATS_ENABLE_LIVE_TRADING": "false"}

    result = _run("ats.live", *SLEEVE, "--i-understand", LIVE_ACCOUNT, env=env)

    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        "error: [gate: edition] live trading is disabled in this edition (ATS_ENABLE_LIVE_TRADING=false) — "
        "set ATS_ENABLE_LIVE_TRADING=true in the environment or .env to enable it"]
    assert [r["gate"] for r in _refusals()] == ["edition"]


def test_live_refuses_a_paper_account_and_paper_refuses_a_live_one(live_env: dict[str, str]) -> None:
    live = _run("ats.live", *SLEEVE, env={**live_env, "ATS_IB_LIVE_ACCOUNT_ID": "DU1234567"})
    paper = _run("ats.paper", *SLEEVE, env={**live_env, "ATS_IB_PAPER_ACCOUNT_ID": "U7654321"})

    assert live.returncode == 2
    assert "ATS_IB_LIVE_ACCOUNT_ID: expected a live account id: U followed by digits" in live.stderr
    assert paper.returncode == 2
    assert "ATS_IB_PAPER_ACCOUNT_ID: expected a paper account id: DU followed by digits" in paper.stderr
    assert "1234567" not in live.stderr + paper.stderr


def test_live_refuses_until_the_paper_rung_passes(live_env: dict[str, str]) -> None:
    result = _run("ats.live", *SLEEVE, "--i-understand", LIVE_ACCOUNT, env=live_env)

    assert result.returncode == 3
    assert "[gate: paper-rung] ibs_reversion@QQQ.NASDAQ: the paper rung has not been judged" in result.stderr
    assert [r["gate"] for r in _refusals()] == ["paper-rung"]


def test_live_refuses_without_approval_naming_every_sleeve(live_env: dict[str, str], tmp_path: Path) -> None:
    _pass_paper_rung()
    _pass_paper_rung("order_check")
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "ok", "alice", store=open_store())
    book = tmp_path / "book.json"
    book.write_text(json.dumps([
        {"strategy": "ibs_reversion", "instrument": "QQQ.NASDAQ", "params": {"buy_threshold": 0.15}},
        {"strategy": "order_check", "instrument": "QQQ.NASDAQ", "params": {"quantities": [1]}},
    ]))

    result = _run("ats.live", "--sleeves-json", str(book), "--i-understand", LIVE_ACCOUNT, env=live_env)

    assert result.returncode == 3
    line = result.stderr.strip()
    assert line.startswith("error: [gate: approval] no current go-live approval for order_check@QQQ.NASDAQ")
    assert "ibs_reversion@QQQ.NASDAQ (" not in line
    assert [r["gate"] for r in _refusals()] == ["approval"]


def test_live_refuses_while_the_paper_gateway_answers(live_env: dict[str, str], sim_factory) -> None:
    _pass_paper_rung()
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "ok", "alice", store=open_store())
    paper = sim_factory(mode="paper")

    result = _run("ats.live", *SLEEVE, "--i-understand", LIVE_ACCOUNT,
                  env={**live_env, "ATS_IB_PAPER_PORT": str(paper.port)})

    assert result.returncode == 3
    assert f"[gate: one-gateway] the paper gateway on port {paper.port} is still answering" in result.stderr
    assert paper.ledger == []


@pytest.mark.parametrize("typed", ["U7654321", "DU1234567"])
def test_i_understand_with_a_wrong_id_refuses(live_env: dict[str, str], typed: str) -> None:
    _pass_paper_rung()
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "ok", "alice", store=open_store())

    result = _run("ats.live", *SLEEVE, "--i-understand", typed, env=live_env)

    assert result.returncode == 3
    assert "[gate: confirmation] the typed account id" in result.stderr
    assert "is not the live account U***4567" in result.stderr
    assert [r["gate"] for r in _refusals()] == ["confirmation"]


def test_no_terminal_and_no_i_understand_refuses(live_env: dict[str, str]) -> None:
    _pass_paper_rung()
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "ok", "alice", store=open_store())

    result = _run("ats.live", *SLEEVE, env=live_env)

    assert result.returncode == 3
    assert "[gate: confirmation] no terminal to confirm the live account id on" in result.stderr


def test_i_understand_with_the_right_id_runs_the_live_session(live_env: dict[str, str], sim_factory) -> None:
    _pass_paper_rung()
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "reviewed", "alice", store=open_store())
    live = sim_factory(mode="live", account=LIVE_ACCOUNT, clock="manual")
    endpoint = AlertEndpoint()

    try:
        result = _run("ats.live", *SLEEVE, "--i-understand", LIVE_ACCOUNT, "--until", _until(6), "--json",
                      env={**live_env, "ATS_IB_LIVE_PORT": str(live.port), "ATS_ALERT_URLS": endpoint.url})
        posts = list(endpoint.posts)
    finally:
        endpoint.close()

    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert (outcome["mode"], outcome["status"]) == ("live", "stopped")
    assert "REAL MONEY" in result.stderr
    assert "approved by alice" in result.stderr
    actions = [r.action for r in audit.list_rows(store=open_store(), limit=100)]
    assert actions[-3:] == ["confirmation.accepted", "session.start", "session.stopped"]
    assert [p["title"] for p in posts] == ["ats: LIVE trading session starting", "ats: live session stopped"]
    assert "U***4567" in posts[0]["message"] and LIVE_ACCOUNT not in json.dumps(posts)


def _run_in_pty(args: list[str], env: dict[str, str], answer: str, timeout: float = 120) -> tuple[int, str]:
    """Run a command on a real pseudo-terminal; type ``answer`` at the confirmation prompt."""
    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", *args], stdin=child_fd, stdout=child_fd, stderr=child_fd,
                            env={**os.environ, **env, "COLUMNS": "200"}, close_fds=True)
    os.close(child_fd)
    output, answered = b"", False
    deadline = dt.datetime.now() + dt.timedelta(seconds=timeout)
    try:
        while dt.datetime.now() < deadline:
            ready, _, _ = select.select([main_fd], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(main_fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
                if not answered and b"Type the live account id" in output:
                    os.write(main_fd, answer.encode() + b"\n")
                    answered = True
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=30), output.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main_fd)


def test_typed_confirmation_on_a_terminal(live_env: dict[str, str], sim_factory) -> None:
    _pass_paper_rung()
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "ok", "alice", store=open_store())
    live = sim_factory(mode="live", account=LIVE_ACCOUNT, clock="manual")
    env = {**live_env, "ATS_IB_LIVE_PORT": str(live.port)}

    wrong_code, wrong_out = _run_in_pty(["ats.live", *SLEEVE, "--until", _until(60)], env, "U0000000")
    right_code, right_out = _run_in_pty(["ats.live", *SLEEVE, "--until", _until(8)], env, LIVE_ACCOUNT)

    assert wrong_code == 3, wrong_out
    assert "[gate: confirmation] the typed account id U***0000 is not the live account U***4567" in wrong_out
    assert right_code == 0, right_out
    assert "stopped" in right_out
    accepted = audit.list_rows(action="confirmation.accepted", store=open_store())
    assert [r.payload_obj()["how"] for r in accepted] == ["prompt"]

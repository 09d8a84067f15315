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

from ats.core.alert_sink import AlertEndpoint
from ats.governance import approvals, audit
from ats.research import ladder
from ats.store import open_store
from ats.strategies import get_strategy
from support import refused_port
from tamper_support import insert_row

pytestmark = pytest.mark.slow

LIVE_ACCOUNT = "U1234567"
SLEEVE = ["--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ"]


def _run(module: str, *args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=full, timeout=timeout)


@pytest.fixture
def live_env(isolated_env: Path) -> dict[str, str]:
    """Live trading enabled, a live account, the paper port closed; the store of this test."""
    return {
        "ATS_DATA_DIR": str(isolated_env),
        "ATS_ENABLE_LIVE_TRADING": "true",
        "ATS_IB_LIVE_ACCOUNT_ID": LIVE_ACCOUNT,
        "ATS_IB_PAPER_PORT": str(refused_port()),
        "ATS_IB_LIVE_PORT": str(refused_port()),
        "ATS_GATEWAY_CONTROLLER": "docker",  # no embedded simulator: the test starts its own
    }


@pytest.fixture
def live_gateway(live_env: dict[str, str], sim_factory) -> dict[str, str]:
    """``live_env`` with a live simulator answering on the live port: the gates up to the
    confirmation pass (the paper-evidence gate identifies the live gateway before it)."""
    live = sim_factory(mode="live", account=LIVE_ACCOUNT, clock="manual")
    return {**live_env, "ATS_IB_LIVE_PORT": str(live.port)}


def _pass_paper_rung(strategy: str = "ibs_reversion", instrument: str = "QQQ.NASDAQ",
                     params: dict | None = None, bar_spec: str = "1-DAY-LAST") -> None:
    ladder.record_verdict("paper", strategy, instrument, passed=True, reasons=["test setup"], metrics={},
                          params=params or {}, bar_spec=bar_spec, data_start=None, data_end=None,
                          fingerprint=get_strategy(strategy).fingerprint(), actor="test", store=open_store())


def _refusals() -> list[dict]:
    return [row.payload_obj() for row in audit.list_rows(action="gate.refused", store=open_store())]


DEFAULTS_TEXT = '{"buy_threshold":0.2,"max_hold_bars":null,"notional":4000.0,"sell_threshold":0.8}'
BIG = {"notional": 1000000, "buy_threshold": 0.99, "sell_threshold": 0.995}
BIG_TEXT = '{"buy_threshold":0.99,"max_hold_bars":null,"notional":1000000.0,"sell_threshold":0.995}'


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
    _pass_paper_rung(params={"buy_threshold": 0.15})
    _pass_paper_rung("order_check", params={"quantities": [1]})
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "ok", "alice", params={"buy_threshold": 0.15},
                           store=open_store())
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
def test_i_understand_with_a_wrong_id_refuses(live_gateway: dict[str, str], typed: str) -> None:
    _pass_paper_rung()
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "ok", "alice", store=open_store())

    result = _run("ats.live", *SLEEVE, "--i-understand", typed, env=live_gateway)

    assert result.returncode == 3
    assert "[gate: confirmation] the typed account id" in result.stderr
    assert "is not the live account U***4567" in result.stderr
    assert [r["gate"] for r in _refusals()] == ["confirmation"]


def test_no_terminal_and_no_i_understand_refuses(live_gateway: dict[str, str]) -> None:
    _pass_paper_rung()
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "ok", "alice", store=open_store())

    result = _run("ats.live", *SLEEVE, env=live_gateway)

    assert result.returncode == 3
    assert "[gate: confirmation] no terminal to confirm the live account id on" in result.stderr


def test_the_summary_shows_an_approval_note_as_written(live_gateway: dict[str, str]) -> None:
    # Arrange: a note that looks like console markup (it is shown before the confirmation).
    _pass_paper_rung()
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "per [/] review", "alice", store=open_store())

    # Act
    result = _run("ats.live", *SLEEVE, env=live_gateway)

    # Assert: the summary printed the note; the refusal is the confirmation's, not a crash.
    assert result.returncode == 3
    assert "approved by alice" in result.stdout + result.stderr and "per [/] review" in result.stdout + result.stderr
    assert "[gate: confirmation] no terminal to confirm the live account id on" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_gateway_already_on_the_live_port_gets_no_made_up_account(live_env: dict[str, str], sim_factory) -> None:
    # Arrange: the sim controller and no live account set; a gateway (maybe a real one) answers
    # on the live port, so ats will not start its simulator and must not invent its account.
    live = sim_factory(mode="live", account="U7654321", clock="manual")
    env = {**live_env, "ATS_GATEWAY_CONTROLLER": "sim", "ATS_IB_LIVE_PORT": str(live.port),
           "ATS_IB_LIVE_ACCOUNT_ID": ""}

    # Act
    result = _run("ats.live", *SLEEVE, "--i-understand", LIVE_ACCOUNT, env=env)

    # Assert
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1].startswith(
        "error: [gate: account] ATS_IB_LIVE_ACCOUNT_ID is not set")
    assert [r["gate"] for r in _refusals()] == ["account"]


def test_a_live_gateway_that_does_not_answer_is_refused_before_the_confirmation(live_env: dict[str, str]) -> None:
    # Arrange: every gate before it passes; nothing listens on the live port (docker controller)
    _pass_paper_rung()
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "ok", "alice", store=open_store())

    # Act
    result = _run("ats.live", *SLEEVE, "--i-understand", LIVE_ACCOUNT, env=live_env)

    # Assert: refused in one line naming the port, audited; the operator typed nothing in vain
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        f"error: [gate: live-gateway] the live gateway on 127.0.0.1:{live_env['ATS_IB_LIVE_PORT']} does not answer "
        "the API handshake — start it (the go-live flow's gateway swap does) and try again"]
    assert [r["gate"] for r in _refusals()] == ["live-gateway"]


def test_i_understand_with_the_right_id_runs_the_live_session(live_env: dict[str, str], sim_factory) -> None:
    _pass_paper_rung()
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "reviewed", "alice", store=open_store())
    live = sim_factory(mode="live", account=LIVE_ACCOUNT, clock="manual")
    endpoint = AlertEndpoint()

    try:
        result = _run("ats.live", *SLEEVE, "--i-understand", LIVE_ACCOUNT, "--for", "3s", "--json",
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

    wrong_code, wrong_out = _run_in_pty(["ats.live", *SLEEVE, "--for", "60s"], env, "U0000000")
    right_code, right_out = _run_in_pty(["ats.live", *SLEEVE, "--for", "3s"], env, LIVE_ACCOUNT)

    assert wrong_code == 3, wrong_out
    assert "[gate: confirmation] the typed account id U***0000 is not the live account U***4567" in wrong_out
    assert right_code == 0, right_out
    assert "stopped" in right_out
    accepted = audit.list_rows(action="confirmation.accepted", store=open_store())
    assert [r.payload_obj()["how"] for r in accepted] == ["prompt"]


# --- issue 17, finding 3: the paper rung and the approval are pinned to params and bar spec ----

def _big_params_refusal(line: str) -> None:
    assert line.startswith(
        f"error: [gate: paper-rung] ibs_reversion@QQQ.NASDAQ: the paper rung was earned with params {DEFAULTS_TEXT} "
        f"on 1-DAY-LAST bars, not with the requested params {BIG_TEXT} on 1-DAY-LAST bars — another params/bar-spec "
        f"set needs its own paper evidence and approval: run paper sessions with these params")
    assert f"`ats ladder paper --strategy ibs_reversion --instrument QQQ.NASDAQ --params '{BIG_TEXT}' --bar-spec 1-DAY-LAST`" in line
    assert f"`ats approve-live --strategy ibs_reversion --instrument QQQ.NASDAQ --params '{BIG_TEXT}' --bar-spec 1-DAY-LAST" in line


def _hourly_bars_refusal(line: str) -> None:
    assert (f"the paper rung was earned with params {DEFAULTS_TEXT} on 1-DAY-LAST bars, not with the requested "
            f"params {DEFAULTS_TEXT} on 1-HOUR-LAST bars") in line


@pytest.mark.parametrize(("requested", "check"), [
    (["--params", json.dumps(BIG)], _big_params_refusal),
    (["--bar-spec", "1-HOUR-LAST"], _hourly_bars_refusal),
], ids=["params", "bar-spec"])
def test_live_refuses_a_set_the_paper_rung_was_not_earned_with(live_env: dict[str, str], requested: list[str],
                                                              check) -> None:  # noqa: ANN001
    # Arrange: rung and approval earned with the default params on daily bars.
    _pass_paper_rung()
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "ok", "alice", store=open_store())

    # Act
    result = _run("ats.live", *SLEEVE, *requested, "--i-understand", LIVE_ACCOUNT, env=live_env)

    # Assert: one line naming both sets and how to earn the requested one; audited.
    assert result.returncode == 3
    [line] = result.stderr.strip().splitlines()
    check(line)
    assert [r["gate"] for r in _refusals()] == ["paper-rung"]


def test_live_refuses_params_with_paper_evidence_but_approved_for_others(live_env: dict[str, str]) -> None:
    # Arrange: the paper rung of BIG passed, but the approval is for the defaults.
    _pass_paper_rung(params=BIG)
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "ok", "alice", store=open_store())

    result = _run("ats.live", *SLEEVE, "--params", json.dumps(BIG), "--i-understand", LIVE_ACCOUNT, env=live_env)

    assert result.returncode == 3
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        f"error: [gate: approval] no current go-live approval for ibs_reversion@QQQ.NASDAQ (ibs_reversion on "
        f"QQQ.NASDAQ is approved for params {DEFAULTS_TEXT} on 1-DAY-LAST bars, not for the requested params "
        f"{BIG_TEXT} on 1-DAY-LAST bars) — another params/bar-spec set needs its own paper evidence and approval")
    assert [r["gate"] for r in _refusals()] == ["approval"]


def test_live_with_the_params_it_was_approved_for_passes_to_the_confirmation(live_gateway: dict[str, str]) -> None:
    # Written out in another order and with a default spelled out, it is the same set.
    _pass_paper_rung(params=BIG)
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "ok", "alice", params=BIG, store=open_store())
    same = json.dumps({"sell_threshold": 0.995, "max_hold_bars": None, "notional": 1000000.0, "buy_threshold": 0.99})

    result = _run("ats.live", *SLEEVE, "--params", same, env=live_gateway)

    assert result.returncode == 3
    assert "[gate: confirmation] no terminal to confirm the live account id on" in result.stderr
    assert [r["gate"] for r in _refusals()] == ["confirmation"]


# --- issue 17, finding 4: gate rows checked against their audit rows ---------------------------

def _forge(table: str, values: dict) -> int:
    with open_store().engine.begin() as conn:
        return insert_row(conn, table, values)


def test_live_refuses_an_approval_row_inserted_without_its_audit_row(live_env: dict[str, str]) -> None:
    # Arrange: a genuine paper rung; an approval "by ceo@corp" put in with a plain INSERT.
    _pass_paper_rung()
    row_id = _forge("approval_events", {
        "kind": "approve", "strategy": "ibs_reversion", "instrument": "QQQ.NASDAQ", "note": "trust me",
        "actor": "ceo@corp", "at": "2026-12-01T09:00:00.000000Z",
        "fingerprint": get_strategy("ibs_reversion").fingerprint(), "audit_seq": 999, "params": DEFAULTS_TEXT,
        "bar_spec": "1-DAY-LAST"})

    # Act
    result = _run("ats.live", *SLEEVE, "--i-understand", LIVE_ACCOUNT, env=live_env)

    # Assert
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        f"error: [gate: approval] approval row {row_id} has no matching audit row: the store was edited outside ats; "
        f"run `ats audit verify`"]
    assert [r["gate"] for r in _refusals()] == ["approval"]


def test_live_refuses_a_paper_verdict_inserted_without_its_audit_row(live_env: dict[str, str]) -> None:
    audit.append("test", "test.setup", "an audit log (and its key) that exists", store=open_store())
    row_id = _forge("rung_verdicts", {
        "rung": "paper", "strategy": "ibs_reversion", "instrument": "QQQ.NASDAQ", "passed": 1, "reasons": "[]",
        "metrics": "{}", "params": DEFAULTS_TEXT, "bar_spec": "1-DAY-LAST", "data_start": None, "data_end": None,
        "fingerprint": get_strategy("ibs_reversion").fingerprint(), "at": "2026-12-01T09:00:00.000000Z",
        "audit_seq": 999})

    result = _run("ats.live", *SLEEVE, "--i-understand", LIVE_ACCOUNT, env=live_env)

    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        f"error: [gate: paper-rung] paper verdict row {row_id} has no matching audit row: the store was edited "
        f"outside ats; run `ats audit verify`"]
    assert [r["gate"] for r in _refusals()] == ["paper-rung"]


def test_the_gate_sequence_of_an_unknown_mode_is_refused() -> None:
    from ats.trading.gates import LIVE_GATES, PAPER_GATES, gate_sequence

    assert (gate_sequence("live"), gate_sequence("paper")) == (LIVE_GATES, PAPER_GATES)
    with pytest.raises(ValueError, match="mode must be paper or live, got 'LIVE'"):
        gate_sequence("LIVE")  # type: ignore[arg-type]

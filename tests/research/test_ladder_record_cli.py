"""The ladder's record and CLI: verdicts stored and audited, exit codes, status, the paper rung
judged from sessions written through the store API, the research-ladder flow's pieces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ats.core.settings import get_settings
from ats.core.sleeves import Sleeve
from ats.governance import audit
from ats.governance.sessions import finish_session, record_bar, start_session
from ats.research import ladder
from ats.research.backtest import run_backtest
from ats.store import open_store
from ats.store.models import session_orders
from ats.strategies import get_strategy
from support import run_ats

RANGE = ["--start", "2023-01-01", "--end", "2024-12-31"]
DEFAULTS = {"buy_threshold": 0.2, "max_hold_bars": None, "notional": 4000.0, "sell_threshold": 0.8}


def test_ladder_run_passes_stores_and_audits_the_verdict_and_writes_the_report(isolated_env: Path) -> None:
    report = isolated_env.parent / "bt.html"

    result = run_ats("ladder", "run", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", *RANGE,
                     "--json", "--report", str(report))

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["verdict"] == "PASS"
    assert data["trades"] and set(data["trades"][0]) >= {"entry_date", "exit_date", "quantity", "entry_price",
                                                         "exit_price", "pnl"}
    html = report.read_text()
    assert "<svg" in html and "drawdown" in html.lower()
    stored = ladder.latest_verdict("backtest", "ibs_reversion", "QQQ.NASDAQ", store=open_store())
    assert stored.passed and stored.data_start.startswith("2023-01")
    assert (stored.params, stored.bar_spec) == (DEFAULTS, "1-DAY-LAST")
    [row] = audit.list_rows(action="ladder.backtest", store=open_store())
    assert row.seq == stored.audit_seq and row.payload_obj()["fingerprint"] == stored.fingerprint


@pytest.mark.parametrize(("where", "message"), [
    ("a-dir", "is a directory; give a file name like report.html"),
    ("a-file/bt.html", "a-file is a file, not a directory; give a path in a directory"),
])
def test_ladder_run_refuses_a_report_path_it_cannot_write_before_running(
        isolated_env: Path, where: str, message: str) -> None:
    (isolated_env.parent / "a-dir").mkdir()
    (isolated_env.parent / "a-file").write_text("keep me\n")
    report = isolated_env.parent / where

    result = run_ats("ladder", "run", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", *RANGE,
                     "--report", str(report))

    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: --report {report}: {message}".replace(
        "a-file is", f"{isolated_env.parent / 'a-file'} is")]
    assert (isolated_env.parent / "a-file").read_text() == "keep me\n"
    assert list((isolated_env.parent / "a-dir").iterdir()) == []
    assert ladder.latest_verdict("backtest", "ibs_reversion", "QQQ.NASDAQ", store=open_store()) is None


def test_ladder_run_creates_the_missing_directories_of_its_report(isolated_env: Path) -> None:
    report = isolated_env.parent / "reports" / "2026" / "bt.html"

    result = run_ats("ladder", "run", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", *RANGE,
                     "--report", str(report))

    assert result.returncode == 0, result.stderr
    assert "<svg" in report.read_text()


def test_ladder_run_fails_with_exit_1_when_the_thresholds_are_not_met(isolated_env: Path) -> None:
    result = run_ats("ladder", "run", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", *RANGE,
                     env={"ATS_LADDER_MIN_TRADES": "100000"})

    assert result.returncode == 1
    assert "FAIL" in result.stdout and "ATS_LADDER_MIN_TRADES" in result.stdout
    assert not ladder.latest_verdict("backtest", "ibs_reversion", "QQQ.NASDAQ", store=open_store()).passed


def test_ladder_run_bad_params_is_an_error_exit_2_writing_nothing(isolated_env: Path) -> None:
    result = run_ats("ladder", "run", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ",
                     "--params", '{"buy_treshold": 0.1}')

    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: unknown parameter 'buy_treshold' for ibs_reversion")
    assert audit.count(open_store()) == 0


def _paper_session(bars: list[tuple], decisions: list[tuple], params: dict, status: str = "stopped") -> str:
    store = open_store()
    session = start_session("paper", [Sleeve("ibs_reversion", "QQQ.NASDAQ", "1-DAY-LAST", params)],
                            trader_id="ATS-PAPER-001", account_masked="DU***4567", gateway="127.0.0.1:4002",
                            actor="test", store=store)
    for day, o, h, low, c, v in bars:
        record_bar(session.id, "QQQ.NASDAQ", "QQQ.NASDAQ-1-DAY-LAST-EXTERNAL", f"{day}T00:00:00.000000Z",
                   (o, h, low, c, v), store=store)
    from ats.governance.sessions import record_order_event

    with store.write() as conn:
        for index, (day, side, quantity) in enumerate(decisions):
            for event in ("intent", "filled"):
                record_order_event(conn, session.id, event, client_order_id=f"O-{index}", instrument="QQQ.NASDAQ",
                                   side=side, quantity=quantity, bar_date=day)
    finish_session(session.id, status, "test", "test", store=store)
    return session.id


def _bars(start: str, end: str) -> list[tuple]:
    import csv

    from ats.research.catalog import shipped_csv

    with open(shipped_csv()) as handle:
        return [(r["date"], float(r["open"]), float(r["high"]), float(r["low"]), float(r["close"]), float(r["volume"]))
                for r in csv.DictReader(handle) if start <= r["date"] <= end]


@pytest.mark.timeout(300)  # a backtest replay, then one `ats ladder paper` CLI process per judgement
def test_paper_rung_judged_from_recorded_sessions_passes_then_fails_on_a_diverging_session(isolated_env: Path) -> None:
    # Arrange: two sessions whose decisions are what the backtest makes of their bars.
    params = {"buy_threshold": 0.3}
    first, second = _bars("2024-01-02", "2024-03-28"), _bars("2024-04-01", "2024-06-28")
    replay = run_backtest("ibs_reversion", "QQQ.NASDAQ", params, bars=first + second, restarts=[second[0][0]])
    decisions = [tuple(d) for d in replay.decision_tuples()]
    split = second[0][0]
    _paper_session(first, [d for d in decisions if d[0] < split], params)
    _paper_session(second, [d for d in decisions if d[0] >= split], params)

    sleeve = ["--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", "--params", json.dumps(params)]

    # Act
    passed = run_ats("ladder", "paper", *sleeve, "--json")
    status = run_ats("ladder", "status", *sleeve, "--json")
    _paper_session(_bars("2024-07-01", "2024-07-31"), [("2024-07-02", "BUY", 999)], params)
    failed = run_ats("ladder", "paper", *sleeve)

    # Assert
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert json.loads(passed.stdout)["passed"] is True
    rungs = {r["rung"]: r["result"] for r in json.loads(status.stdout)["rungs"]}
    assert rungs == {"backtest": "NOT RUN", "paper": "PASS", "approval": "NOT RUN"}
    assert failed.returncode == 1
    assert "parity" in failed.stdout
    assert [r.payload_obj()["passed"] for r in audit.list_rows(action="ladder.paper", store=open_store())] == [True, False]


def test_a_session_that_ended_in_error_fails_the_paper_rung(isolated_env: Path) -> None:
    _paper_session(_bars("2024-01-02", "2024-01-31"), [], {}, status="error")

    verdict = ladder.evaluate_paper_rung("ibs_reversion", "QQQ.NASDAQ", settings=get_settings(), store=open_store())

    assert not verdict.passed
    assert any("ended in error" in reason for reason in verdict.reasons)


def test_session_orders_table_holds_the_events(isolated_env: Path) -> None:
    session_id = _paper_session(_bars("2024-01-02", "2024-01-05"), [("2024-01-03", "BUY", 5)], {})

    with open_store().read() as conn:
        events = conn.execute(session_orders.select().where(session_orders.c.session_id == session_id)).all()

    assert [(e.event, e.side, e.quantity, e.bar_date) for e in events] == [
        ("intent", "BUY", 5.0, "2024-01-03"), ("filled", "BUY", 5.0, "2024-01-03")]


@pytest.mark.timeout(300)  # a backtest replay, then one `ats ladder paper` CLI process per judgement
def test_paper_rung_counts_only_sessions_of_the_same_params_and_bar_spec(isolated_env: Path) -> None:
    # Arrange: sessions whose decisions match the backtest, all run with buy_threshold 0.3 on daily bars.
    params = {"buy_threshold": 0.3}
    first, second = _bars("2024-01-02", "2024-03-28"), _bars("2024-04-01", "2024-06-28")
    replay = run_backtest("ibs_reversion", "QQQ.NASDAQ", params, bars=first + second, restarts=[second[0][0]])
    decisions = [tuple(d) for d in replay.decision_tuples()]
    _paper_session(first, [d for d in decisions if d[0] < second[0][0]], params)
    _paper_session(second, [d for d in decisions if d[0] >= second[0][0]], params)
    sleeve = ["--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ"]

    # Act
    defaults = run_ats("ladder", "paper", *sleeve, "--json")
    other_bars = run_ats("ladder", "paper", *sleeve, "--params", json.dumps(params), "--bar-spec", "1-DAY-MID", "--json")
    same = run_ats("ladder", "paper", *sleeve, "--params", '{"buy_threshold": 0.3, "sell_threshold": 0.8}', "--json")
    status = run_ats("ladder", "status", *sleeve, "--json")

    # Assert: only the sessions of exactly that set are evidence, whatever way it is written.
    assert defaults.returncode == 1 and json.loads(defaults.stdout)["metrics"].get("sessions", 0) == 0
    assert other_bars.returncode == 1
    assert (json.loads(other_bars.stdout)["bar_spec"], json.loads(other_bars.stdout)["passed"]) == ("1-DAY-MID", False)
    assert same.returncode == 0, same.stdout + same.stderr
    verdict = json.loads(same.stdout)
    assert (verdict["params"]["buy_threshold"], verdict["bar_spec"]) == (0.3, "1-DAY-LAST")
    rungs = {r["rung"]: r for r in json.loads(status.stdout)["rungs"]}
    assert rungs["paper"]["result"] == "FAIL"  # the defaults' own verdict: no sessions of theirs


def test_paper_rung_gate_names_the_earned_and_the_requested_sets(isolated_env: Path) -> None:
    from ats.core.errors import GateRefused

    ladder.record_verdict("paper", "ibs_reversion", "QQQ.NASDAQ", passed=True, reasons=["ok"], metrics={},
                          params={"buy_threshold": 0.3}, data_start=None, data_end=None,
                          fingerprint=get_strategy("ibs_reversion").fingerprint(), actor="t", store=open_store())

    try:
        ladder.require_paper_rung("ibs_reversion", "QQQ.NASDAQ", {}, store=open_store())
    except GateRefused as exc:
        refusal = str(exc)

    assert ('the paper rung was earned with params {"buy_threshold":0.3,"max_hold_bars":null,"notional":4000.0,'
            '"sell_threshold":0.8} on 1-DAY-LAST bars, not with the requested params {"buy_threshold":0.2,') in refusal
    assert ladder.require_paper_rung("ibs_reversion", "QQQ.NASDAQ", {"buy_threshold": 0.3}, store=open_store()).passed

"""Gate rows checked against their audit rows (issue 17, finding 4): a verdict or approval row
inserted behind ats's back — no trigger dropped — refuses the gate and shows as FORGED."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from ats.core.errors import GateRefused
from ats.governance import approvals, audit
from ats.research import ladder
from ats.store import open_store
from ats.strategies import get_strategy
from support import run_ats
from tamper_support import insert_row, rewrite_from, triggers_off

SLEEVE = ("ibs_reversion", "QQQ.NASDAQ")
DEFAULTS_TEXT = '{"buy_threshold":0.2,"max_hold_bars":null,"notional":4000.0,"sell_threshold":0.8}'
EDITED = "the store was edited outside ats; run `ats audit verify`"


def _verdict(store, passed: bool = True):  # noqa: ANN001, ANN202
    return ladder.record_verdict("paper", *SLEEVE, passed=passed, reasons=["judged"], metrics={"days": 12},
                                 params={}, data_start="2024-01-02", data_end="2024-03-28",
                                 fingerprint=get_strategy(SLEEVE[0]).fingerprint(), actor="test", store=store)


def _insert_verdict(conn, audit_seq: int, passed: int = 1) -> int:  # noqa: ANN001
    """A plain INSERT, as anyone with write access to the database can do."""
    return insert_row(conn, "rung_verdicts", {
        "rung": "paper", "strategy": SLEEVE[0], "instrument": SLEEVE[1], "passed": passed, "reasons": '["ok"]',
        "metrics": "{}", "params": DEFAULTS_TEXT, "bar_spec": "1-DAY-LAST", "data_start": None, "data_end": None,
        "fingerprint": get_strategy(SLEEVE[0]).fingerprint(), "at": "2026-12-01T00:00:00.000000Z",
        "audit_seq": audit_seq})


def _insert_approval(conn, audit_seq: int, actor: str = "ceo@corp", note: str = "go") -> int:  # noqa: ANN001
    return insert_row(conn, "approval_events", {
        "kind": "approve", "strategy": SLEEVE[0], "instrument": SLEEVE[1], "note": note, "actor": actor,
        "at": "2026-12-01T00:00:00.000000Z", "fingerprint": get_strategy(SLEEVE[0]).fingerprint(),
        "audit_seq": audit_seq, "params": DEFAULTS_TEXT, "bar_spec": "1-DAY-LAST"})


FORGERIES = {
    "paper verdict": (_insert_verdict, lambda store: ladder.require_paper_rung(*SLEEVE, store=store), "paper-rung", "paper"),
    "approval": (_insert_approval, lambda store: approvals.require_live_approval(*SLEEVE, store=store), "approval",
                 "approval"),
}


@pytest.mark.parametrize("label", sorted(FORGERIES))
def test_a_row_inserted_without_its_audit_row_refuses_the_gate(store_url: str, label: str) -> None:
    # Arrange: a plain INSERT (no trigger touched) of a passing verdict / an approval "by ceo@corp",
    # naming an audit row that does not exist.
    insert, gate_call, gate, rung = FORGERIES[label]
    store = open_store(store_url)
    with store.engine.begin() as conn:
        row_id = insert(conn, audit_seq=99)

    # Act
    with pytest.raises(GateRefused) as excinfo:
        gate_call(store)
    rows = {r["rung"]: r for r in ladder.status(*SLEEVE, store=store)}

    # Assert
    assert str(excinfo.value) == f"[gate: {gate}] {label} row {row_id} has no matching audit row: {EDITED}"
    assert rows[rung]["result"] == "FORGED"
    assert "ceo@corp" not in json.dumps(rows)


def test_an_approval_row_naming_another_audit_row_does_not_match_it(store_url: str) -> None:
    # Arrange: the forged approval points at a real audit row — the paper verdict's.
    store = open_store(store_url)
    verdict = _verdict(store)
    with store.engine.begin() as conn:
        row_id = _insert_approval(conn, audit_seq=verdict.audit_seq)

    with pytest.raises(GateRefused) as excinfo:
        approvals.require_live_approval(*SLEEVE, store=store)

    assert str(excinfo.value) == (f"[gate: approval] approval row {row_id} does not match its audit row seq "
                                  f"{verdict.audit_seq} (action differs): {EDITED}")


def test_a_copied_approval_with_another_actor_does_not_match_its_audit_row(sqlite_url: str) -> None:
    # Arrange: a real approval by alice, revoked; then a copy naming its audit row, signed "ceo@corp".
    store = open_store(sqlite_url)
    real = approvals.approve_live(*SLEEVE, "ok", "alice", store=store)
    approvals.revoke_live(*SLEEVE, "bob", "no", store=store)
    with triggers_off(store, "approval_events") as conn:
        conn.execute(text("DROP INDEX ux_approval_events_audit_seq"))
        row_id = _insert_approval(conn, audit_seq=real.audit_seq)

    with pytest.raises(GateRefused) as excinfo:
        approvals.require_live_approval(*SLEEVE, store=store)

    assert f"approval row {row_id} does not match its audit row seq {real.audit_seq} (time differs)" in str(excinfo.value)


def test_replaying_an_old_approval_row_is_refused_by_the_database(store_url: str) -> None:
    store = open_store(store_url)
    real = approvals.approve_live(*SLEEVE, "ok", "alice", store=store)
    approvals.revoke_live(*SLEEVE, "bob", "no", store=store)

    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO approval_events (kind, strategy, instrument, note, actor, at, fingerprint, audit_seq, "
            "params, bar_spec) SELECT kind, strategy, instrument, note, actor, at, fingerprint, audit_seq, params, "
            "bar_spec FROM approval_events WHERE audit_seq = :seq"), {"seq": real.audit_seq})


def test_a_replayed_approval_behind_the_database_is_not_the_newest(sqlite_url: str) -> None:
    # Arrange: the unique index dropped too, an exact copy of the old approval after its revocation.
    store = open_store(sqlite_url)
    real = approvals.approve_live(*SLEEVE, "ok", "alice", store=store)
    revoked = approvals.revoke_live(*SLEEVE, "bob", "no", store=store)
    with store.engine.begin() as conn:
        conn.execute(text("DROP INDEX ux_approval_events_audit_seq"))
        conn.execute(text(
            "INSERT INTO approval_events (kind, strategy, instrument, note, actor, at, fingerprint, audit_seq, "
            "params, bar_spec) SELECT kind, strategy, instrument, note, actor, at, fingerprint, audit_seq, params, "
            "bar_spec FROM approval_events WHERE audit_seq = :seq"), {"seq": real.audit_seq})

    with pytest.raises(GateRefused) as excinfo:
        approvals.require_live_approval(*SLEEVE, store=store)

    assert f"is not the newest of its sleeve and params in the audit log (seq {revoked} is newer)" in str(excinfo.value)


def test_hiding_a_newer_failed_verdict_does_not_bring_the_pass_back(store_url: str) -> None:
    # Arrange: PASS, then FAIL; the FAIL row deleted behind the triggers' back.
    store = open_store(store_url)
    _verdict(store, passed=True)
    failed = _verdict(store, passed=False)
    with triggers_off(store, "rung_verdicts") as conn:
        conn.execute(text("DELETE FROM rung_verdicts WHERE id = :id"), {"id": failed.id})

    with pytest.raises(GateRefused) as excinfo:
        ladder.require_paper_rung(*SLEEVE, store=store)

    assert f"(seq {failed.audit_seq} is newer)" in str(excinfo.value)


def test_rung_verdicts_are_append_only(store_url: str) -> None:
    from sqlalchemy.exc import DBAPIError

    store = open_store(store_url)
    _verdict(store, passed=False)

    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text("UPDATE rung_verdicts SET passed = 1"))

    assert not ladder.latest_verdict("paper", *SLEEVE, store=store).passed


def test_a_verdict_whose_audit_row_says_otherwise_is_forged(sqlite_url: str) -> None:
    # Arrange: a real FAIL verdict flipped to PASS behind the triggers' back.
    store = open_store(sqlite_url)
    verdict = _verdict(store, passed=False)
    with triggers_off(store, "rung_verdicts") as conn:
        conn.execute(text("UPDATE rung_verdicts SET passed = 1"))

    with pytest.raises(GateRefused) as excinfo:
        ladder.require_paper_rung(*SLEEVE, store=store)

    assert str(excinfo.value) == (f"[gate: paper-rung] paper verdict row {verdict.id} does not match its audit row "
                                  f"seq {verdict.audit_seq} (passed differs): {EDITED}")


def test_a_row_whose_chain_does_not_verify_up_to_it_refuses(store_url: str) -> None:
    # Arrange: an earlier audit row rewritten and every hash after it recomputed (without the key).
    store = open_store(store_url)
    audit.append("someone", "test.earlier", "s", {"x": 1}, store=store)
    _verdict(store)
    approval = approvals.approve_live(*SLEEVE, "ok", "alice", store=store)
    rewrite_from(store, 1)

    with pytest.raises(GateRefused) as excinfo:
        approvals.require_live_approval(*SLEEVE, store=store)

    assert str(excinfo.value).startswith(f"[gate: approval] the audit log does not verify up to seq {approval.audit_seq}")
    assert "HMAC does not match" in str(excinfo.value)


def test_genuine_rows_pass_and_show_pass(store_url: str) -> None:
    store = open_store(store_url)
    _verdict(store)
    approvals.approve_live(*SLEEVE, "30 paper days", "alice", store=store)

    verdict = ladder.require_paper_rung(*SLEEVE, store=store)
    approval = approvals.require_live_approval(*SLEEVE, store=store)
    rows = {r["rung"]: r["result"] for r in ladder.status(*SLEEVE, store=store)}

    assert verdict.passed and approval.approved_by == "alice"
    assert rows == {"backtest": "NOT RUN", "paper": "PASS", "approval": "PASS"}


def test_ladder_status_cli_shows_a_forged_approval_as_forged(isolated_env) -> None:  # noqa: ANN001
    store = open_store()
    _verdict(store)
    with store.engine.begin() as conn:
        row_id = _insert_approval(conn, audit_seq=7)

    result = run_ats("ladder", "status", "--strategy", SLEEVE[0], "--instrument", SLEEVE[1], "--json")

    assert result.returncode == 0, result.stderr
    rungs = {r["rung"]: r for r in json.loads(result.stdout)["rungs"]}
    assert (rungs["paper"]["result"], rungs["approval"]["result"]) == ("PASS", "FORGED")
    assert rungs["approval"]["why"] == [f"approval row {row_id} has no matching audit row: {EDITED}"]

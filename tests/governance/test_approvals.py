"""Go-live approvals: audited approve/revoke, the require gate, every refusal."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ats.core.errors import ApprovalMissing, InputError, NothingToDo, UnknownStrategyError
from ats.governance import approvals, audit
from ats.store import open_store
from ats.strategies import REGISTRY, StrategySpec
from support import run_ats

DEFAULTS = {"buy_threshold": 0.2, "max_hold_bars": None, "notional": 4000.0, "sell_threshold": 0.8}


TOY_MODULE = """
from nautilus_trader.config import StrategyConfig
from nautilus_trader.model.data import BarType
from nautilus_trader.model.identifiers import InstrumentId
from nautilus_trader.trading.strategy import Strategy

BUY_THRESHOLD = {threshold}


class ToyConfig(StrategyConfig, frozen=True):
    instrument_id: InstrumentId
    bar_type: BarType
    size: int = 1


class Toy(Strategy):
    pass
"""


@pytest.fixture
def editable_strategy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real registered strategy module on disk whose source the test can change."""
    package = tmp_path / "strategies_under_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    module = package / "toy.py"
    module.write_text(TOY_MODULE.format(threshold=0.2))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(REGISTRY, "toy", StrategySpec("toy", "strategies_under_test.toy", "Toy", "ToyConfig"))
    yield module
    sys.modules.pop("strategies_under_test.toy", None)
    sys.modules.pop("strategies_under_test", None)


def test_approve_records_approval_and_audit_row(store_url: str) -> None:
    store = open_store(store_url)

    approval = approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "30 paper days, parity 1.0", "alice@desk", store=store)

    assert approval.fingerprint == REGISTRY["ibs_reversion"].fingerprint()
    [row] = audit.list_rows(action="approval.approve", store=store)
    assert (row.actor, row.subject, row.seq) == ("alice@desk", "ibs_reversion@QQQ.NASDAQ", approval.audit_seq)
    assert row.payload_obj() == {"note": "30 paper days, parity 1.0", "fingerprint": approval.fingerprint,
                                 "params": DEFAULTS, "bar_spec": "1-DAY-LAST"}
    assert (approval.params, approval.bar_spec, approval.approved_at) == (DEFAULTS, "1-DAY-LAST", row.ts)
    assert approvals.require_live_approval("ibs_reversion", "QQQ.NASDAQ", store=store) == approval


def test_approving_twice_changes_nothing(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "first", "alice", store=store)

    with pytest.raises(NothingToDo, match="on 1-DAY-LAST bars is already approved \\(by alice at .*\\); nothing changed"):
        approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "second", "bob", store=store)

    assert audit.count(store) == 1
    assert [a.note for a in approvals.current_approvals(store=store)] == ["first"]


def test_revoke_removes_the_approval_and_is_audited(store_url: str) -> None:
    store = open_store(store_url)
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "ok", "alice", store=store)

    seq = approvals.revoke_live("ibs_reversion", "QQQ.NASDAQ", "bob", "drawdown too deep", store=store)

    assert approvals.current_approvals(store=store) == []
    [row] = audit.list_rows(action="approval.revoke", store=store)
    assert (row.seq, row.actor, row.payload_obj()["note"]) == (seq, "bob", "drawdown too deep")
    with pytest.raises(ApprovalMissing, match="the approval was revoked by bob"):
        approvals.require_live_approval("ibs_reversion", "QQQ.NASDAQ", store=store)


def test_require_refuses_without_approval(sqlite_url: str) -> None:
    with pytest.raises(ApprovalMissing) as excinfo:
        approvals.require_live_approval("ibs_reversion", "SPY.ARCA", store=open_store(sqlite_url))

    assert excinfo.value.gate == "approval"
    assert "ibs_reversion on SPY.ARCA has no go-live approval for params {" in str(excinfo.value)
    assert "ats approve-live --strategy ibs_reversion --instrument SPY.ARCA" in str(excinfo.value)


def test_changed_strategy_code_needs_reapproval(sqlite_url: str, editable_strategy: Path) -> None:
    store = open_store(sqlite_url)
    approvals.approve_live("toy", "QQQ.NASDAQ", "ok", "alice", store=store)

    editable_strategy.write_text(TOY_MODULE.format(threshold=0.3))

    with pytest.raises(ApprovalMissing, match="re-approve after you change strategy code"):
        approvals.require_live_approval("toy", "QQQ.NASDAQ", store=store)
    again = approvals.approve_live("toy", "QQQ.NASDAQ", "reviewed the threshold change", "alice", store=store)
    assert approvals.require_live_approval("toy", "QQQ.NASDAQ", store=store) == again
    assert [r.action for r in audit.list_rows(store=store)] == ["approval.approve", "approval.reapprove"]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s: approvals.approve_live("nope", "QQQ.NASDAQ", "n", "a", store=s), UnknownStrategyError,
         "unknown strategy 'nope'; known strategies: ibs_reversion, order_check"),
        (lambda s: approvals.approve_live("ibs_reversion", "QQQ", "n", "a", store=s), InputError,
         "instrument id 'QQQ' is malformed: expected SYMBOL.VENUE"),
        (lambda s: approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "  ", "a", store=s), InputError,
         "--note is empty"),
        (lambda s: approvals.revoke_live("ibs_reversion", "QQQ.NASDAQ", "a", store=s), InputError,
         "ibs_reversion on QQQ.NASDAQ is not approved with params {.*} on 1-DAY-LAST bars: nothing to revoke"),
    ],
)
def test_refusals_write_nothing(sqlite_url: str, call, error: type, message: str) -> None:  # noqa: ANN001
    store = open_store(sqlite_url)

    with pytest.raises(error, match=message.replace("(", "\\(").replace(")", "\\)")):
        call(store)

    assert audit.count(store) == 0
    assert approvals.current_approvals(store=store) == []


def test_cli_approve_list_revoke(isolated_env: Path) -> None:
    approve = run_ats("approve-live", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", "--note", "go")
    again = run_ats("approve-live", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", "--note", "go")
    listed = run_ats("approvals", "--json")
    revoke = run_ats("revoke-live", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", "--note", "stop")
    revoke_again = run_ats("revoke-live", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ")

    assert approve.returncode == 0, approve.stderr
    assert "approved ibs_reversion on QQQ.NASDAQ" in approve.stdout
    assert again.returncode == 0 and "already approved" in again.stdout and "nothing changed" in again.stdout
    [current] = json.loads(listed.stdout)
    assert (current["strategy"], current["instrument"], current["note"]) == ("ibs_reversion", "QQQ.NASDAQ", "go")
    assert revoke.returncode == 0 and "revoked" in revoke.stdout
    assert revoke_again.returncode == 2
    assert revoke_again.stderr.strip() == (
        "error: ibs_reversion on QQQ.NASDAQ is not approved with params {\"buy_threshold\":0.2,\"max_hold_bars\":null,"
        "\"notional\":4000.0,\"sell_threshold\":0.8} on 1-DAY-LAST bars: nothing to revoke")


def test_recorded_text_is_shown_as_written_never_read_as_console_markup(isolated_env: Path) -> None:
    # Arrange: a note and an operator name that look like console markup, recorded for ever.
    env = {"ATS_OPERATOR": "bob[/]", "COLUMNS": "400"}
    approved = run_ats("approve-live", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ",
                       "--note", "ok per [/] review, x [bold]y", env=env)

    # Act
    listed = run_ats("audit", "list", env=env)
    current = run_ats("approvals", env=env)

    # Assert
    assert approved.returncode == 0, approved.stderr
    for shown in (listed, current):
        assert shown.returncode == 0, shown.stderr
        assert "ok per [/] review, x [bold]y" in shown.stdout
        assert "bob[/]" in shown.stdout


def test_revoke_live_says_which_running_live_session_halts_on_it(isolated_env: Path) -> None:
    # Arrange: two approved sets, a live session (its record) trading the default one.
    from ats.core.sleeves import Sleeve
    from ats.governance.sessions import start_session

    store = open_store()
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "go", "alice", store=store)
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "go", "alice", params={"buy_threshold": 0.1}, store=store)
    session = start_session("live", [Sleeve("ibs_reversion", "QQQ.NASDAQ")], trader_id="ATS-LIVE-001",
                            account_masked="U***4567", gateway="127.0.0.1:4001", actor="alice", store=store)
    sleeve = ["--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ"]

    # Act
    other_set = run_ats("revoke-live", *sleeve, "--params", '{"buy_threshold": 0.1}', "--note", "not this one")
    its_set = run_ats("revoke-live", *sleeve, "--note", "risk review")

    # Assert
    assert other_set.returncode == 0 and "live session" not in other_set.stdout
    assert its_set.returncode == 0, its_set.stderr
    assert f"the running live session {session.id} trades it: it halts within a second" in its_set.stdout
    assert approvals.revocation_among([Sleeve("ibs_reversion", "QQQ.NASDAQ")], store=store).startswith(
        "the go-live approval of ibs_reversion@QQQ.NASDAQ was revoked by ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "momentum", "--instrument", "QQQ.NASDAQ", "--note", "x"],
         "error: unknown strategy 'momentum'; known strategies: ibs_reversion, order_check"),
        (["--strategy", "ibs_reversion", "--instrument", "QQQ-NASDAQ", "--note", "x"],
         "error: instrument id 'QQQ-NASDAQ' is malformed: expected SYMBOL.VENUE, e.g. QQQ.NASDAQ"),
        (["--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", "--note", ""],
         "error: --note is empty: say why this sleeve may trade real money"),
    ],
)
def test_cli_refusals_are_one_line_and_write_nothing(isolated_env: Path, args: list[str], message: str) -> None:
    result = run_ats("approve-live", *args)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [message]
    assert audit.count(open_store()) == 0


# --- issue 17, finding 3: an approval is pinned to params and bar spec -------------------------

BIG = {"notional": 1000000, "buy_threshold": 0.99, "sell_threshold": 0.995}


def test_an_approval_admits_only_its_params_and_bar_spec(store_url: str) -> None:
    store = open_store(store_url)
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "defaults", "alice", store=store)

    with pytest.raises(ApprovalMissing) as other_params:
        approvals.require_live_approval("ibs_reversion", "QQQ.NASDAQ", BIG, store=store)
    with pytest.raises(ApprovalMissing) as other_bars:
        approvals.require_live_approval("ibs_reversion", "QQQ.NASDAQ", {}, "1-HOUR-LAST", store=store)
    spelled_out = approvals.require_live_approval("ibs_reversion", "QQQ.NASDAQ", {"notional": 4000, "buy_threshold": 0.2},
                                                  "1-day-last", store=store)

    assert "is approved for params {" in str(other_params.value)
    assert '"notional":1000000.0' in str(other_params.value) and '"notional":4000.0' in str(other_params.value)
    assert "needs its own paper evidence and approval" in other_params.value.remedy
    assert "on 1-DAY-LAST bars, not for the requested params" in str(other_bars.value)
    assert "on 1-HOUR-LAST bars" in str(other_bars.value)
    assert spelled_out.note == "defaults"


def test_two_sets_are_approved_and_revoked_apart(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "defaults", "alice", store=store)
    approvals.approve_live("ibs_reversion", "QQQ.NASDAQ", "big", "alice", params=BIG, store=store)

    approvals.revoke_live("ibs_reversion", "QQQ.NASDAQ", "bob", "too big", params=BIG, store=store)

    assert [a.note for a in approvals.current_approvals(store=store)] == ["defaults"]
    with pytest.raises(ApprovalMissing, match="the approval was revoked by bob"):
        approvals.require_live_approval("ibs_reversion", "QQQ.NASDAQ", BIG, store=store)
    assert approvals.require_live_approval("ibs_reversion", "QQQ.NASDAQ", store=store).note == "defaults"


def test_cli_approve_live_and_revoke_live_take_params_and_bar_spec(isolated_env: Path) -> None:
    sleeve = ["--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ"]
    big = ["--params", json.dumps(BIG), "--bar-spec", "1-DAY-LAST"]

    default = run_ats("approve-live", *sleeve, "--note", "defaults")
    approve = run_ats("approve-live", *sleeve, *big, "--note", "big")
    listed = run_ats("approvals", "--json")
    revoke = run_ats("revoke-live", *sleeve, "--note", "not the defaults")
    after = run_ats("approvals", "--json")

    assert (default.returncode, approve.returncode, revoke.returncode) == (0, 0, 0), approve.stderr + revoke.stderr
    assert '"notional":1000000.0' in approve.stdout and "on 1-DAY-LAST bars" in approve.stdout
    assert sorted(a["params"]["notional"] for a in json.loads(listed.stdout)) == [4000.0, 1000000.0]
    assert "still approved: params {" in revoke.stdout and '"notional":1000000.0' in revoke.stdout
    [left] = json.loads(after.stdout)
    assert (left["note"], left["params"]["notional"], left["bar_spec"]) == ("big", 1000000.0, "1-DAY-LAST")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--params", '{"notional": "lots"}'], "error: parameter notional for ibs_reversion must be a number, got \"lots\""),
        (["--bar-spec", "1-DAY-NOPE"], "error: bar spec '1-DAY-NOPE': unknown price type 'NOPE'"),
    ],
)
def test_cli_approve_live_bad_params_or_bar_spec_is_one_line_writing_nothing(isolated_env: Path, extra: list[str],
                                                                             message: str) -> None:
    result = run_ats("approve-live", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ", "--note", "x", *extra)

    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(message)
    assert audit.count(open_store()) == 0

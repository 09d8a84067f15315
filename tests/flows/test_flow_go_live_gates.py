"""Each failing gate fails the go-live run with its message and writes its audit row."""

from __future__ import annotations

from pathlib import Path

import pytest
from flow_support import LIVE_ACCOUNT, approve, pass_paper_rung, reload_settings

from ats.governance import audit
from ats.store import open_store
from support import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def live_env(isolated_env: Path, monkeypatch: pytest.MonkeyPatch, prefect_api: str) -> Path:
    monkeypatch.setenv("ATS_ENABLE_LIVE_TRADING", "true")
    monkeypatch.setenv("ATS_IB_LIVE_ACCOUNT_ID", LIVE_ACCOUNT)
    monkeypatch.setenv("ATS_IB_PAPER_PORT", str(free_port()))
    monkeypatch.setenv("ATS_IB_LIVE_PORT", str(free_port()))
    monkeypatch.setenv("ATS_GATEWAY_CONTROLLER", "external")
    monkeypatch.setenv("ATS_GATEWAY_START_TIMEOUT_SECONDS", "3")
    reload_settings()
    return isolated_env


def _run_go_live(**kwargs):  # noqa: ANN003, ANN202
    from flows.go_live import go_live

    return go_live(strategy="ibs_reversion", instrument="QQQ.NASDAQ", return_state=True, **kwargs)


def _failure_message(state) -> str:  # noqa: ANN001
    assert state.is_failed(), state
    with pytest.raises(Exception) as excinfo:
        state.result()
    return str(excinfo.value)


def _refused_gates() -> list[str]:
    return [r.payload_obj()["gate"] for r in audit.list_rows(action="gate.refused", store=open_store())]


def test_edition_gate_fails_the_run(live_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATS_ENABLE_LIVE_TRADING", "false")
    reload_settings()

    message = _failure_message(_run_go_live(i_understand=LIVE_ACCOUNT))

    assert "[gate: edition] live trading is disabled" in message
    assert _refused_gates() == ["edition"]


def test_paper_rung_gate_fails_the_run(live_env: Path) -> None:
    message = _failure_message(_run_go_live(i_understand=LIVE_ACCOUNT))

    assert "[gate: paper-rung] ibs_reversion@QQQ.NASDAQ: the paper rung has not been judged" in message
    assert _refused_gates() == ["paper-rung"]


def test_approval_gate_fails_the_run(live_env: Path) -> None:
    pass_paper_rung()

    message = _failure_message(_run_go_live(i_understand=LIVE_ACCOUNT))

    assert "[gate: approval] no current go-live approval for ibs_reversion@QQQ.NASDAQ" in message
    assert _refused_gates() == ["approval"]


def test_swap_refuses_when_no_live_gateway_answers(live_env: Path) -> None:
    pass_paper_rung()
    approve()

    state = _run_go_live(i_understand=LIVE_ACCOUNT)

    message = _failure_message(state)
    assert "the live gateway did not complete the API handshake" in message


def test_wrong_i_understand_fails_the_run(live_env: Path, sim_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    pass_paper_rung()
    approve()
    live = sim_factory(mode="live", account=LIVE_ACCOUNT)
    monkeypatch.setenv("ATS_IB_LIVE_PORT", str(live.port))
    reload_settings()

    message = _failure_message(_run_go_live(i_understand="U7777777"))

    assert "[gate: confirmation] the typed account id U***7777 is not the live account U***4567" in message
    assert _refused_gates() == ["confirmation"]
    assert [r.action for r in audit.list_rows(action="gateway.swap", store=open_store())] == ["gateway.swap"]
    assert live.ledger == []

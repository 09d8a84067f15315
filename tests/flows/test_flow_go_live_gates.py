"""Each failing gate fails the go-live run with its message and writes its audit row."""

from __future__ import annotations

import io
import logging
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


def test_the_demo_keeps_an_expected_refusal_off_the_console_and_in_the_run_log(live_env: Path) -> None:
    # Arrange: Prefect's logging set up as in `ats demo` by its earlier flow runs (a console handler
    # on the root logger), the console handlers writing to a buffer for this test
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import APILogWorker, PrefectConsoleHandler

    from ats.cli.demo_steps import console_quiet_about_gate_refusals

    pass_paper_rung()
    ensure_logging_setup()
    consoles = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    assert consoles, "no Prefect console handler on the root logger"
    echoed = io.StringIO()
    files = [h.console.file for h in consoles]  # the handler prints through its rich Console
    for handler in consoles:
        handler.console.file = echoed
    filters_before = [list(h.filters) for h in consoles]

    # Act
    try:
        with console_quiet_about_gate_refusals():
            state = _run_go_live(i_understand=LIVE_ACCOUNT)
    finally:
        for handler, file in zip(consoles, files, strict=True):
            handler.console.file = file

    # Assert: refused and audited as before; the console shows the run but not the refusal's
    # tracebacks; the run's log on the Prefect server still has the refusal, at ERROR
    assert "[gate: approval]" in _failure_message(state)
    assert _refused_gates() == ["approval"]
    console_text = echoed.getvalue()
    assert "Beginning flow run" in console_text
    assert "Traceback" not in console_text
    assert "[gate: " not in console_text
    APILogWorker.drain_all(timeout=30)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    assert any(log.level >= logging.ERROR and "[gate: approval]" in log.message for log in logs)
    assert [list(h.filters) for h in consoles] == filters_before


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

"""Safety behaviours: stop times never missing or past, no paper beside live, exits not trapped
by the entry cap, a node that never starts trading still obeys the kill switch."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from nautilus_trader.adapters.interactive_brokers import factories
from runner_support import drive_session, session_settings, wait_until

from ats.core.errors import GateRefused, InputError
from ats.core.settings import Settings, load_settings
from ats.core.sleeves import Sleeve
from ats.gateway.controllers import SimController, swap
from ats.governance import audit, killswitch
from ats.governance.sessions import list_sessions, start_session
from ats.ibsim import SimGateway
from ats.store import Store, open_store
from ats.trading.gates import check_gates
from ats.trading.runner import SessionOutcome, SessionRequest, run_session
from ats.trading.stop_time import resolve_stop_time
from ats.trading.supervisor import ib_connection
from support import free_port, later, open_connections_to

NY = dt.timezone(dt.timedelta(hours=-5))


def test_no_stop_time_on_a_day_the_exchange_does_not_trade_is_refused() -> None:
    thanksgiving = dt.datetime(2026, 11, 26, 10, 0, tzinfo=NY)

    with pytest.raises(InputError, match="the exchange does not trade today"):
        resolve_stop_time(None, thanksgiving)

    assert resolve_stop_time("2026-11-26T13:00", thanksgiving) == dt.datetime(2026, 11, 26, 18, 0, tzinfo=dt.UTC)


def test_the_close_is_the_default_stop_early_closes_included() -> None:
    black_friday = dt.datetime(2026, 11, 27, 10, 0, tzinfo=NY)

    assert resolve_stop_time(None, black_friday) == dt.datetime(2026, 11, 27, 18, 0, tzinfo=dt.UTC)  # 13:00 NY


def test_a_stop_time_already_past_is_refused_not_moved_to_tomorrow() -> None:
    friday_after_close = dt.datetime(2026, 11, 20, 16, 5, tzinfo=NY)

    with pytest.raises(InputError, match="--until '16:00' is already past"):
        resolve_stop_time("16:00", friday_after_close)
    with pytest.raises(InputError, match="today's market close .* has passed"):
        resolve_stop_time(None, friday_after_close)


def _running_live_session() -> str:
    return start_session("live", [Sleeve("ibs_reversion", "QQQ.NASDAQ")], trader_id="ATS-LIVE-001",
                         account_masked="U***4567", gateway="127.0.0.1:4001", actor="test", store=open_store()).id


def test_paper_refuses_while_a_live_session_runs(isolated_env: Path) -> None:
    live_id = _running_live_session()

    paper = subprocess.run(
        [sys.executable, "-m", "ats.paper", "--strategy", "ibs_reversion", "--instrument", "QQQ.NASDAQ",
         "--until", later(1)],
        capture_output=True, text=True, env={**os.environ, "ATS_IB_PAPER_ACCOUNT_ID": "DU1234567",
                                             "ATS_IB_PAPER_PORT": str(free_port())})

    assert paper.returncode == 3
    assert f"[gate: one-session] another live session is running: {live_id}" in paper.stderr
    assert [r.payload_obj()["gate"] for r in audit.list_rows(action="gate.refused", store=open_store())] == ["one-session"]


def test_swap_never_stops_a_gateway_under_a_running_session(isolated_env: Path) -> None:
    settings = load_settings({"ATS_DATA_DIR": str(isolated_env), "ATS_IB_PAPER_PORT": str(free_port()),
                              "ATS_IB_LIVE_PORT": str(free_port()), "ATS_IB_LIVE_ACCOUNT_ID": "U1234567",
                              "ATS_IB_PAPER_ACCOUNT_ID": "DU1234567"})
    live_id = _running_live_session()
    with SimController(settings) as controller:
        controller.start("live")

        with pytest.raises(GateRefused, match=f"a live session is running \\({live_id}\\); its gateway is not stopped"):
            swap("paper", controller, settings, store=open_store())

        assert controller.is_up("live") and not controller.is_up("paper")


@pytest.mark.slow
def test_an_exit_above_the_entry_cap_still_goes_out(sim_factory, isolated_env: Path) -> None:
    # Arrange: 20 shares (~9,000 USD) bought under a 25,000 cap; then a session capped at 5,000.
    sim = sim_factory(mode="paper", clock="manual", start="2024-06-03")
    buy = Sleeve("ibs_reversion", "QQQ.NASDAQ", "1-DAY-LAST", {"buy_threshold": 0.99, "sell_threshold": 1.0,
                                                                "notional": 9500.0})
    drive_session(sim, session_settings(sim, isolated_env), SessionRequest("paper", [buy]), days=1)
    sell = Sleeve("ibs_reversion", "QQQ.NASDAQ", "1-DAY-LAST", {"buy_threshold": 0.0, "sell_threshold": 0.001,
                                                                 "notional": 4000.0})
    capped = session_settings(sim, isolated_env, ATS_PAPER_RISK_MAX_NOTIONAL_PER_ORDER="5000")

    # Act
    drive_session(sim, capped, SessionRequest("paper", [sell]), days=2)

    # Assert
    placed = [(r["action"], r["quantity"]) for r in sim.ledger if r["kind"] == "place"]
    assert placed == [("BUY", "20"), ("SELL", "20")]
    assert audit.list_rows(action="order.denied", store=open_store()) == []


@pytest.mark.slow
def _session_killed_once(sim: SimGateway, settings: Settings, ready: Callable[[], bool],
                         reason: str) -> tuple[SessionOutcome, Store]:
    """Run a paper session on this thread; another latches the kill switch once ``ready()``."""
    request = SessionRequest("paper", [Sleeve("ibs_reversion", "QQQ.NASDAQ")],
                             until=(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat())
    store = open_store(settings.resolved_database_url)
    account, _ = check_gates(request, settings, store)

    def kill_when_ready(_guard) -> None:  # noqa: ANN001
        def kill() -> None:
            wait_until(ready, what=f"the moment to kill ({reason})", interval=0.001)
            killswitch.latch(["paper"], reason, "test", store=store)
        threading.Thread(target=kill, daemon=True).start()

    return run_session(request, settings, store, account=account, on_guard=kill_when_ready), store


def test_a_node_that_never_starts_trading_still_obeys_the_kill_switch(sim_factory, isolated_env: Path) -> None:
    # Arrange: the gateway manages another account, so the execution client never becomes ready.
    sim = sim_factory(mode="paper", account="DU7777777", clock="manual")
    settings = session_settings(sim, isolated_env, ATS_IB_PAPER_ACCOUNT_ID="DU1234567")

    # Act: killed once the node's own client is connected (the gates' probes are API connections too).
    outcome, store = _session_killed_once(sim, settings, lambda: ib_connection() == "connected",
                                          "node stuck starting")

    # Assert
    assert outcome.status == "killed", outcome.reason
    assert "node stuck starting" in outcome.reason
    assert [s.status for s in list_sessions("paper", store=store)] == ["killed"]
    assert open_connections_to(sim.port) == 0


def test_a_kill_during_the_nodes_first_connect_leaves_no_socket_open_at_the_gateway(
        sim_factory, isolated_env: Path) -> None:
    # Arrange
    sim = sim_factory(mode="paper", clock="manual")
    settings = session_settings(sim, isolated_env)

    # Act: killed the moment the node's IB client exists, its first connect under way.
    outcome, _ = _session_killed_once(sim, settings, lambda: bool(factories.IB_CLIENTS), "kill during the first connect")

    # Assert: killed, and nothing of the node holds a connection (or its client id) at the gateway.
    assert outcome.status == "killed", outcome.reason
    assert open_connections_to(sim.port) == 0
    assert factories.IB_CLIENTS == {}

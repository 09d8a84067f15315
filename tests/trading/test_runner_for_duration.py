"""``--for`` / ``for_seconds``: a session's length starts when its node is running (issue 11).

A slow start (a cold Prefect API, a gateway still logging in, a stalled handshake) must never eat
the session: an absolute stop time computed before the start was the race that failed the demo.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from runner_support import counts, session_settings, wait_until

from ats.core.errors import InputError
from ats.core.sleeves import Sleeve
from ats.store import open_store
from ats.trading.gates import check_gates
from ats.trading.runner import SessionRequest, run_session
from ats.trading.stop_time import parse_duration, resolve_stop_time


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("1h30m", 5400), ("90", 90), ("2d", 172800),
                                               (" 3 s", 3), (2.5, 2.5)])
def test_parse_duration_reads_the_forms_of_for(text, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "message"), [("0", "more than 0 s"), ("-5", "more than 0 s"), ("abc", "expected a duration"),
                                               ("8d", "at most 7 days"), ("nan", "more than 0 s")])
def test_parse_duration_refuses_bad_durations_in_one_line(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_duration(text)


def test_until_and_for_together_are_refused() -> None:
    with pytest.raises(InputError, match="either --until or --for"):
        resolve_stop_time("16:00", for_seconds=60)


def test_for_has_no_absolute_stop_time_and_ignores_the_market_calendar() -> None:
    # Act / Assert: the stop is relative to the running node, whatever the day
    assert resolve_stop_time(None, for_seconds=60) is None


@pytest.mark.slow
def test_a_3_s_session_trades_its_3_s_after_a_slowed_start(sim_factory, isolated_env: Path) -> None:
    # Arrange: the gateway stalls the node's first handshake (the node retries seconds later);
    # the simulator replays a trading day every 0.2 s once subscribed.
    sim = sim_factory(mode="paper", clock=0.2, start="2024-01-02")
    sim.stall(True)
    settings = session_settings(sim, isolated_env)
    request = SessionRequest("paper", [Sleeve("ibs_reversion", "QQQ.NASDAQ")], for_seconds=3)
    store = open_store(settings.resolved_database_url)
    account, _ = check_gates(request, settings, store)

    def unstall_after_the_first_attempt(_guard) -> None:  # noqa: ANN001
        def unstall() -> None:
            wait_until(lambda: sim.stalled_connections >= 1, what="the node's stalled first handshake")
            sim.stall(False)
        threading.Thread(target=unstall, daemon=True).start()

    # Act
    outcome = run_session(request, settings, store, account=account, on_guard=unstall_after_the_first_attempt)

    # Assert: the start was slowed, and the session still traded for its full 3 s after it
    assert sim.stalled_connections >= 1 and sim.api_connections >= 1
    assert (outcome.status, outcome.reason) == ("stopped", "ran for its 3 s")
    assert outcome.summary["traded_seconds"] >= 3.0
    recorded = counts(store, outcome.session_id)
    assert recorded["bars"] >= 5, recorded
    assert recorded.get("filled", 0) >= 1, recorded

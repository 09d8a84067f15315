"""HealthPolicy (maintenance windows, settings) and the pure state machine ``evaluate``."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ats.core.settings import load_settings
from ats.gateway.health import GatewayHealth, HealthPolicy, evaluate
from ats.gateway.probe import ProbeResult

T0 = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)  # Tuesday 14:00 New York


def _result(ok: bool, reason: str | None = None, accounts: tuple[str, ...] = ("DU1234567",)) -> ProbeResult:
    return ProbeResult("paper", "127.0.0.1", 4002, ok, "ok" if ok else (reason or "refused"),
                       1.0 if ok else None, accounts if ok or reason == "wrong_account" else ())


def test_defaults() -> None:
    policy = HealthPolicy()
    assert (policy.interval_seconds, policy.failures_to_alert, policy.reminder_minutes) == (3.0, 2, 15.0)
    assert (policy.daily_restart_time, policy.weekly_restart_day) == (time(23, 45), "sun")


def test_policy_is_frozen_and_rejects_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        HealthPolicy(reminder_minute=5)
    with pytest.raises(ValidationError):
        HealthPolicy().failures_to_alert = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        HealthPolicy(restart_timezone="Mars/Olympus")
    with pytest.raises(ValidationError):
        HealthPolicy(failures_to_alert=0)


def test_settings_health_is_the_policy_of_the_health_variables(tmp_path: Path) -> None:
    settings = load_settings({"ATS_HEALTH_REMINDER_MINUTES": "5", "ATS_HEALTH_DAILY_RESTART_TIME": "",
                              "ATS_HEALTH_WEEKLY_RESTART_DAY": "Saturday"}, tmp_path / "no.env")
    policy = settings.health
    assert isinstance(policy, HealthPolicy)
    assert (policy.reminder_minutes, policy.daily_restart_time, policy.weekly_restart_day) == (5, None, "sat")
    assert policy.failures_to_alert == 2


@pytest.mark.parametrize(("utc", "inside"), [
    (datetime(2026, 11, 25, 4, 34, 59, tzinfo=UTC), False),  # 23:34:59 EST
    (datetime(2026, 11, 25, 4, 35, tzinfo=UTC), True),  # 23:35
    (datetime(2026, 11, 25, 4, 54, 59, tzinfo=UTC), True),
    (datetime(2026, 11, 25, 4, 55, tzinfo=UTC), False),  # 23:55: the window is over
    (datetime(2026, 7, 15, 3, 40, tzinfo=UTC), True),  # 23:40 EDT (summer: UTC-4)
    (datetime(2026, 7, 15, 4, 40, tzinfo=UTC), False),  # 00:40 EDT
])
def test_daily_window_follows_new_york_time(utc: datetime, inside: bool) -> None:
    policy = HealthPolicy(weekly_restart_day=None)
    assert (policy.window_at(utc) is not None) == inside


def test_window_across_midnight() -> None:
    policy = HealthPolicy(daily_restart_time="23:55", daily_restart_tolerance_minutes=10, weekly_restart_day=None)
    window = policy.window_at(datetime(2026, 11, 25, 5, 3, tzinfo=UTC))  # 00:03 NY, the next day
    assert window is not None and window.end == datetime(2026, 11, 25, 5, 5, tzinfo=UTC)


def test_weekly_window_only_on_its_day() -> None:
    policy = HealthPolicy(daily_restart_time=None)
    sunday = datetime(2026, 11, 29, 12, 5, tzinfo=UTC)  # 07:05 NY Sunday
    assert policy.window_at(sunday).name == "IBC weekly cold restart"
    assert policy.window_at(sunday + timedelta(days=1)) is None


def test_no_windows_when_disabled() -> None:
    policy = HealthPolicy(daily_restart_time=None, weekly_restart_day=None)
    assert policy.window_at(datetime(2026, 11, 25, 4, 45, tzinfo=UTC)) is None


NO_WINDOWS = HealthPolicy(daily_restart_time=None, weekly_restart_day=None)


def test_unknown_gateway_becomes_healthy_without_an_alert() -> None:
    decision = evaluate(GatewayHealth.initial("paper", T0), _result(True), T0, NO_WINDOWS)
    assert (decision.state.state, decision.alerts, decision.transition) == ("healthy", [], "healthy")
    assert decision.state.account == "DU***4567"


def test_k_consecutive_failures_needed() -> None:
    policy = HealthPolicy(failures_to_alert=3, daily_restart_time=None, weekly_restart_day=None)
    state = evaluate(GatewayHealth.initial("paper", T0), _result(True), T0, policy).state
    kinds = []
    for i in range(1, 6):
        decision = evaluate(state, _result(False), T0 + timedelta(seconds=30 * i), policy)
        state = decision.state
        kinds.append([m.kind for m in decision.alerts])
    assert kinds == [[], [], ["gateway_broken"], [], []]
    assert state.since == T0 + timedelta(seconds=30)  # the first failed probe


def test_a_success_between_failures_resets_the_count() -> None:
    state = evaluate(GatewayHealth.initial("paper", T0), _result(True), T0, NO_WINDOWS).state
    for i, ok in enumerate([False, True, False, True, False], start=1):
        decision = evaluate(state, _result(ok), T0 + timedelta(seconds=30 * i), NO_WINDOWS)
        assert decision.alerts == []
        state = decision.state
    assert state.state == "healthy"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=120), st.integers(min_value=1, max_value=4))
def test_alerts_follow_the_outages(probes: list[bool], k: int) -> None:
    """For any probe sequence: one broken alert per outage of ≥ K failures, one recovery per alerted outage."""
    policy = HealthPolicy(failures_to_alert=k, reminder_minutes=10_000, daily_restart_time=None, weekly_restart_day=None)
    state = GatewayHealth.initial("paper", T0)
    sent: list[str] = []
    for i, ok in enumerate(probes):
        decision = evaluate(state, _result(ok), T0 + timedelta(seconds=30 * i), policy)
        state = decision.state
        sent += [m.kind for m in decision.alerts]
    runs, current = [], 0  # lengths of failure runs, and whether each ended in a success
    ended = []
    for ok in probes + [None]:
        if ok is False:
            current += 1
        else:
            if current:
                runs.append(current)
                ended.append(ok is True)
            current = 0
    long_runs = [(n, e) for n, e in zip(runs, ended, strict=True) if n >= k]
    expected = []
    for _, recovered in long_runs:
        expected.append("gateway_broken")
        if recovered:
            expected.append("gateway_recovered")
    assert sent == expected


def test_wrong_account_alerts_at_once_and_only_once() -> None:
    state = GatewayHealth.initial("live", T0)
    first = evaluate(state, _result(False, "wrong_account"), T0, NO_WINDOWS, "U1234567")
    assert [m.kind for m in first.alerts] == ["gateway_wrong_account"]
    assert first.state.state == "broken"
    second = evaluate(first.state, _result(False, "wrong_account"), T0 + timedelta(seconds=30), NO_WINDOWS)
    assert second.alerts == []


def test_wrong_account_alerts_even_inside_a_maintenance_window() -> None:
    inside = datetime(2026, 11, 25, 4, 45, tzinfo=UTC)
    decision = evaluate(GatewayHealth.initial("live", inside), _result(False, "wrong_account"), inside, HealthPolicy())
    assert [m.kind for m in decision.alerts] == ["gateway_wrong_account"]


def test_wrong_account_while_already_alerted_broken_still_alerts() -> None:
    state = GatewayHealth.initial("live", T0)
    for i in range(2):
        state = evaluate(state, _result(False), T0 + timedelta(seconds=30 * i), NO_WINDOWS).state
    assert state.alerted_broken
    decision = evaluate(state, _result(False, "wrong_account"), T0 + timedelta(seconds=60), NO_WINDOWS)
    assert [m.kind for m in decision.alerts] == ["gateway_wrong_account"]

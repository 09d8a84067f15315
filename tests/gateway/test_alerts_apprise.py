"""ats.core.alerts: real apprise to a real local HTTP endpoint; masking; never raising."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ats.core import alerts
from support import free_port


def test_send_delivers_title_and_body_as_json(endpoint) -> None:
    assert alerts.send("ats: test", "line one\nline two", "info", urls=[endpoint.url]) is True
    assert len(endpoint.posts) == 1
    post = endpoint.posts[0]
    assert (post["title"], post["message"], post["type"]) == ("ats: test", "line one\nline two", "info")


def test_send_uses_ats_alert_urls(endpoint, monkeypatch) -> None:
    from ats.core.settings import get_settings

    monkeypatch.setenv("ATS_ALERT_URLS", f" {endpoint.url} , ")
    get_settings.cache_clear()
    assert alerts.send_message(alerts.kill_switch("live", "manual", "alice@box")) is True
    assert endpoint.posts[0]["title"] == "ats: KILL SWITCH (live)"
    assert endpoint.posts[0]["type"] == "failure"


def test_send_to_a_closed_port_returns_false_without_raising() -> None:
    assert alerts.send("t", "b", urls=[f"json://127.0.0.1:{free_port()}/x"]) is False


def test_send_to_an_endpoint_answering_500_returns_false(endpoint) -> None:
    endpoint.status = 500
    assert alerts.send("t", "b", urls=[endpoint.url]) is False
    assert endpoint.rejected == 1


def test_unparseable_url_counts_as_a_failed_target() -> None:
    notifier = alerts.Notifier(["notascheme://///"])
    assert notifier.deliver(alerts.AlertMessage("info", "t", "b")) == notifier.targets


def test_no_urls_configured_logs_and_counts_as_sent(caplog) -> None:
    with caplog.at_level("WARNING", logger="ats.core.alerts"):
        assert alerts.send("ats: nothing configured", "body", urls=[]) is True
    assert "no ATS_ALERT_URLS configured" in caplog.text


def test_account_ids_are_masked_and_urls_hidden_in_every_text(endpoint) -> None:
    body = "account U1234567 and DU7654321; hook https://hooks.example/T0KEN/secret"
    assert alerts.send("U1234567 went wrong", body, urls=[endpoint.url])
    post = endpoint.posts[0]
    assert post["title"] == "U***4567 went wrong"
    assert post["message"] == "account U***4567 and DU***4321; hook (url hidden)"


def test_target_ids_do_not_reveal_the_url(endpoint) -> None:
    url = "tgram://123456:SECRETTOKEN/987"
    tid = alerts.target_id(url)
    assert len(tid) == 12 and "SECRET" not in tid
    assert alerts.Notifier([url]).targets == [tid]


def test_gateway_messages_name_gateway_port_masked_account_reason_and_since() -> None:
    since = datetime(2026, 11, 24, 4, 40, 30, tzinfo=UTC)
    broken = alerts.gateway_broken("live", "127.0.0.1", 4001, "U1234567", "timeout", since, 2, "no answer")
    assert broken.kind == "gateway_broken"
    for part in ("live at 127.0.0.1:4001", "U***4567", "no answer within the probe timeout",
                 "2026-11-24 04:40:30 UTC (23:40 America/New_York)", "2 failed probes"):
        assert part in broken.body
    assert "U1234567" not in broken.body

    recovered = alerts.gateway_recovered("paper", "127.0.0.1", 4002, "DU1234567", since,
                                         since + timedelta(hours=1, minutes=5, seconds=3), 12.4)
    assert "Outage: 1 h 05 min 03 s" in recovered.body and "DU***4567" in recovered.body

    wrong = alerts.gateway_wrong_account("live", "127.0.0.1", 4001, "U1234567", ["DU7654321"], since)
    assert "DU***4321" in wrong.body and "U***4567" in wrong.body and "DU7654321" not in wrong.body


def test_go_live_and_session_ended_messages_mask_the_account() -> None:
    live = alerts.go_live("U1234567", ["ibs_reversion/QQQ.NASDAQ"], "alice@box", "127.0.0.1", 4001)
    assert "U***4567" in live.body and "U1234567" not in live.body
    assert live.title == "ats: LIVE trading session starting"
    ended = alerts.session_ended("live", "s-1", "killed", "kill switch", {"orders": 3})
    assert ended.title == "ats: live session killed" and "orders: 3" in ended.body


def test_duration_format() -> None:
    assert alerts.fmt_duration(timedelta(seconds=12)) == "12 s"
    assert alerts.fmt_duration(timedelta(minutes=4, seconds=10)) == "4 min 10 s"
    assert alerts.fmt_duration(timedelta(hours=26)) == "26 h 00 min 00 s"

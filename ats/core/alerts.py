"""Notifications through apprise (``ATS_ALERT_URLS``): gateway health, go-live, kill switch, session end.

Two layers:

* message builders (:func:`gateway_broken`, :func:`gateway_recovered`, :func:`gateway_reminder`,
  :func:`gateway_wrong_account`, :func:`go_live`, :func:`kill_switch`, :func:`session_ended`)
  return an :class:`AlertMessage` (kind, title, body).  They take raw account ids and mask
  them; every text also goes through :func:`scrub` before it leaves the process, so an account
  id or an apprise URL (which may carry a token) never appears in a notification or a log line;
* delivery: :class:`Notifier` sends a message to each configured URL separately and reports
  which targets failed, by a short *target id* (a hash of the URL, never the URL itself), so a
  caller can retry exactly the failed targets later (:mod:`ats.gateway.health` keeps them in
  ``gateway_health.pending_alerts``).  :func:`send` is the one-call form: it returns ``True``
  when every target accepted the message and never raises on a delivery failure.

With no URL configured, messages are logged (at WARNING) and count as delivered: there is
nothing to retry.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from ats.core.masking import mask_account, mask_accounts_in

log = logging.getLogger("ats.core.alerts")

AlertKind = Literal[
    "gateway_broken", "gateway_recovered", "gateway_reminder", "gateway_wrong_account",
    "go_live", "kill_switch", "session_ended", "info",
]

_NEW_YORK = ZoneInfo("America/New_York")
# Anything that looks like a URL with a scheme (apprise URLs carry tokens and passwords).
_URL_RE = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


@dataclass(frozen=True)
class AlertMessage:
    """One notification: what kind, a short title, and a body of a few lines."""

    kind: str
    title: str
    body: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "title": self.title, "body": self.body}


def scrub(text: str) -> str:
    """``text`` with account ids masked and URLs replaced by ``(url hidden)``."""
    text = _URL_RE.sub("(url hidden)", text)
    return mask_accounts_in(text)


def target_id(url: str) -> str:
    """A stable, secret-free name for one apprise URL (first 12 hex digits of its SHA-256)."""
    return hashlib.sha256(url.strip().encode("utf-8")).hexdigest()[:12]


def _notify_type(kind: str) -> str:
    import apprise

    if kind in ("gateway_broken", "gateway_wrong_account", "kill_switch"):
        return apprise.NotifyType.FAILURE
    if kind in ("gateway_reminder", "go_live"):
        return apprise.NotifyType.WARNING
    if kind == "gateway_recovered":
        return apprise.NotifyType.SUCCESS
    return apprise.NotifyType.INFO


class Notifier:
    """Delivers :class:`AlertMessage` s to apprise URLs, one target at a time.

    ``urls`` default to ``ATS_ALERT_URLS``.  An URL apprise cannot parse is logged (by its target
    id) and counts as a failed target on every delivery, so the alert stays pending and the
    misconfiguration stays visible.
    """

    def __init__(self, urls: Sequence[str] | None = None) -> None:
        if urls is None:
            from ats.core.settings import get_settings

            urls = get_settings().alert_url_list
        self._urls = {target_id(url): url.strip() for url in urls if url.strip()}

    @property
    def targets(self) -> list[str]:
        """The target ids of the configured URLs."""
        return list(self._urls)

    def deliver(self, message: AlertMessage, only: Collection[str] | None = None) -> list[str]:
        """Send ``message`` to every target (or only those in ``only``); return the failed target ids.

        Never raises: a delivery error (refused connection, HTTP error, timeout, a bug inside
        apprise) is logged and reported as a failed target.  Targets in ``only`` that are no
        longer configured are dropped (they cannot be retried).
        """
        import apprise

        title, body = scrub(message.title), scrub(message.body)
        wanted = [tid for tid in self._urls if only is None or tid in only]
        if not self._urls:
            log.warning("no ATS_ALERT_URLS configured; alert not sent: %s — %s", title, body.replace("\n", " | "))
            return []
        failed: list[str] = []
        for tid in wanted:
            ok = False
            try:
                sender = apprise.Apprise(asset=apprise.AppriseAsset(app_id="ats", app_desc="ats alerts"))
                if sender.add(self._urls[tid]):
                    ok = bool(sender.notify(body=body, title=title, notify_type=_notify_type(message.kind)))
                else:
                    log.error("alert target %s: apprise cannot parse this URL (check ATS_ALERT_URLS)", tid)
            except Exception as exc:  # noqa: BLE001 - a notification must never fail the caller
                log.error("alert target %s: delivery raised %s", tid, type(exc).__name__)
            if ok:
                log.info("alert %r delivered to target %s", title, tid)
            else:
                log.warning("alert %r NOT delivered to target %s", title, tid)
                failed.append(tid)
        return failed


def send(title: str, body: str, kind: str = "info", *, urls: Sequence[str] | None = None) -> bool:
    """Send one notification to every ``ATS_ALERT_URLS`` target (or ``urls``).

    Returns ``True`` when every target accepted it (or none is configured); ``False`` when any
    target failed.  Never raises on a delivery failure.
    """
    return not Notifier(urls).deliver(AlertMessage(kind, title, body))


def send_message(message: AlertMessage, *, urls: Sequence[str] | None = None) -> bool:
    """:func:`send` for a built :class:`AlertMessage`."""
    return send(message.title, message.body, message.kind, urls=urls)


# ------------------------------------------------------------------------------------ formatting

def fmt_time(moment: datetime) -> str:
    """``2026-11-24 06:30:00 UTC (01:30 America/New_York)``."""
    utc = moment.astimezone(ZoneInfo("UTC"))
    ny = moment.astimezone(_NEW_YORK)
    return f"{utc:%Y-%m-%d %H:%M:%S} UTC ({ny:%H:%M} America/New_York)"


def fmt_duration(delta: timedelta) -> str:
    """``1 h 05 min 30 s`` / ``4 min 10 s`` / ``12 s``."""
    seconds = max(0, int(round(delta.total_seconds())))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min {secs:02d} s"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def _gateway_line(mode: str, host: str, port: int, account: str | None) -> str:
    return f"Gateway: {mode} at {host}:{port}, account {mask_account(account)}"


_REASON_TEXT = {
    "refused": "connection refused (the gateway is not listening)",
    "timeout": "no answer within the probe timeout",
    "handshake_failed": "the API handshake failed",
    "wrong_account": "the gateway reports an account that does not match the mode",
    "ib_disconnected": "the gateway lost its connection to IB (error 1100), seen by the running session",
    "ok": "ok",
}


def reason_text(reason: str | None, detail: str = "") -> str:
    text = _REASON_TEXT.get(reason or "", reason or "unknown")
    return f"{text}: {detail}" if detail else text


def gateway_broken(mode: str, host: str, port: int, account: str | None, reason: str | None,
                   since: datetime, failures: int, detail: str = "",
                   after_window: str | None = None) -> AlertMessage:
    """healthy→broken after K failed probes (or still broken when a maintenance window ended)."""
    lines = [
        _gateway_line(mode, host, port, account),
        f"Reason: {reason_text(reason, detail)}",
        f"Broken since: {fmt_time(since)} ({failures} failed probe{'s' if failures != 1 else ''} in a row)",
    ]
    if after_window:
        lines.append(f"Still broken after the {after_window} window ended.")
    lines.append("Check the gateway (VNC on 127.0.0.1:5900, a pending 2FA approval, IBC logs).")
    return AlertMessage("gateway_broken", f"ats: {mode} IB gateway is DOWN", "\n".join(lines))


def gateway_recovered(mode: str, host: str, port: int, account: str | None, since: datetime,
                      recovered_at: datetime, latency_ms: float | None = None) -> AlertMessage:
    """broken→healthy, with the outage's duration."""
    lines = [
        _gateway_line(mode, host, port, account),
        f"Recovered at: {fmt_time(recovered_at)}",
        f"Outage: {fmt_duration(recovered_at - since)} (down since {fmt_time(since)})",
    ]
    if latency_ms is not None:
        lines.append(f"Handshake latency: {latency_ms:.0f} ms")
    return AlertMessage("gateway_recovered", f"ats: {mode} IB gateway recovered", "\n".join(lines))


def gateway_reminder(mode: str, host: str, port: int, account: str | None, reason: str | None,
                     since: datetime, now: datetime, failures: int, detail: str = "") -> AlertMessage:
    """Still broken: sent every R minutes while the outage lasts."""
    lines = [
        _gateway_line(mode, host, port, account),
        f"Still DOWN for {fmt_duration(now - since)} (since {fmt_time(since)}), {failures} failed probes",
        f"Last reason: {reason_text(reason, detail)}",
    ]
    return AlertMessage("gateway_reminder", f"ats: {mode} IB gateway still down", "\n".join(lines))


def gateway_wrong_account(mode: str, host: str, port: int, expected: str | None,
                          reported: Sequence[str], at: datetime) -> AlertMessage:
    """The gateway on ``mode``'s port reports an account of the other mode (or not the configured one)."""
    shown = ", ".join(mask_account(a) for a in reported) or "(none)"
    form = "a live U… account" if mode == "live" else "a paper DU… account"
    lines = [
        f"Gateway: {mode} at {host}:{port}",
        f"Reported account(s): {shown}; expected {form}"
        + (f" ({mask_account(expected)})" if expected else ""),
        f"Seen at: {fmt_time(at)}",
        "Nothing will trade through this gateway until the account matches the mode.",
    ]
    return AlertMessage("gateway_wrong_account", f"ats: WRONG ACCOUNT on the {mode} gateway", "\n".join(lines))


def go_live(account: str | None, sleeves: Sequence[str], actor: str, host: str = "", port: int | None = None) -> AlertMessage:
    """A live session is starting (after every gate passed)."""
    lines = [f"Account: {mask_account(account)}", f"Sleeves: {', '.join(sleeves) or '(none)'}",
             f"Confirmed by: {actor}"]
    if host and port:
        lines.insert(0, f"Gateway: live at {host}:{port}")
    return AlertMessage("go_live", "ats: LIVE trading session starting", "\n".join(lines))


def kill_switch(mode: str, reason: str, actor: str, session_id: str | None = None) -> AlertMessage:
    """The kill switch was pulled."""
    lines = [f"Mode: {mode}", f"Reason: {reason}", f"By: {actor}"]
    if session_id:
        lines.append(f"Session: {session_id}")
    return AlertMessage("kill_switch", f"ats: KILL SWITCH ({mode})", "\n".join(lines))


def session_ended(mode: str, session_id: str, status: str, reason: str | None = None,
                  summary: dict[str, object] | None = None) -> AlertMessage:
    """A trading session ended (stopped, killed or in error)."""
    lines = [f"Mode: {mode}", f"Session: {session_id}", f"Status: {status}"]
    if reason:
        lines.append(f"Reason: {reason}")
    for key, value in (summary or {}).items():
        lines.append(f"{key}: {value}")
    return AlertMessage("session_ended", f"ats: {mode} session {status}", "\n".join(lines))

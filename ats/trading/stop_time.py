"""When a session stops: the ``--for`` and ``--until`` rules and the XNYS market close.

A session stops at ``--until`` (a New York time of day or an ISO date-time), after ``--for``
(counted from the moment its node is running), or else at today's market close.  A stop time
already past, a day the exchange does not trade and a duration over a week are refused before
anything connects.  :func:`describe_stop` puts the rule in words for the summary the operator
confirms.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from zoneinfo import ZoneInfo

from ats.core.errors import InputError

NEW_YORK = ZoneInfo("America/New_York")
MAX_SESSION_SECONDS = 7 * 24 * 3600
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | float | None) -> float | None:
    """``--for``: ``90s``, ``15m``, ``1h30m``, ``2d`` or plain seconds (``90``) → seconds.

    Refuses zero, negative and anything over a week (a typo must not run a session for years).
    """
    if text is None:
        return None
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        raw = text.strip().lower().replace(" ", "")
        try:
            seconds = float(raw)
        except ValueError:
            parts = re.fullmatch(r"((\d+(\.\d+)?)([smhd]))+", raw)
            if not parts:
                raise InputError(f"--for {text!r}: expected a duration such as 90s, 15m, 1h30m or plain seconds") from None
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)([smhd])", raw))
    if not math.isfinite(seconds) or seconds <= 0:
        raise InputError(f"--for {text!r}: a session must run for more than 0 s")
    if seconds > MAX_SESSION_SECONDS:
        raise InputError(f"--for {text!r}: at most 7 days; give --until for a fixed end")
    return seconds


def resolve_stop_time(until: str | None, now: dt.datetime | None = None, *,
                      for_seconds: float | None = None) -> dt.datetime | None:
    """When a session stops: ``until``, else today's close.  Refuses a stop time that is already
    past and a day the exchange does not trade (without ``--until``): a session never runs on
    with no stop at all.

    With ``for_seconds`` there is no absolute stop time (``None``): the session stops
    ``for_seconds`` after its node is running (see :meth:`ats.trading.supervisor.SessionGuard.start_timers`).
    """
    if for_seconds is not None:
        if until:
            raise InputError("give either --until or --for, not both")
        parse_duration(for_seconds)
        return None
    return absolute_stop_time(until, now)


def absolute_stop_time(until: str | None, now: dt.datetime | None = None) -> dt.datetime:
    """:func:`resolve_stop_time` without ``--for``: ``until``, else today's close (refusals included)."""
    now = now or dt.datetime.now(dt.UTC)
    if until:
        stop_at = parse_until(until, now)
        if stop_at <= now:
            raise InputError(f"--until {until!r} is already past ({stop_at:%Y-%m-%d %H:%M} UTC): give a later time")
        return stop_at
    close = market_close_today(now)
    if close is None:
        raise InputError("the exchange does not trade today: no market close to stop at; give --until HH:MM or a date-time")
    if close <= now:
        raise InputError(f"today's market close ({close:%H:%M} UTC) has passed; give --until to run after it")
    return close


def check_stop_request(until: str | None, for_seconds: float | None) -> None:
    """What can be refused before any gate: an explicit ``--until`` already past, a bad
    ``--for``, or both.  With neither, the default stop (today's market close) is resolved when
    the session starts, after the gates — so a refused gate is reported (and audited) as such
    at any hour, and a closed market is refused only for a session that would start."""
    if until or for_seconds is not None:
        resolve_stop_time(until, for_seconds=for_seconds)


def parse_until(until: str, now: dt.datetime | None = None) -> dt.datetime:
    """``HH:MM`` (America/New_York, today) or an ISO datetime (New York if no zone) → UTC."""
    now = now or dt.datetime.now(dt.UTC)
    text = until.strip()
    try:
        if len(text) <= 5 and ":" in text:
            hour, minute = (int(p) for p in text.split(":"))
            local_now = now.astimezone(NEW_YORK)
            target = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
            return target.astimezone(dt.UTC)
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--until {until!r}: expected HH:MM (America/New_York) or an ISO date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=NEW_YORK)
    return parsed.astimezone(dt.UTC)


def market_close_today(now: dt.datetime | None = None) -> dt.datetime | None:
    """Today's close of XNYS (early closes included) in UTC, or None when it is not a session day."""
    import exchange_calendars as xcals
    import pandas as pd

    now = now or dt.datetime.now(dt.UTC)
    calendar = xcals.get_calendar("XNYS")
    day = pd.Timestamp(now.astimezone(NEW_YORK).date())
    if not calendar.is_session(day):
        return None
    return calendar.session_close(day).to_pydatetime()


def describe_stop(until: str | None, for_seconds: float | None = None) -> str:
    """The stop rule in words, for the summary the operator confirms."""
    if for_seconds is not None:
        return f"{_fmt_seconds(for_seconds)} from the moment the node is running (--for)"
    try:
        stop_at = absolute_stop_time(until)
    except InputError as exc:
        return f"(refused: {exc})"
    return (f"{stop_at.astimezone(NEW_YORK):%Y-%m-%d %H:%M} America/New_York ({stop_at:%H:%M} UTC)"
            + ("" if until else ", the market close"))


def _fmt_seconds(seconds: float) -> str:
    whole = int(seconds)
    if whole != seconds or whole < 60:
        return f"{seconds:g} s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return " ".join(f"{n} {u}" for n, u in ((hours, "h"), (minutes, "min"), (secs, "s")) if n)

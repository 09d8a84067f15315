"""When the gateway-health check probes, alerts and keeps quiet: :class:`HealthPolicy`.

Its own module (no store, no probe) so that :mod:`ats.core.settings` can take it as its ``health``
section: ``settings.health`` is the validated policy, each field an ``ATS_HEALTH_<FIELD>`` variable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES: tuple[str, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class HealthPolicy(BaseModel):
    """How the health check probes, when it alerts, and when it keeps quiet.

    Every field maps to an ``ATS_HEALTH_<FIELD>`` setting: ``settings.health`` is this policy.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    interval_seconds: float = Field(
        default=3.0, gt=0, le=3600, allow_inf_nan=False,
        description="Seconds between the gateway-health watch's probes (one API handshake each), at most 3600. Default 3.")
    failures_to_alert: int = Field(default=2, ge=1, description="K: consecutive failed probes before the broken alert. Default 2.")
    reminder_minutes: float = Field(
        default=15.0, gt=0, le=10080, allow_inf_nan=False,
        description="R: minutes between reminders while broken, at most 10080 (a week). Default 15.")
    probe_timeout_seconds: float = Field(
        default=10.0, gt=0, le=3600, allow_inf_nan=False,
        description="Whole-handshake timeout of one probe, seconds, at most 3600. Default 10.")
    probe_client_id: int = Field(default=977, ge=0, le=2**31 - 1,
                                 description="API client id of the probe connection (a 32-bit integer). Default 977.")
    restart_timezone: str = Field(default="America/New_York", description="Timezone of the IBC restart times.")
    daily_restart_time: time | None = Field(
        default=time(23, 45), description="IBC AutoRestartTime (local to restart_timezone); None: no daily window. Default 23:45.")
    daily_restart_tolerance_minutes: float = Field(
        default=10.0, ge=0, le=720, allow_inf_nan=False,
        description="The daily window is the restart time ± this many minutes, at most 720 (half a day). Default 10.")
    weekly_restart_day: Weekday | None = Field(
        default="sun", description="Day of IBC's weekly cold restart (mon…sun); None: no weekly window. Default sun.")
    weekly_restart_time: time = Field(default=time(7, 5), description="IBC ColdRestartTime (local). Default 07:05.")
    weekly_restart_tolerance_minutes: float = Field(
        default=30.0, ge=0, le=1440, allow_inf_nan=False,
        description="The weekly window is the cold restart time ± this many minutes (2FA), at most 1440 (a day). Default 30.")
    history_days: int = Field(default=14, ge=1, le=3660,
                              description="Days of probe history kept in gateway_probes, at most 3660 (ten years). Default 14.")

    @field_validator("restart_timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except Exception as exc:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value

    @field_validator("weekly_restart_day", mode="before")
    @classmethod
    def _day(cls, value: object) -> object:
        # mon…sun, or the day's full name; anything else is refused as given ("funday", not "fun").
        if value in ("", None):
            return None
        day = str(value).strip().lower()
        return day[:3] if day in _WEEKDAYS or day in _DAY_NAMES else value

    @field_validator("daily_restart_time", mode="before")
    @classmethod
    def _optional_time(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def reminder(self) -> timedelta:
        return timedelta(minutes=self.reminder_minutes)

    def window_at(self, moment: datetime) -> MaintenanceWindow | None:
        """The maintenance window ``moment`` falls in, if any (the later-ending one if two overlap)."""
        tz = ZoneInfo(self.restart_timezone)
        local_day = moment.astimezone(tz).date()
        found: list[MaintenanceWindow] = []
        for offset in (-1, 0, 1):
            day = local_day + timedelta(days=offset)
            if self.daily_restart_time is not None:
                found.append(_window("IBC daily restart", day, self.daily_restart_time,
                                     self.daily_restart_tolerance_minutes, tz))
            if self.weekly_restart_day is not None and day.weekday() == _WEEKDAYS.index(self.weekly_restart_day):
                found.append(_window("IBC weekly cold restart", day, self.weekly_restart_time,
                                     self.weekly_restart_tolerance_minutes, tz))
        inside = [w for w in found if w.contains(moment)]
        return max(inside, key=lambda w: w.end) if inside else None


@dataclass(frozen=True)
class MaintenanceWindow:
    """A time range in which a gateway restart is expected."""

    name: str
    start: datetime
    end: datetime

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def _window(name: str, day: date, at: time, tolerance_minutes: float, tz: ZoneInfo) -> MaintenanceWindow:
    centre = datetime.combine(day, at, tzinfo=tz)
    tolerance = timedelta(minutes=tolerance_minutes)
    return MaintenanceWindow(name, (centre - tolerance).astimezone(UTC), (centre + tolerance).astimezone(UTC))

"""When the gateway-health check probes, alerts and keeps quiet: :class:`HealthPolicy`.

Its own module (no store, no probe) so that :mod:`ats.settings` can take the ``ATS_HEALTH_*``
defaults from it: one place for each default.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class HealthPolicy(BaseModel):
    """How the health check probes, when it alerts, and when it keeps quiet.

    Every field maps to an ``ATS_HEALTH_<FIELD>`` setting (see :meth:`from_settings`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    interval_seconds: float = Field(30.0, gt=0, description="Seconds between scheduled health checks. Default 30.")
    failures_to_alert: int = Field(2, ge=1, description="K: consecutive failed probes before the broken alert. Default 2.")
    reminder_minutes: float = Field(15.0, gt=0, description="R: minutes between reminders while broken. Default 15.")
    probe_timeout_seconds: float = Field(10.0, gt=0, description="Whole-handshake timeout of one probe, seconds. Default 10.")
    probe_client_id: int = Field(977, ge=0, description="API client id of the probe connection. Default 977.")
    restart_timezone: str = Field("America/New_York", description="Timezone of the IBC restart times.")
    daily_restart_time: time | None = Field(
        time(23, 45), description="IBC AutoRestartTime (local to restart_timezone); None: no daily window. Default 23:45.")
    daily_restart_tolerance_minutes: float = Field(
        10.0, ge=0, description="The daily window is the restart time ± this many minutes. Default 10.")
    weekly_restart_day: Weekday | None = Field(
        "sun", description="Day of IBC's weekly cold restart (mon…sun); None: no weekly window. Default sun.")
    weekly_restart_time: time = Field(time(7, 5), description="IBC ColdRestartTime (local). Default 07:05.")
    weekly_restart_tolerance_minutes: float = Field(
        30.0, ge=0, description="The weekly window is the cold restart time ± this many minutes (2FA). Default 30.")
    history_days: int = Field(14, ge=1, description="Days of probe history kept in gateway_probes. Default 14.")

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
    def _day(cls, value: Any) -> Any:
        if value in ("", None):
            return None
        return str(value).strip().lower()[:3]

    @field_validator("daily_restart_time", mode="before")
    @classmethod
    def _optional_time(cls, value: Any) -> Any:
        return None if value == "" else value

    @classmethod
    def from_settings(cls, settings: Any = None) -> HealthPolicy:
        """The policy from ``ATS_HEALTH_*`` settings where they exist (defaults otherwise)."""
        if settings is None:
            from ats.settings import get_settings

            settings = get_settings()
        values = {name: getattr(settings, f"health_{name}") for name in cls.model_fields
                  if hasattr(settings, f"health_{name}")}
        return cls(**values)

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

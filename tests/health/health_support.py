"""Helpers for the gateway-health tests: a local alert endpoint, a settable clock, settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ats.alert_sink import AlertEndpoint  # noqa: F401 - re-exported for the tests


@dataclass
class FakeClock:
    """A clock the test moves by hand: ``clock()`` returns ``now``."""

    now: datetime = field(default_factory=lambda: datetime(2026, 11, 24, 19, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def make_settings(data_dir: Path, **env: str):  # noqa: ANN201
    """Settings from ``env`` only (ATS_ prefix added), no .env file."""
    from ats.settings import load_settings

    full = {"ATS_DATA_DIR": str(data_dir)}
    full.update({f"ATS_{k.upper()}": v for k, v in env.items()})
    return load_settings(env=full, dotenv=data_dir / "no.env")

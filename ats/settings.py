"""Settings: every ``ATS_*`` variable, read from the environment and ``.env``.

Validated at the edge: a bad value raises :class:`ats.errors.ConfigError` with one line that
names the variable and says what it expects; an unknown ``ATS_*`` variable is refused with
the closest known name (a typo in a risk cap must not silently fall back to the default).
Environment variables win over ``.env`` entries.
"""

from __future__ import annotations

import difflib
import getpass
import os
import re
import socket
from functools import lru_cache
from datetime import time as dt_time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ats.errors import ConfigError
from ats.health_policy import HealthPolicy

ENV_PREFIX = "ATS_"
LIVE_ACCOUNT_RE = re.compile(r"^U\d+$")
PAPER_ACCOUNT_RE = re.compile(r"^DU\d+$")
RATE_RE = re.compile(r"^([1-9]\d*)/(\d{2}):([0-5]\d):([0-5]\d)$")

Mode = Literal["paper", "live"]


def _default_operator() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def mask_account(account_id: str | None) -> str:
    """Mask an IB account id for display and alerts: ``U1234567`` → ``U***4567``."""
    if not account_id:
        return "(not set)"
    prefix = "DU" if account_id.startswith("DU") else account_id[:1]
    tail = account_id[-4:] if len(account_id) > len(prefix) + 4 else ""
    return f"{prefix}***{tail}"


def check_account_id(account_id: str, mode: Mode) -> str:
    """Return ``account_id`` if it has the form of ``mode`` (paper: ``DU``+digits, live: ``U``+digits)."""
    from ats.errors import InputError

    pattern, form = (PAPER_ACCOUNT_RE, "DU followed by digits") if mode == "paper" else (
        LIVE_ACCOUNT_RE, "U followed by digits")
    if not pattern.match(account_id or ""):
        raise InputError(
            f"{mode} account id {mask_account(account_id)!s} is not a {mode} account: expected {form}"
        )
    return account_id


def _health_default(name: str) -> Any:
    """A settings field with the default and description of ``HealthPolicy.<name>``."""
    policy_field = HealthPolicy.model_fields[name]
    return Field(policy_field.default, description=policy_field.description)


class ModeSettings:
    """The settings of one trading mode (paper or live), gathered for the node and the gates."""

    def __init__(self, mode: Mode, host: str, port: int, account_id: str | None,
                 max_notional_per_order: int, max_order_submit_rate: str) -> None:
        self.mode = mode
        self.host = host
        self.port = port
        self.account_id = account_id
        self.max_notional_per_order = max_notional_per_order
        self.max_order_submit_rate = max_order_submit_rate

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "host": self.host,
            "port": self.port,
            "account": mask_account(self.account_id),
            "max_notional_per_order": self.max_notional_per_order,
            "max_order_submit_rate": self.max_order_submit_rate,
        }


class Settings(BaseSettings):
    """All ats settings.  Each field is ``ATS_<FIELD NAME>`` in the environment or ``.env``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        # Other keys in .env (the compose variables of infra/.env.example) are ignored; unknown
        # ATS_* keys are refused by _check_unknown_variables.
        extra="ignore",
        frozen=True,
        case_sensitive=False,
    )

    # Edition and identity
    enable_live_trading: bool = Field(False, description="Edition flag: false = no live deployment, ats.live refuses.")
    operator: str = Field(default_factory=_default_operator, description="Who is acting (audit actor). Default user@host.")
    data_dir: Path = Field(Path("./.ats"), description="Where the SQLite store, catalog and reports live.")
    node_id: str = Field("001", description="Tag of the trader ids ATS-PAPER-<id> / ATS-LIVE-<id> (Redis key prefix).")

    # Gateways
    ib_host: str = Field("127.0.0.1", description="IB gateway host.")
    ib_paper_port: int = Field(4002, description="Paper gateway API port.")
    ib_live_port: int = Field(4001, description="Live gateway API port.")
    ib_paper_account_id: str | None = Field(None, description="Paper account id, DU followed by digits.")
    ib_live_account_id: str | None = Field(None, description="Live account id, U followed by digits.")
    gateway_start_timeout_seconds: float = Field(180.0, gt=0, description="Swap: seconds for the started gateway to answer (2FA included).")
    gateway_controller: Literal["sim", "docker", "external"] = Field(
        "sim", description="sim (embedded simulator), docker (infra/docker-compose.yml) or external (verify only).")

    # Risk caps (Nautilus RiskEngine)
    paper_risk_max_notional_per_order: int = Field(25_000, description="Paper cap per order, USD.")
    live_risk_max_notional_per_order: int = Field(5_000, description="Live cap per order, USD.")
    paper_risk_max_order_submit_rate: str = Field("100/00:00:01", description="Paper submit rate N/HH:MM:SS.")
    live_risk_max_order_submit_rate: str = Field("2/00:00:01", description="Live submit rate N/HH:MM:SS.")

    # Services
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite file under the data dir.")
    redis_url: str | None = Field(None, description="Optional Redis URL for the Nautilus cache.")
    alert_urls: str = Field("", description="Apprise URLs, comma separated (secret: may carry tokens).")

    # Research ladder thresholds
    ladder_min_trades: int = Field(20, description="Backtest rung: minimum completed trades.")
    ladder_max_drawdown: float = Field(0.35, description="Backtest rung: maximum drawdown, fraction of equity.")
    ladder_paper_min_days: int = Field(10, description="Paper rung: minimum trading days on paper.")
    ladder_paper_min_trades: int = Field(10, description="Paper rung: minimum completed paper trades.")
    ladder_parity_min: float = Field(0.95, description="Paper rung: minimum paper/backtest decision match ratio.")

    # Gateway health: ATS_HEALTH_<FIELD> for every field of ats.health_policy.HealthPolicy, with its
    # default and meaning (validated by the policy itself in _health_policy below).
    health_interval_seconds: float = _health_default("interval_seconds")
    health_failures_to_alert: int = _health_default("failures_to_alert")
    health_reminder_minutes: float = _health_default("reminder_minutes")
    health_probe_timeout_seconds: float = _health_default("probe_timeout_seconds")
    health_probe_client_id: int = _health_default("probe_client_id")
    health_restart_timezone: str = _health_default("restart_timezone")
    health_daily_restart_time: dt_time | None = _health_default("daily_restart_time")
    health_daily_restart_tolerance_minutes: float = _health_default("daily_restart_tolerance_minutes")
    health_weekly_restart_day: str | None = _health_default("weekly_restart_day")
    health_weekly_restart_time: dt_time = _health_default("weekly_restart_time")
    health_weekly_restart_tolerance_minutes: float = _health_default("weekly_restart_tolerance_minutes")
    health_history_days: int = _health_default("history_days")

    @field_validator("health_daily_restart_time", "health_weekly_restart_day", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _health_policy(self) -> Settings:
        try:
            HealthPolicy.from_settings(self)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = f"health_{error['loc'][0]}" if error.get("loc") else "health"
            raise ValueError(f"{env_name(field)}: {error.get('msg', 'invalid').removeprefix('Value error, ')}") from None
        return self

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9]{1,16}$", value):
            raise ValueError("expected 1 to 16 letters or digits, e.g. 001")
        return value

    @field_validator("ib_paper_port", "ib_live_port")
    @classmethod
    def _port_range(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError("expected a TCP port between 1 and 65535")
        return value

    @field_validator("ib_live_account_id")
    @classmethod
    def _live_account(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not LIVE_ACCOUNT_RE.match(value):
            raise ValueError("expected a live account id: U followed by digits (a DU… id is a paper account)")
        return value

    @field_validator("ib_paper_account_id")
    @classmethod
    def _paper_account(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not PAPER_ACCOUNT_RE.match(value):
            raise ValueError("expected a paper account id: DU followed by digits")
        return value

    @field_validator("paper_risk_max_order_submit_rate", "live_risk_max_order_submit_rate")
    @classmethod
    def _rate(cls, value: str) -> str:
        if not RATE_RE.match(value):
            raise ValueError("expected a Nautilus rate N/HH:MM:SS, e.g. 2/00:00:01")
        return value

    @field_validator("paper_risk_max_notional_per_order", "live_risk_max_notional_per_order",
                     "ladder_min_trades", "ladder_paper_min_days", "ladder_paper_min_trades")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("expected a number greater than 0")
        return value

    @field_validator("ladder_max_drawdown", "ladder_parity_min")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0 < value <= 1:
            raise ValueError("expected a fraction greater than 0 and at most 1")
        return value

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError("expected an SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user@host/db")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        # The node takes host and port from this URL and falls back to 127.0.0.1:6379 for
        # anything it cannot parse: a typo must fail here, not silently use another Redis.
        if value in (None, ""):
            return None
        from urllib.parse import urlsplit

        expected = "expected a Redis URL: redis://[:password@]host[:port][/db] (rediss:// for TLS)"
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
        except ValueError:
            raise ValueError(expected) from None
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError(expected)
        return value

    @model_validator(mode="after")
    def _distinct_ports(self) -> Settings:
        if self.ib_paper_port == self.ib_live_port:
            raise ValueError("ATS_IB_LIVE_PORT must differ from ATS_IB_PAPER_PORT (one gateway per mode)")
        return self

    # Derived views -----------------------------------------------------------------------
    @property
    def alert_url_list(self) -> list[str]:
        return [url.strip() for url in self.alert_urls.split(",") if url.strip()]

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ats.sqlite3').resolve()}"

    def mode(self, mode: Mode) -> ModeSettings:
        """The host, port, account and risk caps of ``mode``."""
        if mode == "paper":
            return ModeSettings("paper", self.ib_host, self.ib_paper_port, self.ib_paper_account_id,
                                self.paper_risk_max_notional_per_order, self.paper_risk_max_order_submit_rate)
        return ModeSettings("live", self.ib_host, self.ib_live_port, self.ib_live_account_id,
                            self.live_risk_max_notional_per_order, self.live_risk_max_order_submit_rate)

    def display(self) -> dict[str, Any]:
        """Effective settings for ``ats config show``: account ids masked, secrets hidden."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name.endswith("account_id"):
                value = mask_account(value)
            elif name in SECRET_FIELDS:
                value = "(hidden)" if value else "(not set)"
            elif isinstance(value, Path):
                value = str(value)
            shown[env_name(name)] = value
        shown["ATS_DATABASE_URL"] = _hide_password(self.resolved_database_url)
        return shown


SECRET_FIELDS = frozenset({"alert_urls", "redis_url"})


def _hide_password(url: str) -> str:
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def _known_env_names() -> set[str]:
    return {env_name(name) for name in Settings.model_fields}


def _read_dotenv_keys(path: Path) -> list[str]:
    if not path.is_file():
        return []
    keys = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key = line.split("=", 1)[0].strip().removeprefix("export ").strip()
        keys.append(key)
    return keys


def _check_unknown_variables(env: dict[str, str], dotenv: Path) -> None:
    known = _known_env_names()
    for key in [*env, *_read_dotenv_keys(dotenv)]:
        upper = key.upper()
        if upper.startswith(ENV_PREFIX) and upper not in known:
            close = difflib.get_close_matches(upper, sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else "; see `ats config show` for the known ones"
            raise ConfigError(f"{upper}: unknown ats variable{hint}")


def load_settings(env: dict[str, str] | None = None, dotenv: Path | str = ".env") -> Settings:
    """Build :class:`Settings` from ``env`` (default ``os.environ``) and the ``dotenv`` file.

    Raises :class:`ConfigError` with one line naming the first bad variable.
    """
    env = dict(os.environ if env is None else env)
    dotenv = Path(dotenv)
    _check_unknown_variables(env, dotenv)
    saved = os.environ.copy()
    try:
        if env is not os.environ:
            os.environ.clear()
            os.environ.update(env)
        return Settings(_env_file=dotenv if dotenv.is_file() else None)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _one_line(exc: ValidationError) -> str:
    error = exc.errors()[0]
    loc = error.get("loc") or ()
    message = error.get("msg", "invalid value").removeprefix("Value error, ")
    if not loc:
        return message
    field = str(loc[0])
    value = error.get("input")
    # Account ids, secrets and URLs that may carry a password are never echoed.
    shown = "account" not in field and field not in SECRET_FIELDS and field != "database_url"
    got = f" (got {value!r})" if isinstance(value, (str, int, float)) and shown else ""
    if error.get("type") == "extra_forbidden":
        return f"{env_name(field)}: unknown ats variable in .env"
    return f"{env_name(field)}: {message}{got}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once.  Tests call ``get_settings.cache_clear()``."""
    return load_settings()

"""Settings: every ``ATS_*`` variable, read from the environment and ``.env``, nested by domain.

As Prefect's ``PREFECT_SERVER_API_HOST`` is ``settings.server.api.host``, ``ATS_IB_PAPER_PORT`` is
``settings.ib.paper_port``: the variable is ``ATS_`` + the section + ``_`` + the field, upper case.
The sections (one frozen model each):

* top level: ``enable_live_trading``, ``operator``, ``data_dir``, ``node_id``, ``database_url``,
  ``redis_url``, ``alert_urls`` (with ``resolved_database_url``, ``alert_url_list`` and
  :meth:`Settings.mode`);
* ``ib`` (:class:`IBSettings`, ``ATS_IB_*``): the gateways' host, ports and account ids;
* ``gateway`` (:class:`GatewaySettings`, ``ATS_GATEWAY_*``): which controller starts them, and its timeout;
* ``session`` (:class:`SessionSettings`, ``ATS_SESSION_*``): a session's start-up deadline;
* ``paper_risk`` / ``live_risk`` (:class:`PaperRiskSettings`, :class:`LiveRiskSettings`,
  ``ATS_PAPER_RISK_*`` / ``ATS_LIVE_RISK_*``): Nautilus' risk caps of each mode;
* ``audit`` (:class:`AuditSettings`, ``ATS_AUDIT_*``): the audit key and anchor files (and their resolved paths);
* ``ladder`` (:class:`LadderSettings`, ``ATS_LADDER_*``): the research ladder's thresholds;
* ``health`` (:class:`ats.core.health_policy.HealthPolicy`, ``ATS_HEALTH_*``): the gateway-health policy itself.

Validated at the edge: a bad value raises :class:`ats.core.errors.ConfigError` with one line that
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
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ats.core.accounts import account_problem
from ats.core.errors import ConfigError
from ats.core.health_policy import HealthPolicy
from ats.core.masking import display_url, mask_account  # the rule lives there (stdlib only); ats imports it from here

ENV_PREFIX = "ATS_"
RATE_RE = re.compile(r"^([1-9]\d*)/(\d{2}):([0-5]\d):([0-5]\d)\Z", re.ASCII)
# Nautilus' order throttler takes the rate's N as a C int and refuses a zero interval.
RATE_LIMIT_MAX = 2**31 - 1
# The audit log's actor column (String(200); PostgreSQL enforces the length).
OPERATOR_MAX_CHARS = 200

Mode = Literal["paper", "live"]


def _default_operator() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def validate_operator(value: str) -> str:
    """Who is acting (an audit actor): 1–200 printable characters, not blank.  ``ATS_OPERATOR``
    and the operator named in a Prefect form (the ``kill-switch`` deployment) both pass here."""
    if not value.strip():
        raise ValueError("expected who is acting, e.g. alice@desk (got an empty name)")
    if any(not ch.isprintable() for ch in value):
        raise ValueError("expected who is acting, without control characters, e.g. alice@desk")
    if len(value) > OPERATOR_MAX_CHARS:
        raise ValueError(f"expected at most {OPERATOR_MAX_CHARS} characters (the audit log's actor), got {len(value)}")
    return value


def _account(value: str | None, mode: Mode) -> str | None:
    if value in (None, ""):
        return None
    problem = account_problem(value, mode)
    if problem:
        raise ValueError(problem)
    return value


def _positive(value: int) -> int:
    if value <= 0:
        raise ValueError("expected a number greater than 0")
    return value


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


# Sections ------------------------------------------------------------------------------------
# Each is ATS_<SECTION>_<FIELD>; extra="forbid" backs the unknown-variable check of load_settings.
SECTION_CONFIG = ConfigDict(frozen=True, extra="forbid")


class IBSettings(BaseModel):
    """``ATS_IB_*``: the IB gateways, one per mode, on one host."""

    model_config = SECTION_CONFIG

    host: str = Field(default="127.0.0.1", min_length=1, max_length=80,
                      description="IB gateway host (at most 80 characters: host:port is stored in 100).")
    paper_port: int = Field(default=4002, description="Paper gateway API port.")
    live_port: int = Field(default=4001, description="Live gateway API port.")
    paper_account_id: str | None = Field(default=None, description="Paper account id, DU followed by digits.")
    live_account_id: str | None = Field(default=None, description="Live account id, U followed by digits.")

    @field_validator("paper_port", "live_port")
    @classmethod
    def _port_range(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError("expected a TCP port between 1 and 65535")
        return value

    @field_validator("live_account_id")
    @classmethod
    def _live_account(cls, value: str | None) -> str | None:
        return _account(value, "live")

    @field_validator("paper_account_id")
    @classmethod
    def _paper_account(cls, value: str | None) -> str | None:
        return _account(value, "paper")

    @model_validator(mode="after")
    def _distinct_ports(self) -> IBSettings:
        if self.paper_port == self.live_port:
            raise ValueError("ATS_IB_LIVE_PORT must differ from ATS_IB_PAPER_PORT (one gateway per mode)")
        return self


class GatewaySettings(BaseModel):
    """``ATS_GATEWAY_*``: how the gateways are started (and swapped)."""

    model_config = SECTION_CONFIG

    controller: Literal["sim", "docker", "external"] = Field(
        default="sim", description="sim (embedded simulator), docker (infra/docker-compose.yml) or external (verify only).")
    start_timeout_seconds: float = Field(
        default=180.0, gt=0, le=3600, allow_inf_nan=False,
        description="Swap: seconds for the started gateway to answer (2FA included), at most 3600.")


class SessionSettings(BaseModel):
    """``ATS_SESSION_*``: a trading session's start-up."""

    model_config = SECTION_CONFIG

    startup_timeout_seconds: float = Field(
        default=120.0, gt=0, le=3600, allow_inf_nan=False,
        description="Seconds a session's node has to connect, reconcile and start trading, else it ends in error.")


class RiskSettings(BaseModel):
    """Nautilus' RiskEngine caps of one mode; :class:`PaperRiskSettings` and :class:`LiveRiskSettings`
    give the defaults."""

    model_config = SECTION_CONFIG

    max_notional_per_order: int = Field(description="Cap per order, USD.")
    max_order_submit_rate: str = Field(description="Submit rate N/HH:MM:SS.")

    @field_validator("max_notional_per_order")
    @classmethod
    def _positive_cap(cls, value: int) -> int:
        return _positive(value)

    @field_validator("max_order_submit_rate")
    @classmethod
    def _rate(cls, value: str) -> str:
        match = RATE_RE.match(value)
        if not match:
            raise ValueError("expected a Nautilus rate N/HH:MM:SS, e.g. 2/00:00:01")
        limit, hours, minutes, seconds = (int(part) for part in match.groups())
        if limit > RATE_LIMIT_MAX:
            raise ValueError(f"expected a Nautilus rate N/HH:MM:SS with N at most {RATE_LIMIT_MAX}")
        if hours == minutes == seconds == 0:
            raise ValueError("expected a Nautilus rate N/HH:MM:SS with an interval above 00:00:00, e.g. 2/00:00:01")
        return value


class PaperRiskSettings(RiskSettings):
    """``ATS_PAPER_RISK_*``: the paper caps."""

    max_notional_per_order: int = Field(default=25_000, description="Paper cap per order, USD.")
    max_order_submit_rate: str = Field(default="100/00:00:01", description="Paper submit rate N/HH:MM:SS.")


class LiveRiskSettings(RiskSettings):
    """``ATS_LIVE_RISK_*``: the live caps."""

    max_notional_per_order: int = Field(default=5_000, description="Live cap per order, USD.")
    max_order_submit_rate: str = Field(default="2/00:00:01", description="Live submit rate N/HH:MM:SS.")


class AuditSettings(BaseModel):
    """``ATS_AUDIT_*``: the audit log's integrity, kept apart from the data (see
    :mod:`ats.governance.audit_key`, :mod:`ats.governance.audit_anchor`)."""

    model_config = SECTION_CONFIG

    key_file: Path | None = Field(
        default=None, description="Secret key of the audit HMACs; default $XDG_CONFIG_HOME/ats/audit.key "
                                  "(~/.config/ats/audit.key), created 0600 on first use; never inside ATS_DATA_DIR.")
    anchor_file: Path | None = Field(
        default=None, description="Where the audit head is anchored on every append; default audit.anchor.json "
                                  "beside the key file.")

    @field_validator("key_file", "anchor_file", mode="before")
    @classmethod
    def _empty_path_is_default(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def resolved_key_file(self) -> Path:
        """ATS_AUDIT_KEY_FILE, or ``$XDG_CONFIG_HOME/ats/audit.key`` (``~/.config/ats/audit.key``)."""
        if self.key_file is not None:
            return self.key_file.expanduser().absolute()
        config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return (Path(config_home).expanduser() / "ats" / "audit.key").absolute()

    @property
    def resolved_anchor_file(self) -> Path:
        """ATS_AUDIT_ANCHOR_FILE, or ``audit.anchor.json`` beside the key file."""
        if self.anchor_file is not None:
            return self.anchor_file.expanduser().absolute()
        return self.resolved_key_file.with_name("audit.anchor.json")


class LadderSettings(BaseModel):
    """``ATS_LADDER_*``: the research ladder's thresholds (see :mod:`ats.research.ladder_rules`)."""

    model_config = SECTION_CONFIG

    min_trades: int = Field(default=20, description="Backtest rung: minimum completed trades.")
    max_drawdown: float = Field(default=0.35, description="Backtest rung: maximum drawdown, fraction of equity.")
    paper_min_days: int = Field(default=10, description="Paper rung: minimum trading days on paper.")
    paper_min_trades: int = Field(default=10, description="Paper rung: minimum completed paper trades.")
    parity_min: float = Field(default=0.95, description="Paper rung: minimum paper/backtest decision match ratio.")

    @field_validator("min_trades", "paper_min_days", "paper_min_trades")
    @classmethod
    def _positive_count(cls, value: int) -> int:
        return _positive(value)

    @field_validator("max_drawdown", "parity_min")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0 < value <= 1:
            raise ValueError("expected a fraction greater than 0 and at most 1")
        return value


class Settings(BaseSettings):
    """All ats settings: a top-level field is ``ATS_<FIELD>``, a section's field ``ATS_<SECTION>_<FIELD>``
    (``settings.ib.paper_port`` is ``ATS_IB_PAPER_PORT``), in the environment or ``.env``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        # ATS_PAPER_RISK_MAX_NOTIONAL_PER_ORDER → paper_risk.max_notional_per_order: after the
        # section's own prefix the rest is one field name (a single split).
        env_nested_delimiter="_",
        env_nested_max_split=1,
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

    # Services
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite file under the data dir.")
    redis_url: str | None = Field(None, description="Optional Redis URL for the Nautilus cache.")
    alert_urls: str = Field("", description="Apprise URLs, comma separated (secret: may carry tokens).")

    # Sections
    ib: IBSettings = Field(default_factory=IBSettings, description="ATS_IB_*: the gateways.")
    gateway: GatewaySettings = Field(default_factory=GatewaySettings, description="ATS_GATEWAY_*: their controller.")
    session: SessionSettings = Field(default_factory=SessionSettings, description="ATS_SESSION_*: session start-up.")
    paper_risk: PaperRiskSettings = Field(default_factory=PaperRiskSettings, description="ATS_PAPER_RISK_*: paper caps.")
    live_risk: LiveRiskSettings = Field(default_factory=LiveRiskSettings, description="ATS_LIVE_RISK_*: live caps.")
    audit: AuditSettings = Field(default_factory=AuditSettings, description="ATS_AUDIT_*: audit key and anchor.")
    ladder: LadderSettings = Field(default_factory=LadderSettings, description="ATS_LADDER_*: research ladder thresholds.")
    health: HealthPolicy = Field(default_factory=HealthPolicy, description="ATS_HEALTH_*: the gateway-health policy.")

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9]{1,16}$", value):
            raise ValueError("expected 1 to 16 letters or digits, e.g. 001")
        return value

    @field_validator("operator")
    @classmethod
    def _operator(cls, value: str) -> str:
        return validate_operator(value)

    @field_validator("data_dir")
    @classmethod
    def _data_dir(cls, value: Path) -> Path:
        # A file here (or above it) failed later in every command with a FileExistsError
        # traceback; the directory itself is created on first use.
        for path in (value, *value.absolute().parents):
            if path.exists():
                if not path.is_dir():
                    which = "a file" if path == value else f"under a file ({path})"
                    raise ValueError(f"expected a directory (created if missing), not {which}")
                break
        return value

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError("expected an SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user@host/db")
        _check_database_driver(value)
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
        """The host, port, account and risk caps of ``mode`` (anything but paper or live is refused)."""
        if mode not in ("paper", "live"):
            raise ValueError(f"mode must be paper or live, got {mode!r}")
        if mode == "paper":
            return ModeSettings("paper", self.ib.host, self.ib.paper_port, self.ib.paper_account_id,
                                self.paper_risk.max_notional_per_order, self.paper_risk.max_order_submit_rate)
        return ModeSettings("live", self.ib.host, self.ib.live_port, self.ib.live_account_id,
                            self.live_risk.max_notional_per_order, self.live_risk.max_order_submit_rate)

    def with_account(self, mode: Mode, account_id: str) -> Settings:
        """These settings with ``account_id`` as the account of ``mode`` (``ATS_IB_<MODE>_ACCOUNT_ID``)."""
        return self.model_copy(update={"ib": self.ib.model_copy(update={f"{mode}_account_id": account_id})})

    def display(self) -> dict[str, Any]:
        """Effective settings for ``ats config show``: account ids masked, secrets hidden."""
        shown: dict[str, Any] = {}
        for name, value in _leaves(self):
            if name.endswith("account_id"):
                value = mask_account(value)
            elif name in SECRET_FIELDS:
                value = "(hidden)" if value else "(not set)"
            elif isinstance(value, Path):
                value = str(value)
            shown[env_name(name)] = value
        shown["ATS_DATABASE_URL"] = display_url(self.resolved_database_url)
        return shown


SECRET_FIELDS = frozenset({"alert_urls", "redis_url"})


def _section_model(name: str) -> type[BaseModel] | None:
    """The model of section ``name`` (``ib``, ``health``…), None for a top-level value."""
    field = Settings.model_fields.get(name)
    annotation = field.annotation if field is not None else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


SECTIONS: tuple[str, ...] = tuple(name for name in Settings.model_fields if _section_model(name) is not None)


def _leaf_names() -> Iterator[str]:
    """Every setting as ``<field>`` or ``<section>_<field>`` (its ``ATS_*`` name, lower case), in order."""
    for name in Settings.model_fields:
        section = _section_model(name)
        if section is None:
            yield name
        else:
            yield from (f"{name}_{field}" for field in section.model_fields)


def _leaves(settings: Settings) -> Iterator[tuple[str, Any]]:
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if name in SECTIONS:
            yield from ((f"{name}_{field}", getattr(value, field)) for field in type(value).model_fields)
        else:
            yield name, value


def _check_database_driver(url: str) -> None:
    """Refuse a URL whose database driver is unknown or not installed (it would fail at first use).

    ``postgresql://`` alone means SQLAlchemy's default driver, psycopg2, which ats does not
    install; ats ships psycopg 3 (``postgresql+psycopg://``).
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
        hint = ("write postgresql+psycopg://… (psycopg 3 ships with ats)" if backend == "postgresql"
                else "write sqlite:///path (Python's own sqlite3)")
        dialect = parsed.get_dialect()
    except NoSuchModuleError:  # a subclass of ArgumentError: first
        raise ValueError(f"unknown database driver {parsed.drivername.partition('+')[2]!r} for "
                         f"{backend}: {hint}") from None
    except ArgumentError:
        raise ValueError("expected an SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user@host/db") from None
    explicit = "+" in parsed.drivername
    try:
        dialect.import_dbapi()
    except ImportError:
        which = f"the {driver} driver" + ("" if explicit else f" (the default of {backend}://)")
        raise ValueError(f"{which} is not installed: {hint}") from None
    if getattr(dialect, "is_async", False):
        raise ValueError(f"the {driver} driver is asynchronous; ats needs a synchronous one: {hint}")


def env_name(field: str) -> str:
    """``ATS_`` + ``field`` upper case: ``ib_paper_port`` (``settings.ib.paper_port``) → ``ATS_IB_PAPER_PORT``."""
    return f"{ENV_PREFIX}{field.upper()}"


def known_env_names() -> list[str]:
    """Every ``ATS_*`` variable, in the order of the settings."""
    return [env_name(name) for name in _leaf_names()]


def _read_dotenv_keys(path: Path) -> list[str]:
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:  # pydantic-settings would fail on it too, with a traceback
        where = exc.object[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path.absolute()}: line {where} is not UTF-8 text ({exc.reason}): "
                          "save the .env file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path.absolute()}: cannot read the .env file ({exc.strerror or exc})") from None
    keys = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key = line.split("=", 1)[0].strip().removeprefix("export ").strip()
        keys.append(key)
    return keys


def _check_unknown_variables(env: dict[str, str], dotenv: Path) -> None:
    known = set(known_env_names())
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
        return Settings(_env_file=dotenv if dotenv.is_file() else None)  # type: ignore[call-arg]  # pydantic-settings' init option, unknown to mypy without its plugin
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _one_line(exc: ValidationError) -> str:
    error = exc.errors()[0]
    loc = error.get("loc") or ()
    message = error.get("msg", "invalid value").removeprefix("Value error, ")
    if not loc or (len(loc) == 1 and loc[0] in SECTIONS):  # a check across fields names them itself
        return message
    # ("ib", "paper_port") → ib_paper_port, whose variable is ATS_IB_PAPER_PORT
    field = f"{loc[0]}_{loc[1]}" if loc[0] in SECTIONS else str(loc[0])
    value = error.get("input")
    # Account ids, secrets and URLs that may carry a password are never echoed.
    shown = "account" not in field and field not in SECRET_FIELDS and field != "database_url"
    # Say what is wrong with it, once, not all of it: a long value, one the message already quotes,
    # or a message that already says what it got.
    if isinstance(value, str) and (len(value) > 80 or repr(value) in message) or "(got " in message:
        shown = False
    got = f" (got {value!r})" if isinstance(value, (str, int, float)) and shown else ""
    if error.get("type") == "extra_forbidden":
        return f"{env_name(field)}: unknown ats variable in .env"
    return f"{env_name(field)}: {message}{got}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once.  Tests call ``get_settings.cache_clear()``."""
    return load_settings()

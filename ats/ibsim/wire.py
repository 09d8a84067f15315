"""TWS API wire format: field text, request field parsing, the contract the simulator knows.

Every message is ``uint32 big-endian length`` + payload.  Below server version 201 the payload
is ASCII fields each terminated by ``\\0``, field 0 the message id as decimal text; from 201 the
id is a 4-byte big-endian integer and the body either such fields or, for id + 200, a protobuf
message (:mod:`ats.ibsim.versions`).  Server → client messages are built in
:mod:`ats.ibsim.outgoing`, client → server requests read in :mod:`ats.ibsim.incoming`.

Values are given as Python values; :func:`field` turns them into wire text: ``None`` is an
empty field ("unset"), ``bool`` is ``0``/``1``, floats use their shortest repr.
"""

from __future__ import annotations

import builtins
import math
from dataclasses import dataclass
from decimal import Decimal

MAX_MSG_LEN = 0xFFFFFF
API_PREFIX = b"API\0"
UNSET_INTEGER = 2**31 - 1
UNSET_DOUBLE = 1.7976931348623157e308


class WireError(ValueError):
    """A frame or field that does not follow the protocol."""


class BadRequest(WireError):
    """A well-framed request whose body cannot be read: answered with an error, the socket stays."""


# ----------------------------------------------------------------------------- fields


def field(value: object) -> str:
    """One value as wire text (without the terminator)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(value)
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return str(value.quantize(Decimal(1)))
        return format(value.normalize(), "f")
    text = str(value)
    # ASCII only, no terminators, no backslashes (the decoder applies unicode-escape).
    return text.replace("\0", "").replace("\\", "/").encode("ascii", "replace").decode("ascii")


def split_fields(payload: bytes) -> list[str]:
    """Split a frame payload into text fields; the payload must end with a terminator."""
    if not payload.endswith(b"\0"):
        raise WireError("payload does not end with a field terminator")
    try:
        text = payload.decode("ascii")
    except UnicodeDecodeError:
        text = payload.decode("latin-1")
    return text.split("\0")[:-1]


def parse_client_versions(text: str) -> tuple[int, int]:
    """Parse the client's ``v<min>..<max>[ options]`` string."""
    spec = text.split(" ", 1)[0]
    if not spec.startswith("v"):
        raise WireError(f"bad version string {text!r}")
    parts = spec[1:].split("..")
    try:
        low = int(parts[0])
        high = int(parts[1]) if len(parts) > 1 else low
    except (ValueError, IndexError) as exc:
        raise WireError(f"bad version string {text!r}") from exc
    return low, high


class Fields:
    """Sequential reader over a request's text fields (msg id already removed)."""

    def __init__(self, values: list[str], version: int) -> None:
        self._values = values
        self._pos = 0
        self.version = version  # the server version the request was written at

    def __len__(self) -> int:
        return len(self._values)

    def str(self) -> str:
        if self._pos >= len(self._values):
            raise WireError("request has too few fields")
        value = self._values[self._pos]
        self._pos += 1
        return value

    def int(self, default: int = 0) -> int:
        """A 32-bit integer (ids, counts, flags), as the TWS API sends them."""
        text = self.str()
        if text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError as exc:
                raise WireError(f"not an integer: {text!r}") from exc
            if not as_float.is_integer():
                raise WireError(f"not an integer: {text!r}") from None
            value = int(as_float)
        if not -(2**31) <= value < 2**31:
            raise WireError(f"integer out of range: {text!r}")
        return value

    def float(self) -> float | None:
        """A double; ``None`` when unset (empty or the UNSET_DOUBLE literal)."""
        text = self.str()
        if text == "":
            return None
        try:
            value = float(text)
        except ValueError as exc:
            raise WireError(f"not a number: {text!r}") from exc
        if value >= UNSET_DOUBLE or math.isnan(value):
            return None
        return value

    def decimal(self) -> Decimal | None:
        text = self.str()
        if text == "" or text in ("2147483647", "9223372036854775807"):
            return None
        try:
            value = Decimal(text)
        except ArithmeticError as exc:
            raise WireError(f"not a decimal: {text!r}") from exc
        if not value.is_finite() or value >= Decimal(UNSET_DOUBLE):
            return None
        return value

    def bool(self) -> bool:
        return self.int() != 0

    def skip(self, count: builtins.int = 1) -> None:
        for _ in range(count):
            self.str()


# ----------------------------------------------------------------------------- contracts


@dataclass(frozen=True, slots=True)
class ContractSpec:
    """What the simulator knows about one tradable stock."""

    con_id: int
    symbol: str
    primary_exchange: str
    currency: str = "USD"
    exchange: str = "SMART"
    sec_type: str = "STK"
    local_symbol: str = ""
    trading_class: str = ""
    long_name: str = ""
    min_tick: float = 0.01
    isin: str = ""
    stock_type: str = "COMMON"
    time_zone_id: str = "US/Eastern"

    @property
    def local(self) -> str:
        return self.local_symbol or self.symbol

    @property
    def instrument_id(self) -> str:
        return f"{self.symbol}.{self.primary_exchange}"

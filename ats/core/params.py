"""Validate what a user types for a strategy run: instrument id, bar spec and JSON params.

Each refusal is an :class:`ats.core.errors.InputError` with one line that says what is wrong and
what is expected, e.g.::

    unknown parameter 'buy_treshold' for ibs_reversion (did you mean buy_threshold?); allowed: buy_threshold, max_hold_bars, notional, sell_threshold
"""

from __future__ import annotations

import difflib
import json
import math
import re
import types
import typing
from typing import TYPE_CHECKING, Any

from ats.core.errors import InputError

if TYPE_CHECKING:
    from nautilus_trader.model.data import BarType
    from nautilus_trader.model.identifiers import InstrumentId
    from nautilus_trader.trading.config import StrategyConfig

DEFAULT_BAR_SPEC = "1-DAY-LAST"

_INSTRUMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9./^_-]*\.[A-Za-z0-9_]+$")
_BAR_SPEC_RE = re.compile(r"^[1-9]\d*-[A-Z_]+-[A-Z]+$")
# Fields of the config that the runner sets, not the user.
_RUNNER_FIELDS = frozenset({"instrument_id", "bar_type"})
# The instrument columns of the store (approvals, verdicts, session bars and orders).
INSTRUMENT_ID_MAX_CHARS = 100


def check_instrument_id(text: str) -> str:
    """``text`` stripped if it has the form SYMBOL.VENUE, else :class:`InputError` (no Nautilus import).

    At most :data:`INSTRUMENT_ID_MAX_CHARS`: the stored instrument columns hold 100 characters
    (PostgreSQL enforces it), so a longer id would pass here and fail at the first write.
    """
    value = (text or "").strip() if isinstance(text, str) else str(text)
    if len(value) > INSTRUMENT_ID_MAX_CHARS:
        raise InputError(f"instrument id {value[:20]!r}… is longer than {INSTRUMENT_ID_MAX_CHARS} characters: "
                         "expected SYMBOL.VENUE, e.g. QQQ.NASDAQ")
    if not _INSTRUMENT_RE.match(value):
        raise InputError(f"instrument id {text!r} is malformed: expected SYMBOL.VENUE, e.g. QQQ.NASDAQ")
    return value


def parse_instrument_id(text: str) -> InstrumentId:
    """``"QQQ.NASDAQ"`` → Nautilus ``InstrumentId``; a malformed id is an :class:`InputError`."""
    from nautilus_trader.model.identifiers import InstrumentId

    return InstrumentId.from_str(check_instrument_id(text))


def parse_bar_type(instrument_id: str | InstrumentId, bar_spec: str = DEFAULT_BAR_SPEC) -> BarType:
    """The external bar type ``SYMBOL.VENUE-<bar_spec>-EXTERNAL`` for ``instrument_id``.

    ``bar_spec`` is ``STEP-AGGREGATION-PRICE_TYPE`` (default ``1-DAY-LAST``).
    """
    from nautilus_trader.model.data import BarSpecification, BarType
    from nautilus_trader.model.enums import BarAggregation, PriceType

    spec = (bar_spec or "").strip().upper()
    if not _BAR_SPEC_RE.match(spec):
        raise InputError(f"bar spec {bar_spec!r} is malformed: expected STEP-AGGREGATION-PRICE_TYPE, e.g. 1-DAY-LAST")
    # Check the names here: Nautilus aborts the process (a Rust panic) on an unknown one.
    _, aggregation, price_type = spec.split("-")
    if aggregation not in BarAggregation.__members__:
        known = ", ".join(BarAggregation.__members__)
        raise InputError(f"bar spec {bar_spec!r}: unknown aggregation {aggregation!r}; known: {known}")
    if price_type not in PriceType.__members__:
        known = ", ".join(PriceType.__members__)
        raise InputError(f"bar spec {bar_spec!r}: unknown price type {price_type!r}; known: {known}")
    try:
        specification = BarSpecification.from_str(spec)
    except Exception as exc:  # noqa: BLE001 - Nautilus raises ValueError/KeyError variants
        raise InputError(f"bar spec {bar_spec!r} is not valid: {exc}") from None
    if not isinstance(instrument_id, str):
        instrument_id = str(instrument_id)
    return BarType(parse_instrument_id(instrument_id), specification)


def decode_params_json(params_json: str | dict | None) -> dict[str, Any]:
    if params_json is None:
        return {}
    if isinstance(params_json, dict):
        return dict(params_json)
    if not isinstance(params_json, str):
        raise InputError(f"params must be a JSON object, got {type(params_json).__name__}")
    if not params_json.strip():
        return {}
    try:
        value = json.loads(params_json)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"params are not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
            f"(expected an object like '{{\"buy_threshold\": 0.15}}')"
        ) from None
    if not isinstance(value, dict):
        raise InputError(f"params must be a JSON object like '{{\"buy_threshold\": 0.15}}', got {json.dumps(value)}")
    return value


def _user_fields(config_cls: type[StrategyConfig]) -> dict[str, Any]:
    """The user-settable fields of a strategy config and their types (base StrategyConfig excluded)."""
    from nautilus_trader.config import StrategyConfig

    hints = typing.get_type_hints(config_cls)
    base = set(StrategyConfig.__struct_fields__)
    return {
        name: hints[name]
        for name in config_cls.__struct_fields__
        if name not in base and name not in _RUNNER_FIELDS
    }


def _type_name(tp: object) -> str:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    names: dict[object, str] = {float: "a number", int: "an integer", bool: "true or false", str: "a string",
                                type(None): "null"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _matches(value: object, tp: object) -> bool:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return True  # other types are left to the config's own decoder


def _refuse_non_finite(strategy_name: str, key: str, value: object) -> None:
    """Refuse NaN and ±Infinity (JSON ``NaN``/``Infinity``, or a number too large for a float).

    Python's JSON reader accepts them; no strategy threshold or size can use them, and the
    config decoder would only say "invalid character".
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"params for {strategy_name}: {json.dumps(value)} is not a number a strategy can use: "
                         f"give a finite number for {key}")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_non_finite(strategy_name, f"{key}[{index}]", item)
    elif isinstance(value, dict):
        for name, item in value.items():
            _refuse_non_finite(strategy_name, f"{key}.{name}", item)


def allowed_params(strategy_name: str) -> list[str]:
    """The parameter names ``strategy_name`` accepts in its JSON params."""
    from ats.strategies import get_strategy

    _, config_cls = get_strategy(strategy_name).load()
    return sorted(_user_fields(config_cls))


def parse_params(strategy_name: str, params_json: str | dict | None, instrument_id: str | InstrumentId,
                 bar_spec: str = DEFAULT_BAR_SPEC) -> StrategyConfig:
    """Build the strategy's frozen config from JSON ``params_json`` (a string or a dict).

    Refuses, each with one :class:`InputError` line: malformed JSON, a non-object, an unknown
    key (listing the allowed ones), a value of the wrong type, a value out of range.  The
    config claims the instrument's external orders and reconciled positions
    (``external_order_claims``) so that after a restart the position is the strategy's own.
    """
    import msgspec
    from nautilus_trader.common.config import msgspec_decoding_hook

    from ats.strategies import get_strategy

    _, config_cls = get_strategy(strategy_name).load()
    params = decode_params_json(params_json)
    fields = _user_fields(config_cls)
    allowed = ", ".join(sorted(fields))
    for key in params:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise InputError(f"unknown parameter {key!r} for {strategy_name}{hint}; allowed: {allowed}")
    for key, value in params.items():
        _refuse_non_finite(strategy_name, key, value)
        if not _matches(value, fields[key]):
            raise InputError(
                f"parameter {key} for {strategy_name} must be {_type_name(fields[key])}, got {json.dumps(value)}"
            )
    bar_type = parse_bar_type(str(instrument_id), bar_spec)
    raw = {
        **params,
        "instrument_id": str(bar_type.instrument_id),
        "bar_type": str(bar_type),
        "external_order_claims": [str(bar_type.instrument_id)],
    }
    try:
        return msgspec.json.decode(json.dumps(raw), type=config_cls, dec_hook=msgspec_decoding_hook)
    except (msgspec.ValidationError, ValueError, TypeError) as exc:
        message = str(exc).split(" - at ")[0]
        raise InputError(f"params for {strategy_name}: {message}") from None


def canonical_bar_spec(instrument_id: str | InstrumentId, bar_spec: str | None = DEFAULT_BAR_SPEC) -> str:
    """``bar_spec`` as verdicts and approvals are pinned to it: validated, stripped, upper case."""
    parse_bar_type(str(instrument_id), bar_spec or DEFAULT_BAR_SPEC)
    return (bar_spec or DEFAULT_BAR_SPEC).strip().upper()


def canonical_params(strategy_name: str, params_json: str | dict | None, instrument_id: str | InstrumentId,
                     bar_spec: str = DEFAULT_BAR_SPEC) -> dict[str, Any]:
    """The params a paper verdict or an approval is pinned to: every user field of the strategy's
    config after its defaults and validation, as JSON values.

    So ``{}`` and ``{"buy_threshold": 0.2}`` (the default) are one set, ``4000`` and ``4000.0``
    too, while a changed value is another set.  Bad params are refused like :func:`parse_params`.
    """
    import msgspec

    config = parse_params(strategy_name, params_json, instrument_id, bar_spec or DEFAULT_BAR_SPEC)
    values = {name: msgspec.to_builtins(getattr(config, name)) for name in sorted(_user_fields(type(config)))}
    return json.loads(json.dumps(values))  # tuples become lists, as stored and compared

"""Sleeves: what a trading node runs — ``{strategy, instrument, bar_spec, params}`` each.

A runner takes one sleeve from ``--strategy/--instrument/--bar-spec/--params`` or a book of
sleeves from ``--sleeves-json FILE|JSON``; every sleeve is validated against its strategy's
config before anything connects (unknown keys, wrong types, malformed ids refused).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ats.core.errors import InputError

if TYPE_CHECKING:
    from nautilus_trader.trading.config import StrategyConfig

SLEEVE_KEYS = ("strategy", "instrument", "bar_spec", "params")
DEFAULT_BAR_SPEC = "1-DAY-LAST"


@dataclass(frozen=True)
class Sleeve:
    """One strategy on one instrument, with its bar spec and JSON params."""

    strategy: str
    instrument: str
    bar_spec: str = DEFAULT_BAR_SPEC
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.strategy}@{self.instrument}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def strategy_config(self) -> StrategyConfig:
        """The validated, frozen Nautilus config of this sleeve (raises InputError)."""
        from ats.core.params import parse_params

        return parse_params(self.strategy, self.params, self.instrument, self.bar_spec)


def sleeve_from_args(strategy: str | None, instrument: str | None, bar_spec: str | None,
                     params: str | None) -> Sleeve:
    if not strategy or not instrument:
        raise InputError("give --strategy and --instrument (or --sleeves-json FILE|JSON)")
    from ats.core.params import decode_params_json

    return validate(Sleeve(strategy, instrument, bar_spec or DEFAULT_BAR_SPEC, decode_params_json(params)))


def parse_sleeves_json(text_or_path: str) -> list[Sleeve]:
    """A book of sleeves from a JSON list, given inline or as a file path."""
    source = "--sleeves-json"
    text = text_or_path
    path = Path(text_or_path)
    if not text_or_path.lstrip().startswith(("[", "{")):
        if not path.is_file():
            raise InputError(f"--sleeves-json: {text_or_path!r} is neither JSON nor an existing file")
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{source} is not a UTF-8 text file ({exc.reason} at byte {exc.start}): "
                             "save it as UTF-8") from None
        except OSError as exc:
            raise InputError(f"{source} cannot be read: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, list) or not data:
        raise InputError(f"{source} must be a non-empty JSON list of {{strategy, instrument, bar_spec, params}}")
    sleeves: list[Sleeve] = []
    for index, item in enumerate(data):
        where = f"{source} item {index}"
        if not isinstance(item, dict):
            raise InputError(f"{where} must be an object with keys {', '.join(SLEEVE_KEYS)}")
        unknown = sorted(set(item) - set(SLEEVE_KEYS))
        if unknown:
            raise InputError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(SLEEVE_KEYS)}")
        missing = [k for k in ("strategy", "instrument") if not item.get(k)]
        if missing:
            raise InputError(f"{where}: missing {missing[0]!r}")
        params = item.get("params") or {}
        if not isinstance(params, dict):
            raise InputError(f"{where}: params must be a JSON object")
        try:
            sleeves.append(validate(Sleeve(item["strategy"], item["instrument"],
                                           item.get("bar_spec") or DEFAULT_BAR_SPEC, params)))
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
    keys = [s.key for s in sleeves]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise InputError(f"{source}: sleeve {duplicates[0]} appears twice (one sleeve per strategy and instrument)")
    return sleeves


def validate(sleeve: Sleeve) -> Sleeve:
    """Check the sleeve against its strategy's config; returns it unchanged."""
    sleeve.strategy_config()
    return sleeve

"""Canonical JSON: the one text form of a payload that is hashed, stored or compared."""

from __future__ import annotations

import json

# A JSON value as ``json.loads`` gives it (an object's keys are strings).
type JSONValue = dict[str, JSONValue] | list[JSONValue] | str | int | float | bool | None
# A JSON object: a stored payload, a strategy's params.
type JSONObject = dict[str, JSONValue]


def canonical_json(payload: object) -> str:
    """Canonical JSON text: sorted keys, no whitespace, UTF-8 kept (anything else JSON cannot hold as ``str``)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)

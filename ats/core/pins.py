"""What a paper rung and a go-live approval are pinned to, besides the strategy's code.

Why (issue 17, finding 3): a paper rung earned and an approval given with the default params
let ``python -m ats.live --params '{"notional": 1000000, …}'`` through every gate.  What was
tried on paper and signed off is a *set*: the code fingerprint, the canonical params and the
bar spec.  A session with another set needs its own paper evidence and its own approval.

:class:`ParamSet` is the params + bar spec half (the fingerprint is stored and compared beside
it).  Canonical params are the strategy config's user fields after defaults and validation
(:func:`ats.core.params.canonical_params`), so writing a default out does not make another set.
Rows recorded before pinning (migration 0005) have no bar spec: they match no set and admit no
session — judge the paper rung and approve again.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from ats.core.canonical import JSONObject
from ats.core.params import DEFAULT_BAR_SPEC


@dataclass(frozen=True)
class ParamSet:
    """Canonical params and bar spec of one sleeve."""

    params_json: str  # canonical JSON text (sorted keys, no spaces): what is stored and compared
    bar_spec: str

    @property
    def params(self) -> dict[str, Any]:
        return json.loads(self.params_json)

    def describe(self) -> str:
        """``params {…} on 1-DAY-LAST bars``."""
        return f"params {self.params_json} on {self.bar_spec} bars"

    def cli_args(self) -> str:
        """The options that select this set on the command line."""
        return f"--params {shlex.quote(self.params_json)} --bar-spec {self.bar_spec}"


def _text(params: dict[str, Any]) -> str:
    from ats.core.canonical import canonical_json

    return canonical_json(params)


def param_set(strategy: str, instrument: str, params: str | dict | None = None,
              bar_spec: str | None = None) -> ParamSet:
    """The canonical set of these params and bar spec (bad ones refused with one line)."""
    from ats.core.params import canonical_bar_spec, canonical_params

    spec = canonical_bar_spec(instrument, bar_spec or DEFAULT_BAR_SPEC)
    return ParamSet(_text(canonical_params(strategy, params, instrument, spec)), spec)


def stored_set(params: str | JSONObject | None, bar_spec: str | None) -> ParamSet | None:
    """The set a stored row is pinned to (``params`` as JSON text or a dict); ``None`` before pinning."""
    if bar_spec is None or params is None:
        return None
    value = json.loads(params) if isinstance(params, str) else params
    return ParamSet(_text(value), bar_spec)


def needs_own_evidence(strategy: str, instrument: str, wanted: ParamSet) -> str:
    """The remedy when a session asks for a set that has no paper rung or approval of its own."""
    sleeve = f"--strategy {strategy} --instrument {instrument}"
    args = wanted.cli_args()
    return (f"another params/bar-spec set needs its own paper evidence and approval: run paper sessions with "
            f"these params (python -m ats.paper {sleeve} {args}), then `ats ladder paper {sleeve} {args}`, "
            f"then `ats approve-live {sleeve} {args} --note …`")

"""The strategy registry: the names users type, mapped to Nautilus strategy classes.

A strategy's *code fingerprint* is the SHA-256 of its module's source file.  Go-live
approvals and ladder verdicts are pinned to it: changed code needs a new approval.
The registry does not import the strategy modules (Nautilus is heavy); ``load`` does.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ats.errors import UnknownStrategyError


@dataclass(frozen=True)
class StrategySpec:
    """Where a registered strategy lives: its module, strategy class and config class."""

    name: str
    module: str
    strategy_class: str
    config_class: str

    def source_path(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None:
            raise UnknownStrategyError(f"strategy {self.name!r}: module {self.module} is missing")
        return Path(spec.origin)

    def fingerprint(self) -> str:
        """SHA-256 of the strategy module's source."""
        return hashlib.sha256(self.source_path().read_bytes()).hexdigest()

    def load(self) -> tuple[type, type]:
        """Import and return ``(StrategyClass, ConfigClass)``."""
        module = importlib.import_module(self.module)
        return getattr(module, self.strategy_class), getattr(module, self.config_class)


REGISTRY: dict[str, StrategySpec] = {
    "ibs_reversion": StrategySpec(
        name="ibs_reversion",
        module="ats.strategies.ibs_reversion",
        strategy_class="IbsReversion",
        config_class="IbsReversionConfig",
    ),
    "order_check": StrategySpec(
        name="order_check",
        module="ats.strategies.order_check",
        strategy_class="OrderCheck",
        config_class="OrderCheckConfig",
    ),
}


def get_strategy(name: str) -> StrategySpec:
    """The registered strategy ``name``, or :class:`UnknownStrategyError` listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownStrategyError(f"unknown strategy {name!r}; known strategies: {known}") from None

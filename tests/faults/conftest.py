"""Fault tests reuse the runner, health and simulator helpers: put their directories on sys.path."""

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for _name in ("faults", "trading", "gateway", "ibsim"):
    _path = str(_TESTS / _name)
    if _path not in sys.path:
        sys.path.insert(0, _path)

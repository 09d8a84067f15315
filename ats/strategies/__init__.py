"""The strategy registry: the names users type, mapped to Nautilus strategy classes.

A strategy's *code fingerprint* is the SHA-256 of its module's source file, and that file's
bytes are exactly the code that runs: :meth:`StrategySpec.load` reads the file once, hashes
those bytes and compiles and executes *those same bytes* into the module the node, the
backtest and the params check use.  It never goes through Python's import system for the
strategy module, so a stale or planted ``__pycache__/*.pyc`` (which the import system trusts
when its recorded mtime and size match the source) cannot run other code under an approved
fingerprint.  Go-live approvals and ladder verdicts are pinned to the fingerprint: changed
code needs a new approval.

What the fingerprint covers: the strategy's own module file, byte for byte.  A strategy
module may import the standard library and installed packages (``nautilus_trader`` and the
rest are pinned by ``uv.lock``), but no other ats module — anything else of ats' that it ran
would sit outside its fingerprint, so such a module is refused (:class:`StrategyCodeError`).
Not covered (as for the rest of ats: the runner, the risk caps): the registry entry below that
names the strategy and config classes, and the installed packages.

The registry does not import the strategy modules (Nautilus is heavy); ``load`` does.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import importlib.util
import sys
import threading
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ats.core.errors import StrategyCodeError, UnknownStrategyError

if TYPE_CHECKING:
    from nautilus_trader.trading.config import StrategyConfig
    from nautilus_trader.trading.strategy import Strategy

_load_lock = threading.Lock()
_import_checked: set[str] = set()  # SHA-256 of module sources that passed _refuse_ats_imports


@dataclass(frozen=True)
class StrategySpec:
    """Where a registered strategy lives: its module, strategy class and config class.

    ``decides_on_bars_only``: the strategy reads the market only through its bars (not trade
    ticks, not the cache's tick history, not prices on a timer) and sends orders only from
    ``on_bar``.  The backtest rung then leaves the sessions' closes out of its simulated market
    (:mod:`ats.research.backtest`: a third less work, the same results); any other strategy
    is backtested with every session's close as a tick.  A declared strategy is still checked
    at run time (an order that rests or is sent between bars, a tick subscriber: the run is
    repeated with the closes), but reading the cache's tick history is not noticed — declare it
    only for code that does not.
    """

    name: str
    module: str
    strategy_class: str
    config_class: str
    decides_on_bars_only: bool = False

    def source_path(self) -> Path:
        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None:
            raise UnknownStrategyError(f"strategy {self.name!r}: module {self.module} is missing")
        if not spec.origin.endswith(".py"):
            raise StrategyCodeError(f"strategy {self.name!r}: module {self.module} has no Python source "
                                    f"({spec.origin}); its code cannot be fingerprinted")
        return Path(spec.origin)

    def _source(self) -> tuple[Path, bytes, str]:
        """The module's path, its bytes (read once) and their SHA-256, checked for ats imports.

        The check (a parse of the whole module) is a function of the bytes alone, so bytes that
        passed it are not parsed again in this process: a sweep loads its strategy at every point."""
        path = self.source_path()
        source = path.read_bytes()
        digest = hashlib.sha256(source).hexdigest()
        if digest not in _import_checked:
            _refuse_ats_imports(self, path, source)
            _import_checked.add(digest)
        return path, source, digest

    def fingerprint(self) -> str:
        """SHA-256 of the strategy module's source: the bytes :meth:`load` runs."""
        return self._source()[2]

    def load(self) -> tuple[type[Strategy], type[StrategyConfig]]:
        """``(StrategyClass, ConfigClass)`` from the module built from its hashed source bytes.

        The module is rebuilt only when the file's bytes changed since the last load in this
        process, so repeated loads give the same classes.  The module records the hash of the
        bytes it was built from as ``__ats_fingerprint__``.
        """
        with _load_lock:
            path, source, digest = self._source()
            module = sys.modules.get(self.module)
            if getattr(module, "__ats_fingerprint__", None) != digest:
                module = _exec_source(self.module, path, source, digest)
        return getattr(module, self.strategy_class), getattr(module, self.config_class)


def _refuse_ats_imports(spec: StrategySpec, path: Path, source: bytes) -> None:
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise StrategyCodeError(f"strategy {spec.name!r}: {path} line {exc.lineno}: {exc.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = ["." * node.level + (node.module or "")]
        else:
            continue
        for name in names:
            if name.startswith(".") or name == "ats" or name.startswith("ats."):
                raise StrategyCodeError(
                    f"strategy {spec.name!r} imports ats code outside its own file ({name!r}, {path} line "
                    f"{node.lineno}): its fingerprint covers only that file; keep the strategy in one module")


def _exec_source(name: str, path: Path, source: bytes, digest: str) -> types.ModuleType:
    """Compile and execute ``source`` as module ``name`` (registered as imports would register it)."""
    # dont_inherit: this package's own ``from __future__`` flags must not change the strategy's code.
    code = compile(source, str(path), "exec", dont_inherit=True)
    module = types.ModuleType(name)
    module.__file__ = str(path)
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None, origin=str(path))
    module.__spec__.has_location = True
    module.__package__ = name.rpartition(".")[0]
    module.__dict__["__ats_fingerprint__"] = digest
    previous = sys.modules.get(name)
    # Registered before it runs, as the import system does (dataclasses and pickle look it up).
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)  # noqa: S102 - the fingerprinted strategy code itself
    except BaseException:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
        raise
    parent, _, child = name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    return module


REGISTRY: dict[str, StrategySpec] = {
    "ibs_reversion": StrategySpec(
        name="ibs_reversion",
        module="ats.strategies.ibs_reversion",
        strategy_class="IbsReversion",
        config_class="IbsReversionConfig",
        decides_on_bars_only=True,  # on_bar: the bar, its own positions and open orders; market orders
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

"""The code fingerprint is the code that runs: a strategy is executed from the very bytes it hashes.

The attack these tests reproduce: approve a strategy, then leave (or plant) a ``__pycache__``
entry compiled from other code with the source's mtime and size, and put the approved source
back.  Python's import system trusts such a ``.pyc``; the fingerprint, read from the source
file, still matches the approval.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import py_compile
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ats.core.errors import StrategyCodeError
from ats.strategies import REGISTRY, StrategySpec, get_strategy

APPROVED = '''"""A toy strategy module: the approved code."""


class Toy:
    behaviour = "approved"


class ToyConfig:
    pass
'''
OTHER = '''class Toy:
    behaviour = "never approved"


class ToyConfig:
    pass
'''


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[StrategySpec, Path]]:
    """A registered strategy whose module is a real file on disk in a package of its own."""
    package = tmp_path / "toy_strategies"
    package.mkdir()
    (package / "__init__.py").write_text("")
    module = package / "toy.py"
    module.write_text(APPROVED)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = StrategySpec("toy", "toy_strategies.toy", "Toy", "ToyConfig")
    monkeypatch.setitem(REGISTRY, "toy", spec)
    yield spec, module
    for name in ("toy_strategies.toy", "toy_strategies"):
        sys.modules.pop(name, None)


def _plant_stale_pyc(module: Path, other_source: str) -> None:
    """Cache ``other_source`` as the module's bytecode, valid for the module's current mtime and size.

    Python's default (timestamp) ``.pyc`` check compares only those two numbers, so the cached
    code is what an ordinary import runs, while the source file keeps its approved bytes.
    """
    original = module.read_bytes()
    stat = module.stat()
    assert len(other_source.encode()) <= len(original)
    module.write_bytes(other_source.encode().ljust(len(original), b" "))
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    py_compile.compile(str(module), cfile=importlib.util.cache_from_source(str(module)), doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    module.write_bytes(original)
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _imported_behaviour(name: str, module: Path) -> str:
    """What Python's import system runs for ``module`` (a fresh import, not the registry)."""
    spec = importlib.util.spec_from_file_location(f"{name}_plain_import", module)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded.Toy.behaviour


def test_a_stale_pyc_cannot_run_other_code_under_the_approved_fingerprint(toy) -> None:
    # Arrange: the fingerprint an approval would pin, then a planted .pyc of other code.
    spec, module = toy
    approved = spec.fingerprint()
    _plant_stale_pyc(module, OTHER)
    assert _imported_behaviour("toy", module) == "never approved", "the planted .pyc is what import runs"

    # Act
    strategy_cls, _ = spec.load()

    # Assert: the fingerprint still says "approved" — and so does the code that runs.
    assert spec.fingerprint() == approved
    assert strategy_cls.behaviour == "approved"


def test_the_loaded_module_carries_the_hash_of_the_bytes_it_was_built_from(toy) -> None:
    spec, module = toy

    strategy_cls, config_cls = spec.load()

    loaded = sys.modules[strategy_cls.__module__]
    assert loaded.__ats_fingerprint__ == hashlib.sha256(module.read_bytes()).hexdigest() == spec.fingerprint()
    assert sys.modules[config_cls.__module__] is loaded
    assert loaded.__file__ == str(module)


def test_changed_source_runs_the_new_code_under_a_new_fingerprint(toy) -> None:
    spec, module = toy
    first, _ = spec.load()
    before = spec.fingerprint()
    module.write_text(APPROVED.replace('"approved"', '"changed"'))

    second, _ = spec.load()

    assert (first.behaviour, second.behaviour) == ("approved", "changed")
    assert spec.fingerprint() != before
    assert sys.modules[second.__module__].__ats_fingerprint__ == spec.fingerprint()


def test_loading_twice_reuses_the_same_classes(toy) -> None:
    spec, _ = toy

    assert spec.load() == spec.load()


@pytest.mark.parametrize("line", ["from ats.core.params import parse_params", "import ats.core.sleeves",
                                  "from . import helpers", "from ats import errors"])
def test_a_strategy_module_importing_other_ats_code_is_refused(toy, line: str) -> None:
    # Anything else of ats' that the strategy ran would sit outside its fingerprint.
    spec, module = toy
    module.write_text(f"{line}\n{APPROVED}")

    with pytest.raises(StrategyCodeError, match="imports ats code outside its own file"):
        spec.load()
    with pytest.raises(StrategyCodeError, match="imports ats code outside its own file"):
        spec.fingerprint()


def test_a_module_that_passed_the_import_check_is_checked_again_once_its_bytes_change(toy) -> None:
    # The check is remembered per SHA-256 of the bytes (a sweep loads its strategy at every point).
    spec, module = toy
    spec.load()
    module.write_text(f"import ats.core.sleeves\n{APPROVED}")

    with pytest.raises(StrategyCodeError, match="imports ats code outside its own file"):
        spec.load()


def test_the_shipped_strategies_load_from_their_own_bytes() -> None:
    for name in sorted(REGISTRY):
        spec = get_strategy(name)

        strategy_cls, config_cls = spec.load()

        assert sys.modules[strategy_cls.__module__].__ats_fingerprint__ == spec.fingerprint()
        assert config_cls.__module__ == strategy_cls.__module__ == spec.module

"""The house rules, read from the source: layers import only downwards, private names stay home.

Layers, lowest first (a module may import its own package and anything in a lower layer):

====  =========================================  ==============================================
rank  packages                                   what they are
====  =========================================  ==============================================
0     ``ats.core``, ``ats.strategies``           shared types, settings, errors; the strategies
1     ``ats.store``                              the database, migrations, leases
2     ``ats.ibsim``                              the IB Gateway simulator (the wire protocol)
3     ``ats.governance``                         audit, approvals, sessions' records, kill switch
4     ``ats.research``                           catalog, backtest, ladder, sweeps, history
5     ``ats.gateway``                            probe, identity, health, controllers
6     ``ats.trading``                            the gate sequence, the node, the session runner
7     ``tasks`` < ``flows`` < ``deployments``    Prefect tasks, flows and deployments
8     ``ats.cli``                                the command line (and the demo)
9     entry points                               ``ats``, ``ats.paper``, ``ats.live``, ``python -m``
====  =========================================  ==============================================
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RANKS = {
    "ats.core": 0, "ats.strategies": 0, "ats.store": 1, "ats.ibsim": 2, "ats.governance": 3,
    "ats.research": 4, "ats.gateway": 5, "ats.trading": 6,
    "tasks": 7.0, "flows": 7.1, "deployments": 7.2, "ats.cli": 8,
}
ENTRY_POINTS = {"ats", "ats.__main__", "ats.paper", "ats.live", "ats.ibsim.__main__", "ats.cli.__main__",
                "deployments.__main__"}


def _modules() -> dict[str, Path]:
    found = {}
    for top in ("ats", "tasks", "flows", "deployments"):
        for path in (ROOT / top).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


MODULES = _modules()


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "ats" and len(parts) > 1 else parts[0]


def _rank(module: str) -> float:
    if module in ENTRY_POINTS:
        return 9
    return RANKS[_package(module)]


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names imported from it, line) for every ats/flows/tasks/deployments import."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [alias.name for alias in node.names]
            if node.module == "ats":  # from ats import core -> the module ats.core
                found += [(f"ats.{name}", [], node.lineno) for name in names]
            else:
                found.append((node.module, names, node.lineno))
    return [f for f in found if f[0].split(".")[0] in ("ats", "tasks", "flows", "deployments")]


def test_every_package_has_a_rank() -> None:
    unranked = sorted({_package(m) for m in MODULES if m not in ENTRY_POINTS} - set(RANKS))
    assert unranked == [], f"give these packages a layer in RANKS: {unranked}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module: str) -> None:
    upward = [f"line {line}: {target} (layer {_rank(target)} above {_rank(module)})"
              for target, _, line in _imports(MODULES[module])
              if _package(target) != _package(module) and _rank(target) > _rank(module)]
    assert upward == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_is_used_outside_its_module(module: str) -> None:
    tree = ast.parse(MODULES[module].read_text())
    private = [f"line {line}: from {target} import {name}" for target, names, line in _imports(MODULES[module])
               for name in names if name.startswith("_") and not name.startswith("__") and target != module]
    imported_modules = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in MODULES:
                    imported_modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in MODULES:
                    imported_modules[alias.asname] = alias.name
    private += [f"line {node.lineno}: {imported_modules[node.value.id]}.{node.attr}"
                for node in ast.walk(tree)
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in imported_modules and node.attr.startswith("_")
                and not node.attr.startswith("__")]
    assert private == []

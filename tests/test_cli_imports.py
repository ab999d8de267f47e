"""The command line's modules import one way: no cycles, no private names taken from another module.

Read statically (every ``import`` anywhere in a module, function-level ones included), so a lazy
import that only hides a cycle at run time is still found.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "corstrace"
# The modules the command line owns (`corstrace check`, `corstrace explain` and their presentation).
CLI_MODULES = [
    "corstrace.__main__",
    "corstrace._check",
    "corstrace._check_cli",
    "corstrace._header_fix",
    "corstrace._har",
    "corstrace._output",
    "corstrace._wire",
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(path: Path, known: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import statement in ``path``."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                # `from corstrace import _output` imports a module, not a name.
                submodule = f"{node.module}.{alias.name}"
                if submodule in known:
                    found.append((submodule, []))
                else:
                    found.append((node.module, [alias.name]))
    return [(module, names) for module, names in found if module in known]


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: {module for module, _ in _imports(path, known)} - {name} for name, path in known.items()}


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """An import path from ``start`` back to ``goal``, or None."""
    stack: list[tuple[str, list[str]]] = [(module, [start, module]) for module in sorted(graph.get(start, ()))]
    seen: set[str] = set()
    while stack:
        module, path = stack.pop()
        if module == goal:
            return path
        if module in seen:
            continue
        seen.add(module)
        stack.extend((after, [*path, after]) for after in sorted(graph.get(module, ())))
    return None


@pytest.mark.parametrize("module", CLI_MODULES)
def test_cli_module_is_in_no_import_cycle(module: str) -> None:
    """No chain of imports leads from a CLI module back to itself (issue 12: `_check` <-> `_output`)."""
    graph = _graph()
    assert module in graph
    assert _reaches(graph, module, module) is None


@pytest.mark.parametrize("module", CLI_MODULES)
def test_cli_module_takes_no_private_name_from_another_module(module: str) -> None:
    """`from corstrace.x import _name` reaches into another module's internals; CLI modules use public names."""
    known = _modules()
    private = [
        f"{imported}.{name}"
        for imported, names in _imports(known[module], known)
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert private == []

"""The package's shape: a small public API, imports that flow one way, no private reach-ins, short functions.

Read from the source with ``ast`` (nothing is imported to check it), so a violation names the file and line.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import corstrace

PACKAGE = Path(corstrace.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))
# The request path: code that runs for every traced leg. Its functions stay short enough to read at once.
REQUEST_PATH = [
    "middleware.py",
    "_leg.py",
    "_decision.py",
    "_exchange.py",
    "_facts.py",
    "_cause.py",
    "_event.py",
    "_pipeline.py",
    "_log.py",
    "_console.py",
    "_guard.py",
    "_crash.py",
    "_heal.py",
]
MAX_FUNCTION_LINES = 50


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import in ``path``, functions included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.append((base, [alias.name for alias in node.names], node.lineno))
    return found


MODULE_NAMES = {_module_name(path) for path in MODULES}


def _targets(module: str, taken: list[str]) -> set[str]:
    """The package's modules one import statement loads: ``from corstrace import _config`` is ``corstrace._config``."""
    submodules = {f"{module}.{name}" for name in taken if f"{module}.{name}" in MODULE_NAMES}
    names = [name for name in taken if f"{module}.{name}" not in MODULE_NAMES]
    targets = submodules | ({module} if module in MODULE_NAMES and (names or not taken) else set())
    return targets


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in MODULES:
        me = _module_name(path)
        edges = graph.setdefault(me, set())
        for module, taken, _ in _imports(path):
            edges |= _targets(module, taken) - {me}
    return graph


def test_no_import_cycle() -> None:
    graph = _graph()
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        for target in sorted(graph[node]):
            if target in trail:
                cycles.append([*trail[trail.index(target) :], target])
            elif len(trail) < 40:
                visit(target, [*trail, target])

    for start in sorted(graph):
        visit(start, [start])
    assert cycles == [], "\n".join(" -> ".join(cycle) for cycle in cycles[:5])


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_private_name_is_imported_from_another_module() -> None:
    """Private modules may be imported (they are the package's own); private names in them may not."""
    offences = []
    for path in MODULES:
        for module, taken, line in _imports(path):
            private = [
                name
                for name in taken
                if name.startswith("_") and not name.startswith("__") and f"{module}.{name}" not in MODULE_NAMES
            ]
            third_party = not module.startswith("corstrace")
            private += [part for part in module.split(".") if third_party and _private(part)]
            if private:
                offences.append(f"{path.relative_to(PACKAGE)}:{line}: from {module} import {private}")
    assert offences == []


@pytest.mark.parametrize("name", REQUEST_PATH)
def test_functions_on_the_request_path_are_short(name: str) -> None:
    tree = ast.parse((PACKAGE / name).read_text(encoding="utf-8"))
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_every_module_says_what_it_holds() -> None:
    undocumented = [str(path.relative_to(PACKAGE)) for path in MODULES if ast.get_docstring(ast.parse(path.read_text()))
                    is None]  # fmt: skip
    assert undocumented == []


# --- the public API, in the style of httpx's tests/test_exported_members.py ---------------------------------


@pytest.mark.parametrize("module_name", ["corstrace", "corstrace.engine", "corstrace.testing"])
def test_all_lists_exactly_the_public_names(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = set(module.__all__)
    # Classes and functions defined in the module itself (constants are exported by choice, and listed).
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and callable(value) and getattr(value, "__module__", None) == module_name
    }
    assert exported >= public, sorted(public - exported)
    assert all(hasattr(module, name) for name in exported)


def test_package_exports() -> None:
    assert corstrace.__all__ == sorted(corstrace.__all__)
    expected = {"CORSTraceMiddleware", "ConsoleView", "Request", "Response", "Verdict", "__version__", "evaluate"}
    assert set(corstrace.__all__) == expected

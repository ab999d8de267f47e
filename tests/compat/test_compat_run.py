"""The compatibility run inside the normal ``pytest`` run (what CI runs): each suite bare, then wrapped.

The same as ``python -m tests.compat``: Starlette's and FastAPI's own test suites, their sdists at the installed
versions (pip downloads them once into ``$XDG_CACHE_HOME/corstrace-compat``), bare and then with
``CORSTraceMiddleware`` as the outermost layer of every app, with the inspector on (the default) and off.
Every test that passes bare must pass wrapped; exclusions and known corstrace bugs are in exclusions.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.compat.exclusions import EXCLUDED, KNOWN_BUGS
from tests.compat.runner import INJECTED_ORIGIN, Run, compare, run
from tests.compat.suites import SUITES, missing

pytestmark = pytest.mark.slow

_bare: dict[str, Run] = {}


@pytest.fixture(scope="module")
def bare_runs() -> Iterator[dict[str, Run]]:
    """Bare runs by suite, each made once for this module (a wrapped run is compared with its suite's)."""
    yield _bare
    _bare.clear()


def _require(name: str) -> None:
    absent = missing(SUITES[name])
    if not absent:
        return
    message = f"{name}'s test requirements are not installed: {', '.join(absent)} (pip install -e '.[test]')"
    if os.environ.get("CI"):
        pytest.fail(message)  # CI installs the test extra: a missing requirement there is a packaging bug
    pytest.skip(message)


# (suite, inspector, Origin injected). Starlette's suite is small (about 1 minute a run): every variant. FastAPI's
# takes about 3-4 minutes a run and sends an Origin in 2 of its 5,200 tests, so two variants: the default setup
# as the tests send their requests, and every leg traced (injected Origin) with the inspector on, which builds
# and publishes every event. `python -m tests.compat` runs every variant of both.
VARIANTS = [
    ("starlette", "on", False),
    ("starlette", "off", False),
    ("starlette", "on", True),
    ("starlette", "off", True),
    ("fastapi", "on", False),
    ("fastapi", "on", True),
]


@pytest.mark.parametrize(
    ("name", "inspector", "injected"),
    VARIANTS,
    ids=[
        f"{name}-inspector-{inspector}" + ("-injected-origin" if injected else "")
        for name, inspector, injected in VARIANTS
    ],
)
def test_every_test_that_passes_bare_passes_wrapped(
    name: str, inspector: str, injected: bool, bare_runs: dict[str, Run]
) -> None:
    """Wrapped in corstrace, the suite's tests that passed bare still pass; no internal error, no blocking call."""
    _require(name)
    suite = SUITES[name]
    if name not in bare_runs:
        bare_runs[name] = run(suite, "bare")
    bare = bare_runs[name]
    assert bare.passed(), f"{name}: no test passed bare (exit {bare.returncode}):\n{bare.output_tail}"
    wrapped = run(suite, "wrapped", inspector=inspector, inject_origin=INJECTED_ORIGIN if injected else None)
    comparison = compare(bare, wrapped)
    assert comparison.ok, comparison.summary()


def test_exclusions_and_known_bugs_are_well_formed() -> None:
    """Every exclusion names a known suite and a reason; every known bug has a regression test that exists."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for exclusion in EXCLUDED:
        assert exclusion.suite in SUITES and exclusion.reason
        assert "::" in exclusion.test or exclusion.test.endswith("/")
    names = [bug.name for bug in KNOWN_BUGS]
    assert len(names) == len(set(names))
    for bug in KNOWN_BUGS:
        path, _, test = bug.regression_test.partition("::")
        assert f"def {test}(" in (root / path).read_text(), bug.regression_test
        assert all(label.split(":")[0] in SUITES for label in bug.expected_in)

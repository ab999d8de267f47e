"""What the compatibility run does not hold against corstrace, and the corstrace bugs it already knows.

The rule (issue 14): every test that passes bare must pass with corstrace wrapped around every app. Two lists
say which failures are not a new finding:

``EXCLUDED``
    Tests that cannot pass wrapped for a reason that is not a corstrace bug. The issue allows exactly one
    kind: the test calls the app with a hand-built HTTP scope that has no ``headers`` key, which the ASGI
    spec requires ("headers (Iterable[[byte string, byte string]])", no default), so no middleware that reads
    request headers can be expected to run on it. Each entry says which scope it builds.

``KNOWN_BUGS``
    corstrace bugs the run found and reported, each with a regression test in
    tests/test_compat_regressions.py (``xfail(strict=True)`` until fixed). A wrapped failure (or a
    ``corstrace.internal_error`` or a blocking call by corstrace during a test) whose text matches a known
    bug's ``signature`` is counted under the first bug it matches instead of as a new finding. Strict like
    the regression tests: a known bug that a full run expects (``expected_in``) and no test shows any more
    fails the run, so whoever fixed it removes the entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Exclusion:
    suite: str
    test: str
    reason: str


@dataclass(frozen=True, slots=True)
class KnownBug:
    name: str
    summary: str
    # Searched (re.search) in the failure's text, or in an internal error's repr and traceback.
    signature: str
    regression_test: str
    # The full runs that must show the bug until it is fixed: "suite:inspector", plus "+origin" for a run with
    # an injected Origin (e.g. "starlette:on", "starlette:off+origin"). A bug that only shows behind another
    # one (its failure path is reached only through it) is expected nowhere.
    expected_in: tuple[str, ...] = ()

    def matches(self, text: str) -> bool:
        return re.search(self.signature, text) is not None


# None: corstrace passes a scope without the required `headers` key to the app untouched (Starlette's
# test_base.py builds such scopes by hand), so every test that passes bare passes wrapped.
EXCLUDED: tuple[Exclusion, ...] = ()

REGRESSIONS = "tests/test_compat_regressions.py::"

# Every bug the run found is fixed (their regression tests pass in tests/test_compat_regressions.py).
KNOWN_BUGS: tuple[KnownBug, ...] = ()

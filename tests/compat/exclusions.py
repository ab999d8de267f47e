"""What the compatibility run does not hold against corstrace, and the corstrace bugs it already knows.

The rule (issue 14): every test that passes bare must pass with corstrace wrapped around every app. Two lists
say which failures are not a new finding:

``EXCLUDED``
    Tests that cannot pass wrapped for a reason that is not a corstrace bug. Issue 14 allows one kind in the
    runs as the suites send their requests: the test calls the app with a hand-built HTTP scope that has no
    ``headers`` key, which the ASGI spec requires ("headers (Iterable[[byte string, byte string]])", no
    default), so no middleware that reads request headers can be expected to run on it. Each entry says which
    scope it builds. The runs with an injected ``Origin`` (our own stress mode: every request becomes
    cross-origin, and blocked where the app has no CORS layer) add a second kind, each entry ``injected_only``
    and excluding a failure only when its text matches the entry's ``signature``: the test asserts the exact
    telemetry of a request whose leg is then a blocked cross-origin one, which corstrace annotates by
    design (issue 18: a ``cors.blocked`` event on the request's span).

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
    # A node id, or a folder of the suite's tests ending in "/" (every test below it).
    test: str
    reason: str
    # Only in the runs with an injected Origin.
    injected_only: bool = False
    # When set, a failure is excluded only if its text matches (re.search): anything else is still a finding.
    signature: str | None = None

    def covers(self, nodeid: str, injected: bool) -> bool:
        """Whether this entry is about ``nodeid`` in a run with (``injected``) or without an injected Origin."""
        if self.injected_only and not injected:
            return False
        return nodeid.startswith(self.test) if self.test.endswith("/") else nodeid == self.test

    def excuses(self, failure: str) -> bool:
        """Whether ``failure`` (the wrapped run's failure text) is the difference this entry describes."""
        return self.signature is None or re.search(self.signature, failure) is not None


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
EXCLUDED: tuple[Exclusion, ...] = (
    Exclusion(
        "fastapi",
        "tests/test_telemetry/",
        "FastAPI's telemetry tests assert that the request's server span has no events; with the injected Origin "
        "and no CORS layer in these apps every leg is blocked, and corstrace adds its documented `cors.blocked` "
        "span event to that span (issue 18). Excluded only when the failure is that assertion about events.",
        injected_only=True,
        signature=r"(?m)^>\s+assert (all\(not (span|s)\.events|span\.events == \(\))",
    ),
)

REGRESSIONS = "tests/test_compat_regressions.py::"

# Every bug the run found is fixed (their regression tests pass in tests/test_compat_regressions.py).
KNOWN_BUGS: tuple[KnownBug, ...] = ()

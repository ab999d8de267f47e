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


_NO_HEADERS = "calls the app with a hand-built HTTP scope without the required `headers` key"

EXCLUDED: tuple[Exclusion, ...] = tuple(
    Exclusion("starlette", f"tests/middleware/test_base.py::{test}[{backend}]", f"{_NO_HEADERS} ({scope})")
    for test, scope in (
        ("test_do_not_block_on_background_tasks", "{'type': 'http', 'version': '3', 'method': 'GET', 'path': '/'}"),
        (
            "test_run_background_tasks_even_if_client_disconnects",
            "{'type': 'http', 'version': '3', 'method': 'GET', 'path': '/'}",
        ),
        (
            "test_run_context_manager_exit_even_if_client_disconnects",
            "{'type': 'http', 'version': '3', 'method': 'GET', 'path': '/'}",
        ),
        (
            "test_multiple_middlewares_stacked_client_disconnected",
            "{'type': 'http', 'version': '3', 'method': 'GET', 'path': '/'}",
        ),
    )
    for backend in ("asyncio", "trio")
)

REGRESSIONS = "tests/test_compat_regressions.py::"

KNOWN_BUGS: tuple[KnownBug, ...] = (
    KnownBug(
        name="token-file-read-in-the-event-loop",
        summary=(
            "CORSTraceMiddleware.__init__ reads (and on first use creates) the inspector token file; Starlette "
            "builds the middleware stack lazily inside the running loop, so under Starlette's blockbuster "
            "fixture the first request raises BlockingError out of the app (issue 14 item 3)"
        ),
        # The stack of the BlockingError the plugin recorded runs through the token module.
        signature=r"corstrace/_inspector/token\.py",
        regression_test=REGRESSIONS + "test_building_the_middleware_inside_the_loop_does_no_blocking_io",
        expected_in=("starlette:on", "starlette:on+origin"),
    ),
    KnownBug(
        name="inspector-hub-needs-asyncio",
        summary=(
            "Hub.close() calls asyncio.get_running_loop(): on the trio backend every lifespan shutdown logs "
            "corstrace.internal_error RuntimeError('no running event loop') (issue 14 item 2)"
        ),
        signature=r"RuntimeError\('no running event loop'\)",
        regression_test=REGRESSIONS + "test_lifespan_shutdown_on_trio_logs_no_internal_error",
        expected_in=("starlette:on", "starlette:on+origin"),
    ),
    KnownBug(
        name="exception-description-blocks-the-loop",
        summary=(
            "describing an exception that escaped the app calls os.path.relpath (os.getcwd) and reads source "
            "files through linecache inside the event loop; under blockbuster that raises, is swallowed as "
            "corstrace.internal_error, and the leg's event is lost (Starlette's tests whose endpoint raises, "
            "with an injected Origin)"
        ),
        signature=r"in _describe_exception\n",
        regression_test=REGRESSIONS + "test_an_escaping_exception_is_described_without_blocking_the_loop",
        expected_in=("starlette:off+origin", "starlette:on+origin"),
    ),
    KnownBug(
        name="list-valued-headers",
        summary=(
            "headers given as [name, value] lists (ASGI allows them; Starlette's own test apps send them) make "
            "the verdict and event caches raise TypeError('unhashable type: list'), swallowed as "
            "corstrace.internal_error: the leg's event is lost (issue 14 item 1)"
        ),
        signature=r"unhashable type: 'list'",
        regression_test=REGRESSIONS + "test_every_identical_leg_with_list_valued_response_headers_logs_an_event",
        expected_in=("starlette:off+origin", "starlette:on+origin"),
    ),
    KnownBug(
        name="scope-without-scheme",
        summary=(
            "corstrace reads scope['scheme'], which ASGI makes optional (default 'http'/'ws'): a cross-origin "
            "leg's event is lost (KeyError swallowed as corstrace.internal_error), and a same-origin request "
            "raises KeyError out of corstrace before the app runs"
        ),
        signature=r"KeyError\('scheme'\)|KeyError: 'scheme'",
        regression_test=REGRESSIONS + "test_a_scope_without_the_optional_scheme_is_traced_as_http",
        # FastAPI's test_async_dependency_cleanup.py builds such scopes too.
        expected_in=("starlette:off+origin", "starlette:on+origin", "fastapi:on+origin", "fastapi:off+origin"),
    ),
)

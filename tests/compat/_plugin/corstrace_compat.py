"""pytest plugin for the compatibility run: loaded (``-p corstrace_compat``) into a third-party test suite.

It runs inside Starlette's or FastAPI's own pytest process, never inside corstrace's. What it does is set by
environment variables the runner (``tests/compat/runner.py``) passes:

``CORSTRACE_COMPAT_MODE``
    ``bare`` records outcomes only; ``wrapped`` also makes ``CORSTraceMiddleware`` the outermost layer of
    every app the suite builds.
``CORSTRACE_COMPAT_INSPECTOR``
    ``on`` or ``off``: the ``inspector`` argument given to every ``CORSTraceMiddleware``.
``CORSTRACE_COMPAT_ROOT``
    The corstrace checkout under test; its ``corstrace`` package is imported from there, without putting the
    checkout on ``sys.path`` (its ``tests`` package would shadow the suite's own ``tests``).
``CORSTRACE_COMPAT_REPORT``
    Where to write the JSON report: each test's outcome, and the corstrace events it logged.
``CORSTRACE_COMPAT_INJECT_ORIGIN``
    An origin (e.g. ``http://compat.invalid``) that corstrace, and only corstrace, sees on every HTTP and
    WebSocket request that has none. Most tests send no ``Origin``, so corstrace would take its fast path
    for them; with this, every leg is traced, judged and logged, while the app below still gets the
    original scope (a layer outside corstrace adds the header to a copy, one inside hands the app the
    original). The app never answers for that origin, so most legs are judged blocked.

How the middleware gets outermost everywhere:

* ``Starlette.middleware_stack`` becomes a property whose setter wraps whatever stack is assigned. Starlette
  and FastAPI both build the stack lazily and assign it (``self.middleware_stack = self.build_middleware_stack()``),
  so this catches every subclass, including those that override ``build_middleware_stack`` (FastAPI does).
* Raw ASGI apps (anything not a Starlette instance) handed to ``TestClient`` or to httpx's or httpx2's
  ``ASGITransport`` are wrapped there. A Starlette app given to them directly is not wrapped twice; a raw
  middleware around one is, so corstrace is outermost there too (and once more inside: nesting is allowed).
  Raw apps that a test serves with a real server are not wrapped (neither suite does that with a raw app).

corstrace's own failures are swallowed by design (``corstrace.internal_error``, the request carries on), so a
test can pass wrapped while corstrace lost the leg's event: every ``corstrace.internal_error`` logged during a
test is recorded with its traceback, and the runner counts it as a failure. So is every blockbuster
``BlockingError`` raised with corstrace on the stack (Starlette's suite runs under blockbuster).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

MODE = os.environ.get("CORSTRACE_COMPAT_MODE", "bare")
INSPECTOR = os.environ.get("CORSTRACE_COMPAT_INSPECTOR", "on") == "on"
ROOT = os.environ.get("CORSTRACE_COMPAT_ROOT")
REPORT = os.environ.get("CORSTRACE_COMPAT_REPORT")
INJECT_ORIGIN = os.environ.get("CORSTRACE_COMPAT_INJECT_ORIGIN", "").encode("latin-1")
_ORIGINAL_SCOPE = "corstrace_compat.original_scope"

# nodeid -> {"outcome": ..., "longrepr": ..., "events": {...}, "internal_errors": [...], "traced": {...}}
_results: dict[str, dict[str, Any]] = {}
# What corstrace logged and traced since the last report was made: attached to the next report (the phase of
# the test that was running), so it reaches the controller under pytest-xdist too.
_pending: dict[str, Any] = {"events": Counter(), "internal_errors": [], "blocking_calls": [], "traced": Counter()}
_started = time.monotonic()
_PROPERTY = "corstrace_compat"


def _import_corstrace() -> Any:
    """Import ``corstrace`` from the checkout under test (not from wherever site-packages points)."""
    if ROOT is None:
        import corstrace

        return corstrace
    package = Path(ROOT) / "corstrace"
    spec = importlib.util.spec_from_file_location(
        "corstrace", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["corstrace"] = module
    spec.loader.exec_module(module)
    return module


def _recorder(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor, first in the chain: count corstrace's events, keep its internal errors in full."""
    name = event_dict.get("event")
    _pending["events"][str(name)] += 1
    if name == "corstrace.internal_error":
        exc = event_dict.get("exc_info")
        # The error's own traceback, apart from what it was raised during: known bugs are matched on the former.
        text = context = ""
        if isinstance(exc, BaseException):
            text = "".join(traceback.format_exception(exc, chain=False))
            context = "".join(traceback.format_exception(exc))[: -len(text) or None]
        _pending["internal_errors"].append(
            {"error": str(event_dict.get("error")), "traceback": text, "context": context}
        )
    return event_dict


def _install_blocking_recorder() -> None:
    """Record every blockbuster BlockingError raised with corstrace on the stack: corstrace blocked the loop.

    Starlette's autouse ``blockbuster`` fixture turns a blocking call into an exception; where corstrace's own
    construction raises it, the test only sees an empty 500, so the stack is kept here to name the culprit.
    """
    try:
        from blockbuster import blockbuster as module
    except ImportError:
        return
    package = str(Path(ROOT) / "corstrace") if ROOT else "corstrace"
    original = module.BlockingError.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        stack = traceback.extract_stack()[:-1]
        # Rendering a log line (structlog, and rich for tracebacks) is the application's logging setup at work.
        if any(frame.filename.startswith(package) for frame in stack) and not any(
            f"{os.sep}structlog{os.sep}" in frame.filename for frame in stack
        ):
            text = "".join(traceback.format_list(stack[-25:]))
            _pending["blocking_calls"].append({"error": f"BlockingError({str(self)!r})", "traceback": text})

    module.BlockingError.__init__ = init


def _install_recorder() -> None:
    import structlog

    processors = list(structlog.get_config()["processors"])
    structlog.configure(processors=[_recorder, *processors])


class _InjectOrigin:
    """Outside corstrace: corstrace gets a copy of the scope with INJECT_ORIGIN added (see the module doc)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = scope.get("headers")
        if scope["type"] in ("http", "websocket") and headers is not None:
            if not any(pair[0] == b"origin" for pair in headers):
                traced = dict(scope)
                traced["headers"] = [*headers, (b"origin", INJECT_ORIGIN)]
                traced[_ORIGINAL_SCOPE] = scope
                scope = traced
        await self.app(scope, receive, send)


class _OriginalScope:
    """Inside corstrace: the app gets the scope the server made, without the injected Origin."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope.get(_ORIGINAL_SCOPE, scope), receive, send)


def _install_wrapping() -> None:
    corstrace = _import_corstrace()
    middleware_cls = corstrace.CORSTraceMiddleware
    from starlette.applications import Starlette

    def wrap(app: Any) -> Any:
        if app is None or isinstance(app, (middleware_cls, _InjectOrigin)):
            return app
        _pending["traced"]["apps"] += 1
        if INJECT_ORIGIN:
            return _InjectOrigin(middleware_cls(_OriginalScope(app), inspector=INSPECTOR))
        return middleware_cls(app, inspector=INSPECTOR)

    # Count what reaches corstrace, so a run can show the wrapping really happened (a renamed attribute in a
    # new Starlette would otherwise turn the wrapped run into a second bare run, silently).
    traced_call = middleware_cls.__call__

    async def counted_call(self: Any, scope: Any, receive: Any, send: Any) -> None:
        kind = scope.get("type", "?")
        _pending["traced"][kind] += 1
        if kind in ("http", "websocket") and any(pair[0] == b"origin" for pair in scope.get("headers", ())):
            _pending["traced"][kind + "_with_origin"] += 1
        await traced_call(self, scope, receive, send)

    middleware_cls.__call__ = counted_call

    def get_stack(self: Any) -> Any:
        return self.__dict__.get("_corstrace_compat_stack")

    def set_stack(self: Any, value: Any) -> None:
        self.__dict__["_corstrace_compat_stack"] = wrap(value)

    Starlette.middleware_stack = property(get_stack, set_stack)  # type: ignore[assignment,method-assign]

    from starlette import testclient

    client_init = testclient.TestClient.__init__

    def test_client_init(self: Any, app: Any, *args: Any, **kwargs: Any) -> None:
        client_init(self, app, *args, **kwargs)
        if isinstance(app, Starlette):
            return  # wrapped inside, through middleware_stack
        # After __init__: an ASGI 2 app has been adapted to ASGI 3 (self.app) by then.
        wrapped = wrap(self.app)
        self.app = wrapped
        self._transport.app = wrapped

    testclient.TestClient.__init__ = test_client_init  # type: ignore[method-assign]

    for name in ("httpx", "httpx2"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        transport_cls = module.ASGITransport
        transport_init = transport_cls.__init__

        def asgi_transport_init(self: Any, app: Any, *args: Any, _init: Any = transport_init, **kwargs: Any) -> None:
            _init(self, app if isinstance(app, Starlette) else wrap(app), *args, **kwargs)

        transport_cls.__init__ = asgi_transport_init


def pytest_configure(config: pytest.Config) -> None:
    if MODE == "wrapped":
        _install_wrapping()
        _install_recorder()
        _install_blocking_recorder()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if any(_pending.values()):
        data = {key: dict(value) if isinstance(value, Counter) else list(value) for key, value in _pending.items()}
        report.user_properties.append((_PROPERTY, data))
        for value in _pending.values():
            value.clear()
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _results.setdefault(report.nodeid, {})
    for name, data in report.user_properties:
        if name == _PROPERTY:
            for key in ("events", "traced"):
                counter = entry.setdefault(key, Counter())
                counter.update(data.get(key, {}))
            for key in ("internal_errors", "blocking_calls"):
                entry.setdefault(key, []).extend(data.get(key, []))
    previous = entry.get("outcome")
    if report.failed:
        outcome = "error" if report.when != "call" else "failed"
        if previous not in ("failed", "error"):
            entry["outcome"] = outcome
            entry["when"] = report.when
            entry["longrepr"] = str(report.longrepr)[-6000:]
    elif report.skipped:
        if previous is None or previous == "passed":
            entry["outcome"] = "xfailed" if hasattr(report, "wasxfail") else "skipped"
    elif report.when == "call" and previous is None:
        entry["outcome"] = "xpassed" if hasattr(report, "wasxfail") else "passed"


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _results.setdefault(report.nodeid, {}).update(outcome="collection_error", longrepr=str(report.longrepr)[-6000:])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if REPORT is None or hasattr(session.config, "workerinput"):
        return  # under pytest-xdist the controller writes the report, from the reports the workers sent it
    tests = {}
    traced: Counter[str] = Counter()
    for nodeid, entry in _results.items():
        traced.update(entry.get("traced", {}))
        tests[nodeid] = {
            "outcome": entry.get("outcome", "unknown"),
            **({"when": entry["when"]} if "when" in entry else {}),
            **({"longrepr": entry["longrepr"]} if "longrepr" in entry else {}),
            **({"events": dict(entry["events"])} if entry.get("events") else {}),
            **({"internal_errors": entry["internal_errors"]} if entry.get("internal_errors") else {}),
            **({"blocking_calls": entry["blocking_calls"]} if entry.get("blocking_calls") else {}),
        }
    data = {
        "mode": MODE,
        "inspector": INSPECTOR,
        # What was installed: a bare and a wrapped run are comparable only on the same environment.
        "distributions": sorted(
            {f"{dist.metadata['Name']}=={dist.version}" for dist in importlib.metadata.distributions()}
        ),
        "seconds": round(time.monotonic() - _started, 1),
        "exitstatus": int(exitstatus),
        "traced": dict(traced),
        "tests": tests,
        # Logged outside any test phase in this process (the report of the phase it belongs to was sent).
        "outside_tests": {
            "events": dict(_pending["events"]),
            "internal_errors": list(_pending["internal_errors"]),
            "blocking_calls": list(_pending["blocking_calls"]),
        },
    }
    Path(REPORT).write_text(json.dumps(data, indent=1, sort_keys=True))

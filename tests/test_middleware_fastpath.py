"""The middleware's cheap paths never change what it reports.

- ``_verdict_key``: legs with equal keys get the same verdict, reason and requested method from ``evaluate()``,
  whatever else differs (path, query, other headers, the cookie's value): that is what lets the middleware
  remember decisions instead of re-running the engine.
- ``_events.debug_enabled``: False only when structlog is certain to drop a debug event, and it follows
  ``structlog.configure()`` and ``capture_logs()`` at once.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from corstrace import CORSTraceMiddleware
from corstrace import _log as _events
from corstrace._decision import Decisions, request_key_names
from corstrace._leg import Leg, decoded, scan
from corstrace._redact import redact_url
from corstrace.engine import Request, Response, evaluate

ORIGINS = [
    "http://localhost:3000",
    "https://localhost:3000",
    "http://127.0.0.1:8000",
    "null",
    " http://localhost:3000",
    "http://LOCALHOST:3000",
    "http://evil.example",
]
HOSTS = ["127.0.0.1:8000", "localhost:3000", "api.example"]
KEY_REQUEST = {
    "origin": st.sampled_from(ORIGINS),
    "sec-fetch-mode": st.sampled_from(["cors", "no-cors", "navigate", "same-origin"]),
    "access-control-request-method": st.sampled_from(["PUT", "GET", "post", "DELETE", "PUT "]),
    "access-control-request-headers": st.sampled_from(["content-type", "x-a, authorization", "X-B,content-type", ""]),
    "access-control-request-private-network": st.just("true"),
}
VALUES = st.sampled_from(["*", "http://localhost:3000", "http://evil.example", "true", "GET, PUT", "PUT", "", "a b"])
RESPONSE_NAMES = [
    "access-control-allow-origin",
    "Access-Control-Allow-Origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
    "access-control-expose-headers",
    "ACCESS-CONTROL-ALLOW-CREDENTIALS",
    "location",
    "Location",
    "vary",
    "content-type",
    "age",
    "link",
    "Last-Modified",
]
OTHER_REQUEST = [
    "user-agent",
    "accept",
    "referer",
    "authorization",
    "content-type",
    "x-requested-with",
    "sec-fetch-site",
]


@st.composite
def legs(draw: st.DrawFn) -> tuple[dict[str, Any], int | None, list[tuple[bytes, bytes]]]:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "OPTIONS", "OPTIONS", "DELETE"]))
    headers: list[tuple[bytes, bytes]] = [(b"host", draw(st.sampled_from(HOSTS)).encode())]
    for name, values in KEY_REQUEST.items():
        for _ in range(draw(st.integers(0, 2 if name == "origin" else 1))):
            headers.append((name.encode(), draw(values).encode()))
    if draw(st.booleans()):
        headers.append((b"cookie", b"session=abc"))
    headers = draw(st.permutations(headers))
    status = draw(st.sampled_from([200, 204, 400, 403, 500, None]))
    response = [
        (name.encode(), draw(VALUES).encode())
        for name in draw(st.lists(st.sampled_from(RESPONSE_NAMES), max_size=6))
        if status is not None
    ]
    scope = {
        "type": "http",
        "method": method,
        "scheme": draw(st.sampled_from(["http", "https"])),
        "server": ("127.0.0.1", 8000),
        "root_path": "",
        "path": "/items/1",
        "raw_path": b"/items/1",
        "query_string": b"",
        "headers": headers,
    }
    return scope, status, response


def _perturbed(scope: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """The same leg as far as the key goes: another path and query, other headers, another cookie value."""
    path = data.draw(st.sampled_from(["/", "/items/2", "/a/b/c", "/x%20y"]))
    headers = [(n, b"session=" + data.draw(st.binary(max_size=8)).hex().encode()) if n == b"cookie" else (n, v)
               for n, v in scope["headers"]]  # fmt: skip
    for name in data.draw(st.lists(st.sampled_from(OTHER_REQUEST), max_size=4)):
        headers.insert(data.draw(st.integers(0, len(headers))), (name.encode(), b"anything"))
    query = data.draw(st.sampled_from([b"", b"page=2", b"token=secret"]))
    return {**scope, "path": path, "raw_path": path.encode(), "query_string": query, "headers": headers}


def _leg(scope: dict[str, Any], status: int | None, response: list[tuple[bytes, bytes]]) -> Leg:
    """The leg the middleware would record for this request and answer."""
    host, keyed = scan(scope["headers"], request_key_names())
    origin = next((value for name, value in scope["headers"] if name == b"origin"), None)

    async def nothing(*args: Any) -> Any:  # pragma: no cover - the leg's ASGI wrappers are not used here
        return None

    leg = Leg(scope, origin or b"", host, keyed, nothing, nothing)
    leg.status = status
    leg.response_headers = response
    return leg


def _summary(scope: dict[str, Any], status: int | None, response: list[tuple[bytes, bytes]]) -> tuple[Any, ...]:
    """What the middleware would get from evaluate() for this leg (built the way the pipeline builds it)."""
    leg = _leg(scope, status, response)
    url = redact_url(leg.target().url())
    method = scope["method"]
    answer = Response(status, decoded(response)) if status is not None else None
    if leg.is_preflight():
        verdict = evaluate(Request(method, url, decoded(scope["headers"]), preflight=True), answer)
    else:
        verdict = evaluate(Request(method, url, decoded(scope["headers"])), answer)
    return verdict.verdict, verdict.reason, verdict.requested_method


def _key(scope: dict[str, Any], status: int | None, response: list[tuple[bytes, bytes]]) -> tuple[Any, ...] | None:
    return Decisions().key(_leg(scope, status, response))


@settings(max_examples=600, deadline=None)
@given(leg=legs(), data=st.data())
def test_equal_keys_mean_equal_decisions(
    leg: tuple[dict[str, Any], int | None, list[tuple[bytes, bytes]]], data: st.DataObject
) -> None:
    scope, status, response = leg
    other = _perturbed(scope, data)
    key = _key(scope, status, response)
    assert key is not None
    assert _key(other, status, response) == key
    assert _summary(other, status, response) == _summary(scope, status, response)


@settings(max_examples=300, deadline=None)
@given(first=legs(), second=legs())
def test_keys_collide_only_for_equal_decisions(
    first: tuple[dict[str, Any], int | None, list[tuple[bytes, bytes]]],
    second: tuple[dict[str, Any], int | None, list[tuple[bytes, bytes]]],
) -> None:
    if _key(*first) == _key(*second):
        assert _summary(*first) == _summary(*second)


def test_a_path_that_is_not_absolute_is_never_keyed() -> None:
    scope = {"method": "OPTIONS", "scheme": "http", "path": "*", "raw_path": b"*", "headers": [(b"host", b"api:8000")]}
    assert _key(scope, 200, []) is None
    assert _key({**scope, "raw_path": b"/x", "headers": []}, 200, []) is None  # no Host: the origin is unknown


# --- debug_enabled ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("restore_structlog")
def test_debug_enabled_follows_the_configuration() -> None:
    structlog.reset_defaults()
    assert _events.debug_enabled()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    assert not _events.debug_enabled()
    with capture_logs():
        assert not _events.debug_enabled()  # capture_logs only swaps processors: debug is still dropped
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    assert _events.debug_enabled()
    # Any other wrapper class may keep debug events (stdlib logging decides later): treated as enabled.
    structlog.configure(wrapper_class=structlog.stdlib.BoundLogger)
    assert _events.debug_enabled()


@pytest.mark.usefixtures("restore_structlog")
def test_debug_enabled_follows_a_logger_cached_on_first_use() -> None:
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING), cache_logger_on_first_use=True
    )
    _events.logger.warning("first use caches the filtering logger")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    assert not _events.debug_enabled()  # the cached logger still drops debug, so nothing is built


def _app() -> Any:
    app = Starlette(routes=[Route("/items", lambda request: PlainTextResponse("ok"))])
    app.add_middleware(CORSMiddleware, allow_origins=["http://localhost:3000"])
    app.add_middleware(CORSTraceMiddleware, inspector=False)
    return app


@pytest.mark.usefixtures("restore_structlog")
def test_filtered_debug_changes_no_event_that_is_logged() -> None:
    """Blocked events are identical whether debug is kept or dropped; allowed ones are simply not built."""

    def run() -> list[dict[str, Any]]:
        with TestClient(_app()) as client, capture_logs() as logs:
            for origin in ("http://localhost:3000", "http://evil.example", "http://localhost:3000"):
                client.get("/items", headers={"Origin": origin})
                client.options("/items", headers={"Origin": origin, "Access-Control-Request-Method": "GET"})
        for entry in logs:
            entry.pop("duration_ms", None)
            entry.pop("exchange_id", None)
        return logs

    structlog.reset_defaults()
    everything = run()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    filtered = run()
    assert [e["event"] for e in everything].count("cors.allowed") == 4
    assert filtered == [e for e in everything if e["log_level"] != "debug"]
    assert {e["event"] for e in filtered} == {"cors.blocked"}


# --- remembered events ------------------------------------------------------------------------------


def _allowed_events(requests: list[dict[str, str]]) -> list[dict[str, Any]]:
    with TestClient(_app()) as client, capture_logs() as logs:
        for headers in requests:
            client.get("/items", headers={"Origin": "http://localhost:3000", **headers})
    events = [entry for entry in logs if entry["event"] == "cors.allowed"]
    assert len(events) == len(requests)
    return events


def _without_per_leg_fields(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in ("exchange_id", "duration_ms")}


@pytest.mark.usefixtures("restore_structlog")
def test_a_repeated_leg_gets_the_event_a_fresh_build_gives() -> None:
    structlog.reset_defaults()
    first, second = _allowed_events([{}, {}])
    assert _without_per_leg_fields(second) == _without_per_leg_fields(first)
    assert second["exchange_id"] != first["exchange_id"]


@pytest.mark.usefixtures("restore_structlog")
def test_a_remembered_event_follows_every_request_header() -> None:
    structlog.reset_defaults()
    first, second = _allowed_events([{"X-Trace": "one"}, {"X-Trace": "two"}])
    assert ["x-trace", "one"] in first["request_headers"]
    assert ["x-trace", "two"] in second["request_headers"]


def _crash_events(crash: Any, count: int) -> list[dict[str, Any]]:
    """``count`` identical requests to one URL whose handler is ``crash``.

    A first crash is described without the source lines linecache does not hold yet (reading them would block the
    event loop) and they are read in a thread: a warm-up crash and ``settle()`` first, so every event compared
    here has them.
    """
    from corstrace import _crash

    def warm_up(request: Any) -> Any:
        raise RuntimeError("warm-up")

    app = Starlette(routes=[Route("/crash", crash), Route("/warm-up", warm_up)])
    app.add_middleware(CORSMiddleware, allow_origins=["http://localhost:3000"])
    app.add_middleware(CORSTraceMiddleware, inspector=False, aggregate_window=0)
    with TestClient(app, raise_server_exceptions=False) as client, capture_logs() as logs:
        client.get("/warm-up", headers={"Origin": "http://localhost:3000"})
        _crash.settle()
        for _ in range(count):
            client.get("/crash", headers={"Origin": "http://localhost:3000"})
    return [entry for entry in logs if entry["event"] == "cors.blocked" and entry["path"] == "/crash"]


@pytest.mark.usefixtures("restore_structlog")
def test_a_repeated_crash_gets_the_event_a_fresh_build_gives() -> None:
    structlog.reset_defaults()
    upcoming = iter(["db down", "db down", "disk full"])

    def crash(request: Any) -> Any:
        raise RuntimeError(next(upcoming))

    first, second, other = _crash_events(crash, 3)
    assert _without_per_leg_fields(second) == _without_per_leg_fields(first)
    assert first["exception_message"] == "db down" and other["exception_message"] == "disk full"
    assert "disk full" in other["exception"]


@pytest.mark.usefixtures("restore_structlog")
def test_the_same_crash_raised_from_another_line_gets_its_own_event() -> None:
    structlog.reset_defaults()
    first_call = iter([True, False])

    def crash(request: Any) -> Any:
        if next(first_call):
            raise RuntimeError("db down")
        raise RuntimeError("db down")

    first, second = _crash_events(crash, 2)
    first_line = int(first["exception_where"].rsplit(":", 1)[1])
    assert second["exception_where"].endswith(f":{first_line + 1}")
    assert first["exception"] != second["exception"]


@pytest.mark.usefixtures("restore_structlog")
def test_a_crash_description_honours_sys_tracebacklimit(monkeypatch: pytest.MonkeyPatch) -> None:
    structlog.reset_defaults()

    def crash(request: Any) -> Any:
        raise RuntimeError("db down")

    (default,) = _crash_events(crash, 1)
    monkeypatch.setattr(sys, "tracebacklimit", 1, raising=False)
    (limited,) = _crash_events(crash, 1)
    # The default shows the last frames, ending at the raise; a limit of 1 keeps only the outermost frame,
    # where the exception passed through corstrace on its way out.
    assert default["exception_where"].endswith(f":{crash.__code__.co_firstlineno + 1}")
    assert "corstrace/middleware.py:" in limited["exception_where"]
    assert limited["exception"].count('  File "') == 1

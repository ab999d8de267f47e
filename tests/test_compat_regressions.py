"""Regressions found by running other people's code through corstrace (issue 14).

Each test is one bug the compatibility run (``python -m tests.compat``, tests/compat/) or a third-party
package found, reduced to a raw ASGI harness. A test for a bug not fixed yet is marked
``xfail(strict=True)``: it fails today, and once the middleware is fixed it passes, which strict xfail turns
into a failure so whoever fixed it removes the mark.

Item 1 of the issue: ASGI allows headers as ``[name, value]`` lists (``Iterable[[byte string, byte string]]``)
and ``asgi-cors`` and Starlette's own tests send them. corstrace must judge and log every such leg (the
second and later identical ones included, which the verdict and event caches serve) and change nothing.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Sequence
from typing import Any

import anyio
import pytest
import structlog

from corstrace import CORSTraceMiddleware
from tests.support import http_scope

pytestmark = pytest.mark.anyio

FRONTEND = "http://localhost:3000"
LEG_EVENTS = ("cors.allowed", "cors.blocked")

LIST_HEADERS_LOSE_EVENTS = (
    "Issue 14 item 1: list-valued headers raise TypeError('unhashable type: list') in the verdict/event "
    "caches (_verdict_key, _leg_event), swallowed as corstrace.internal_error: the leg's event is lost"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _app(headers: Sequence[Any], status: int = 200) -> Any:
    """A raw ASGI app answering every request with ``headers`` exactly as given (lists stay lists)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def _list_headers(origin: str = FRONTEND) -> list[list[bytes]]:
    return [
        [b"access-control-allow-origin", origin.encode()],
        [b"access-control-allow-methods", b"GET, PUT"],
        [b"content-type", b"text/plain"],
    ]


async def _request(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    """Send one HTTP request through ``app``; every message the server got, as it got it."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _legs(method: str = "GET", extra: Sequence[tuple[bytes, bytes]] = (), *, as_lists: bool = False) -> Any:
    scope = http_scope(method, "/items", [(b"origin", FRONTEND.encode()), *extra])
    if as_lists:
        scope["headers"] = [list(pair) for pair in scope["headers"]]
    return scope


def _leg_events(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] in LEG_EVENTS]


async def test_list_valued_response_headers_reach_the_server_unchanged() -> None:
    """The server gets the very header list the app sent, lists and all, on every leg."""
    headers = _list_headers()
    traced = CORSTraceMiddleware(_app(headers), inspector=False)
    for _ in range(3):
        bare = await _request(_app(headers), _legs())
        sent = await _request(traced, _legs())
        assert sent == bare
        assert sent[0]["headers"] is headers
        assert sent[0]["headers"] == _list_headers()


async def test_every_identical_leg_with_list_valued_response_headers_logs_an_event() -> None:
    """Three identical legs answered with ``[name, value]`` headers: three ``cors.allowed`` events, no error."""
    traced = CORSTraceMiddleware(_app(_list_headers()), inspector=False)
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            await _request(traced, _legs())
    assert [entry for entry in logs if entry["event"] == "corstrace.internal_error"] == []
    assert [(e["event"], e["verdict"]) for e in _leg_events(logs)] == [("cors.allowed", "allowed")] * 3


async def test_list_valued_request_headers_in_the_scope_log_every_leg() -> None:
    """A scope whose request headers are ``[name, value]`` lists: every leg, preflight included, is logged."""
    traced = CORSTraceMiddleware(_app([(b"access-control-allow-origin", FRONTEND.encode())]), inspector=False)
    preflight = [(b"access-control-request-method", b"GET")]
    with structlog.testing.capture_logs() as logs:
        await _request(traced, _legs("OPTIONS", preflight, as_lists=True))
        for _ in range(2):
            await _request(traced, _legs(as_lists=True))
    assert [entry for entry in logs if entry["event"] == "corstrace.internal_error"] == []
    assert [(e["preflight"], e["verdict"]) for e in _leg_events(logs)] == [
        (True, "allowed"),
        (False, "allowed"),
        (False, "allowed"),
    ]


@pytest.mark.parametrize("allowed_origin", [FRONTEND, "http://localhost:5173"], ids=["allowed", "blocked"])
async def test_list_valued_headers_are_judged_exactly_like_tuples(allowed_origin: str) -> None:
    """The same response as lists or as tuples gives the same verdict, reason, message and headers shown."""
    as_lists = _list_headers(allowed_origin)
    as_tuples = [tuple(pair) for pair in as_lists]
    events = []
    for headers in (as_tuples, as_lists):
        with structlog.testing.capture_logs() as logs:
            await _request(CORSTraceMiddleware(_app(headers), inspector=False), _legs())
        (event,) = _leg_events(logs)
        events.append(event)
    fields = ("event", "verdict", "reason", "browser_message", "response_headers", "status")
    assert [events[1][name] for name in fields] == [events[0][name] for name in fields]


async def test_a_str_header_value_as_asgi_cors_sends_it_is_judged_and_logged() -> None:
    """``[b"access-control-max-age", "600"]`` (a str value): the leg is logged, the value shown as sent."""
    headers = [
        (b"access-control-allow-origin", FRONTEND.encode()),
        (b"access-control-allow-methods", b"PUT"),
        (b"access-control-max-age", "600"),
    ]
    traced = CORSTraceMiddleware(_app(headers), inspector=False)
    with structlog.testing.capture_logs() as logs:
        sent = await _request(traced, _legs("OPTIONS", [(b"access-control-request-method", b"PUT")]))
    assert sent[0]["headers"] is headers
    assert [entry for entry in logs if entry["event"] == "corstrace.internal_error"] == []
    (event,) = _leg_events(logs)
    assert (event["event"], event["preflight"]) == ("cors.allowed", True)
    assert ["access-control-max-age", "600"] in [list(pair) for pair in event["response_headers"]]


async def _inspector_records(traced: CORSTraceMiddleware) -> list[dict[str, Any]]:
    """The leg records the inspector sends a new client, read over its real WebSocket endpoint in-process."""
    url = traced.inspector_url("127.0.0.1", 8000)
    assert url is not None
    token = urllib.parse.unquote(url.split("#token=", 1)[1])
    query = b""
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/_corstrace/ws",
        "raw_path": b"/_corstrace/ws",
        "query_string": query,
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"origin", b"http://127.0.0.1:8000"),
            # The token as the page presents it: a subprotocol (see corstrace/_inspector/security.py).
            (b"sec-websocket-protocol", b"corstrace.v1, corstrace.auth." + token.encode().hex().encode()),
        ],
        "client": ("127.0.0.1", 50001),
        "server": ("127.0.0.1", 8000),
        "subprotocols": [],
    }
    records: list[dict[str, Any]] = []
    synced = anyio.Event()
    connected = False

    async def receive() -> dict[str, Any]:
        nonlocal connected
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        await synced.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.close":
            synced.set()
        if message["type"] != "websocket.send":
            return
        data = json.loads(message["text"])
        if data.get("type") == "events":
            records.extend(record for record in data["events"] if record.get("type") == "leg")
        elif data.get("type") == "synced":
            synced.set()

    with anyio.fail_after(10):
        await traced(scope, receive, send)
    return records


async def test_every_leg_with_list_valued_headers_reaches_the_inspector(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the inspector on, each of three identical list-header legs is one record a new client gets."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    traced = CORSTraceMiddleware(_app(_list_headers()), inspector=True)
    with structlog.testing.capture_logs():
        for _ in range(3):
            await _request(traced, _legs())
    records = await _inspector_records(traced)
    assert [(record["verdict"], record["path"]) for record in records] == [("allowed", "/items")] * 3


async def test_tuple_headers_reach_the_inspector(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Control for the test above: the in-process inspector client sees tuple-header legs (it can pass)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    traced = CORSTraceMiddleware(_app([(b"access-control-allow-origin", FRONTEND.encode())]), inspector=True)
    with structlog.testing.capture_logs():
        for _ in range(3):
            await _request(traced, _legs())
    records = await _inspector_records(traced)
    assert [(record["verdict"], record["path"]) for record in records] == [("allowed", "/items")] * 3


# --- found by the compatibility run (tests/compat/exclusions.py KNOWN_BUGS) -------------------------------


async def _lifespan(app: Any) -> list[dict[str, Any]]:
    """Run one lifespan startup and shutdown through ``app``; the messages it sent."""
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    return sent


async def _lifespan_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_lifespan_shutdown_on_trio_logs_no_internal_error(
    anyio_backend: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inspector's hub starts and closes on trio as on asyncio: both lifespan steps complete, nothing logged."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    traced = CORSTraceMiddleware(_lifespan_app, inspector=True)
    with structlog.testing.capture_logs() as logs:
        sent = await _lifespan(traced)
    assert [message["type"] for message in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert [entry for entry in logs if entry["event"] == "corstrace.internal_error"] == []


async def test_building_the_middleware_inside_the_loop_does_no_blocking_io(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Starlette app with the default setup answers its first request in the loop with no blocking call."""
    from blockbuster import BlockingError, blockbuster_ctx
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def index(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "fresh-cache"))
    # The default setup: no token or switch from the environment (bench/apps.py sets a token at import).
    monkeypatch.delenv("CORSTRACE_INSPECTOR_TOKEN", raising=False)
    monkeypatch.delenv("CORSTRACE_INSPECTOR", raising=False)
    app = Starlette(routes=[Route("/", index)])
    app.add_middleware(CORSTraceMiddleware)
    with structlog.testing.capture_logs(), blockbuster_ctx(["corstrace"]):
        try:
            sent = await _request(app, http_scope("GET", "/", [(b"origin", FRONTEND.encode())]))
        except BlockingError as exc:
            raise AssertionError(f"blocking call in the event loop: {exc}") from exc
    assert sent[0]["status"] == 200


async def test_an_escaping_exception_is_described_without_blocking_the_loop() -> None:
    """A cross-origin request whose app raises is logged with its exception, and no blocking call runs."""
    import linecache

    from blockbuster import blockbuster_ctx

    async def crash(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise RuntimeError("database is down")

    traced = CORSTraceMiddleware(crash, inspector=False)
    linecache.clearcache()  # the source lines a description shows are not read yet, as in a fresh process
    with structlog.testing.capture_logs() as logs, blockbuster_ctx(["corstrace"]):
        with pytest.raises(RuntimeError, match="database is down"):
            await _request(traced, _legs())
    assert [entry for entry in logs if entry["event"] == "corstrace.internal_error"] == []
    (event,) = _leg_events(logs)
    assert (event["event"], event["exception_type"]) == ("cors.blocked", "RuntimeError")


SCHEME_IS_OPTIONAL = (
    "corstrace reads scope['scheme'], optional in ASGI (default 'http'): KeyError (Starlette's "
    "test_asgi_pathsend_events builds such a scope)"
)


def _without_scheme(origin: str) -> dict[str, Any]:
    scope = http_scope("GET", "/items", [(b"origin", origin.encode())])
    del scope["scheme"]
    return scope


async def test_a_scope_without_the_optional_scheme_is_traced_as_http() -> None:
    """No ``scheme`` in the scope: the leg is judged and logged, its URL an http:// one."""
    traced = CORSTraceMiddleware(_app([(b"access-control-allow-origin", FRONTEND.encode())]), inspector=False)
    with structlog.testing.capture_logs() as logs:
        await _request(traced, _without_scheme(FRONTEND))
    assert [entry for entry in logs if entry["event"] == "corstrace.internal_error"] == []
    (event,) = _leg_events(logs)
    assert (event["verdict"], event["url"]) == ("allowed", "http://api.test/items")


async def test_a_same_origin_request_without_the_optional_scheme_reaches_the_app() -> None:
    """Origin equal to the Host and no ``scheme``: corstrace steps aside, the app answers as without it."""
    traced = CORSTraceMiddleware(_app([(b"content-type", b"text/plain")]), inspector=False)
    sent = await _request(traced, _without_scheme("http://api.test"))
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]

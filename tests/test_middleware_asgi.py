"""Raw ASGI harnesses: what TestClient hides — exact messages, streaming, lifespan, cancellation."""

from __future__ import annotations

import gc
import itertools
import weakref
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import structlog
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from corstrace import CORSTraceMiddleware
from tests.support import http_scope

pytestmark = pytest.mark.anyio

FRONTEND = "http://localhost:3000"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _items(request: Request) -> Response:
    return JSONResponse({"items": [1, 2, 3], "q": request.query_params.get("q")})


async def _stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for n in range(3):
            yield f"data: {n}\n\n".encode()

    return StreamingResponse(chunks(), media_type="text/event-stream")


async def _crash(request: Request) -> Response:
    raise RuntimeError("boom")


async def _redirect(request: Request) -> Response:
    return RedirectResponse("/items", status_code=307)


async def _status(request: Request) -> Response:
    code = int(request.path_params["code"])
    return PlainTextResponse("x" * 10, status_code=code, headers={"Set-Cookie": "a=b", "X-Custom": "1"})


ROUTES = [
    Route("/items", _items, methods=["GET", "POST", "PUT", "DELETE"]),
    Route("/stream", _stream),
    Route("/crash", _crash),
    Route("/redirect", _redirect),
    Route("/status/{code}", _status),
]


def _stack(traced: bool, **cors: Any) -> ASGIApp:
    app: ASGIApp = CORSMiddleware(Starlette(routes=ROUTES), **cors)
    return CORSTraceMiddleware(app, inspector=False) if traced else app


async def call(
    app: ASGIApp, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> list[Message]:
    """Run one HTTP request through ``app`` and return every message it sent (exceptions become a marker)."""
    path, _, query = path.partition("?")
    scope = http_scope(method, path, headers, query=query.encode())
    sent: list[Message] = []
    received = False

    async def receive() -> Message:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async def send(message: Message) -> None:
        sent.append(message)

    try:
        await app(scope, receive, send)
    except Exception as exc:
        sent.append({"type": "exception", "repr": repr(exc)})
    return sent


ORIGINS: list[bytes | None] = [
    None,
    FRONTEND.encode(),
    b"http://localhost:5173",
    b"null",
    b"http://api.test",
    b"<img src=x onerror=alert(1)>",
    b"http://\xff\xfe.test",
    b"",
    b"x" * 10_000,
]
REQUESTS: list[tuple[str, str, list[tuple[bytes, bytes]]]] = [
    ("GET", "/items?q=1", []),
    ("POST", "/items", [(b"content-type", b"application/json")]),
    ("PUT", "/items", [(b"authorization", b"Bearer t"), (b"cookie", b"s=1")]),
    ("OPTIONS", "/items", [(b"access-control-request-method", b"PUT")]),
    (
        "OPTIONS",
        "/items",
        [(b"access-control-request-method", b"GET"), (b"access-control-request-headers", b"x-a,x-b")],
    ),
    ("OPTIONS", "/items", [(b"access-control-request-method", b"\x00\xff")]),
    ("OPTIONS", "/items", []),
    ("GET", "/stream", []),
    ("GET", "/crash", []),
    ("GET", "/redirect", []),
    ("GET", "/status/401", []),
    ("GET", "/status/500", [(b"origin", b"http://second.test")]),
    ("DELETE", "/missing", []),
]
CONFIGS: list[dict[str, Any]] = [
    {"allow_origins": [FRONTEND]},
    {"allow_origins": ["*"], "allow_credentials": True, "allow_methods": ["*"], "allow_headers": ["*"]},
    {"allow_origin_regex": r"http://localhost:\d+", "expose_headers": ["X-Custom"], "max_age": 5},
]


@pytest.mark.parametrize("cors", CONFIGS, ids=["list", "wildcard-credentials", "regex"])
async def test_responses_are_identical_with_and_without_corstrace(cors: dict[str, Any]) -> None:
    """Status, headers and body bytes of every response are the same with and without the tracer."""
    bare, traced = _stack(False, **cors), _stack(True, **cors)
    count = 0
    with structlog.testing.capture_logs():
        for origin, (method, path, headers) in itertools.product(ORIGINS, REQUESTS):
            request_headers = ([(b"origin", origin)] if origin is not None else []) + headers
            expected = await call(bare, method, path, request_headers)
            actual = await call(traced, method, path, request_headers)
            assert actual == expected, (origin, method, path)
            count += 1
    assert count == len(ORIGINS) * len(REQUESTS)


async def test_streaming_response_delivers_first_chunk_before_the_stream_ends() -> None:
    """Bodies are never buffered: the first chunk arrives while the app still holds the stream open."""
    release = anyio.Event()

    async def sse(request: Request) -> Response:
        async def events() -> AsyncIterator[bytes]:
            yield b"data: first\n\n"
            await release.wait()
            yield b"data: last\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    app = CORSTraceMiddleware(CORSMiddleware(Starlette(routes=[Route("/sse", sse)]), allow_origins=[FRONTEND]))
    scope = http_scope("GET", "/sse", [(b"origin", FRONTEND.encode())])
    bodies: list[bytes] = []

    async def receive() -> Message:
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message["body"])
            if message["body"] == b"data: first\n\n":
                release.set()  # only reachable if the first chunk was passed on before the stream ended

    with structlog.testing.capture_logs(), anyio.fail_after(10):
        await app(scope, receive, send)
    assert bodies[:2] == [b"data: first\n\n", b"data: last\n\n"]


async def test_lifespan_messages_pass_through_untouched() -> None:
    """Lifespan startup and shutdown messages reach the app and the server unchanged."""
    seen_by_app: list[Message] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            seen_by_app.append(message)
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    outbox: list[Message] = []

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        outbox.append(message)

    with structlog.testing.capture_logs():
        await CORSTraceMiddleware(app, inspector=False)({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert seen_by_app == [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    assert outbox == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


async def test_cancelled_request_is_recorded_as_cancelled() -> None:
    """A request task cancelled before responding leaves one cors.aborted event, outcome cancelled."""
    started = anyio.Event()

    async def slow(request: Request) -> Response:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    app = CORSTraceMiddleware(CORSMiddleware(Starlette(routes=[Route("/slow", slow)]), allow_origins=[FRONTEND]))
    with structlog.testing.capture_logs() as logs:
        async with anyio.create_task_group() as group:
            group.start_soon(call, app, "GET", "/slow", [(b"origin", FRONTEND.encode())])
            await started.wait()
            group.cancel_scope.cancel()
    (event,) = [e for e in logs if e["event"].startswith("cors.")]
    assert event["event"] == "cors.aborted" and event["outcome"] == "cancelled"


async def test_client_disconnect_mid_stream_is_recorded() -> None:
    """A client leaving mid-stream is recorded with the verdict of the headers it got and outcome disconnected."""

    async def endless(request: Request) -> Response:
        async def events() -> AsyncIterator[bytes]:
            while True:
                yield b"data: tick\n\n"
                await anyio.sleep(0)

        return StreamingResponse(events(), media_type="text/event-stream")

    app = CORSTraceMiddleware(CORSMiddleware(Starlette(routes=[Route("/sse", endless)]), allow_origins=[FRONTEND]))
    scope = http_scope("GET", "/sse", [(b"origin", FRONTEND.encode())])
    chunks = 0
    gone = anyio.Event()

    async def receive() -> Message:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal chunks
        if message["type"] == "http.response.body":
            chunks += 1
            if chunks == 3:
                gone.set()

    with structlog.testing.capture_logs() as logs, anyio.fail_after(10):
        await app(scope, receive, send)
    (event,) = [e for e in logs if e["event"].startswith("cors.")]
    assert event["outcome"] == "client_disconnected"
    assert event["status"] == 200 and event["verdict"] == "allowed"


async def test_a_failed_request_leaves_no_reference_cycle_behind() -> None:
    """The leg keeps the escaped exception for its event; afterwards plain reference counting frees it all."""

    class Marker:
        pass

    app = _stack(True, allow_origins=[FRONTEND])
    await call(app, "GET", "/crash", [(b"origin", FRONTEND.encode())])  # warm-up: startup discovery and lint
    marker = Marker()
    alive = weakref.ref(marker)
    scope = http_scope("GET", "/crash", [(b"origin", FRONTEND.encode())])
    scope["marker"] = marker

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    gc.disable()
    try:
        with pytest.raises(RuntimeError):
            await app(scope, receive, send)
        del scope, marker
        assert alive() is None
    finally:
        gc.enable()


async def test_response_headers_given_as_a_one_shot_iterable_reach_the_server_and_the_verdict() -> None:
    """An app may send its headers as a generator: the server still gets them all, and the leg is judged on them."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = iter([(b"access-control-allow-origin", FRONTEND.encode()), (b"content-type", b"text/plain")])
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append({**message, "headers": list(message["headers"])} if "headers" in message else message)

    traced = CORSTraceMiddleware(app, inspector=False)
    with structlog.testing.capture_logs() as logs:
        await traced(http_scope("GET", "/items", [(b"origin", FRONTEND.encode())]), receive, send)
    assert sent[0]["headers"] == [(b"access-control-allow-origin", FRONTEND.encode()), (b"content-type", b"text/plain")]
    allowed = [entry for entry in logs if entry["event"] == "cors.allowed"]
    assert len(allowed) == 1 and allowed[0]["verdict"] == "allowed"
    assert ["access-control-allow-origin", FRONTEND] in allowed[0]["response_headers"]

"""The benchmarked applications and requests: one FastAPI route behind CORSMiddleware, in every variant.

Every app is built with FastAPI's native tracing off and OpenTelemetry only ever gets an explicit
``tracer_provider``: a global provider would switch FastAPI's own tracing on for *every* app in the
process, and the "bare" baseline would silently carry OpenTelemetry's cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Scope

from corstrace import CORSTraceMiddleware

ALLOWED_ORIGIN = "http://localhost:3000"
BLOCKED_ORIGIN = "http://evil.example"
HOST = "127.0.0.1:8000"
# A fixed token, so the benchmark never touches the user's cache directory.
INSPECTOR_TOKEN = "bench-inspector-token-0123456789abcdef"
os.environ.setdefault("CORSTRACE_INSPECTOR_TOKEN", INSPECTOR_TOKEN)

# The variants of the in-process table, in display order. "bare2" is a second identical bare app: the noise floor.
VARIANTS = ("bare", "bare2", "observing", "deciding", "corstrace", "inspector", "stalled", "otel")
VARIANT_LABELS = {
    "bare": "bare FastAPI + CORSMiddleware",
    "bare2": "second bare app (noise floor)",
    "observing": "floor: finds Origin, reads the response start",
    "deciding": "floor: + decides every leg (cached verdicts)",
    "corstrace": "+ corstrace (production: inspector off, debug filtered, JSON)",
    "inspector": "+ corstrace, inspector on, one reading client",
    "stalled": "+ corstrace, inspector on, one stalled client",
    "otel": "+ OpenTelemetry ASGI middleware (SDK provider)",
    # Counted by bench.instructions only (not in the timed table):
    "no-otel": "+ corstrace, opentelemetry-api not installed (simulated)",
    "otel+corstrace": "+ OpenTelemetry ASGI middleware, corstrace inside its span",
}
KINDS = ("no_origin", "simple", "preflight", "blocked", "error")
KIND_LABELS = {
    "no_origin": "no `Origin`",
    "simple": "allowed simple GET",
    "preflight": "allowed preflight",
    "blocked": "blocked GET",
    "error": "handler raises",
}

_BROWSER_HEADERS = [
    (b"host", HOST.encode()),
    (b"connection", b"keep-alive"),
    (
        b"user-agent",
        b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36",
    ),
    (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip, deflate, br, zstd"),
    (b"accept-language", b"en-GB,en;q=0.9"),
    (b"sec-fetch-site", b"cross-site"),
    (b"sec-fetch-mode", b"cors"),
    (b"sec-fetch-dest", b"empty"),
]


def configure_production_logging() -> None:
    """The README's production setup: JSON lines, debug filtered out; rendered lines go to /dev/null."""
    sink = open(os.devnull, "w")  # lives as long as the process
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=sink),
        cache_logger_on_first_use=False,
    )


def fastapi_app() -> FastAPI:
    """The bare stack: one JSON route (plus one that raises) behind CORSMiddleware."""
    app = FastAPI(telemetry={"tracing": False})  # type: ignore[call-arg,unused-ignore]

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, Any]:
        return {"id": item_id, "name": "widget", "price": 3.5}

    @app.get("/boom")
    async def boom() -> dict[str, Any]:
        raise RuntimeError("database is down")

    app.add_middleware(
        CORSMiddleware,
        allow_origins=[ALLOWED_ORIGIN],
        allow_origin_regex=r"http://app\d+\.example",
        allow_methods=["GET", "POST", "PUT"],
        allow_headers=["content-type", "authorization"],
    )
    return app


def build(variant: str) -> ASGIApp:
    """One variant's ASGI app (a fresh FastAPI app each time: no state shared between variants)."""
    app = fastapi_app()
    if variant in ("bare", "bare2"):
        return app
    if variant in ("observing", "deciding"):
        from bench.floor import DecidingLayer, ObservingLayer

        app.add_middleware(ObservingLayer if variant == "observing" else DecidingLayer)
        return app
    if variant == "corstrace":
        app.add_middleware(CORSTraceMiddleware, inspector=False)
        return app
    if variant == "no-otel":
        # FastAPI itself imports opentelemetry-api (a dependency since 0.16x), so corstrace's probe for it is what
        # is hidden: the stack is built now, while find_spec() finds no OpenTelemetry.
        app.add_middleware(CORSTraceMiddleware, inspector=False)
        with _opentelemetry_not_found():
            app.middleware_stack = app.build_middleware_stack()
        return app
    if variant in ("inspector", "stalled"):
        app.add_middleware(CORSTraceMiddleware, inspector=True)
        return app
    if variant == "otel":
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        from opentelemetry.sdk.trace import TracerProvider

        # An explicit provider, never a global one (see the module docstring).
        return OpenTelemetryMiddleware(app, tracer_provider=TracerProvider())
    if variant == "otel+corstrace":
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        from opentelemetry.sdk.trace import TracerProvider

        # The README's order: the instrumentation wraps the whole app, corstrace runs inside its server span.
        app.add_middleware(CORSTraceMiddleware, inspector=False)
        return OpenTelemetryMiddleware(app, tracer_provider=TracerProvider())
    msg = f"unknown variant {variant!r}"
    raise ValueError(msg)


@contextlib.contextmanager
def _opentelemetry_not_found() -> Iterator[None]:
    # Patched by hand, not with unittest.mock: an import more makes the heap, and so every garbage collection
    # inside the counted loop, bigger; instruction counts move by thousands with the heap's size.
    find_spec = importlib.util.find_spec

    def without_opentelemetry(name: str, package: str | None = None) -> Any:
        return None if name.split(".")[0] == "opentelemetry" else find_spec(name, package)

    importlib.util.find_spec = without_opentelemetry
    try:
        yield
    finally:
        importlib.util.find_spec = find_spec


def http_scope(kind: str, *, origin: str | None = None, path: str | None = None) -> Scope:
    """A request of ``kind`` as a browser on another origin would send it."""
    method = "GET"
    headers = list(_BROWSER_HEADERS)
    path = path or ("/boom" if kind == "error" else "/items/42")
    if kind == "no_origin":
        headers = [(n, v) for n, v in headers if not n.startswith(b"sec-fetch")]
    else:
        if origin is None:
            origin = BLOCKED_ORIGIN if kind == "blocked" else ALLOWED_ORIGIN
        headers.append((b"origin", origin.encode()))
        headers.append((b"referer", origin.encode() + b"/"))
    if kind == "preflight":
        method = "OPTIONS"
        headers.append((b"access-control-request-method", b"PUT"))
        headers.append((b"access-control-request-headers", b"content-type"))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 51000),
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
    }


def find_tracer(app: Any) -> CORSTraceMiddleware | None:
    """The CORSTraceMiddleware instance inside a built FastAPI middleware stack."""
    node = getattr(app, "middleware_stack", None)
    while node is not None:
        if isinstance(node, CORSTraceMiddleware):
            return node
        node = getattr(node, "app", None)
    return None


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    return None


async def call(app: ASGIApp, scope: Scope) -> None:
    """One request straight into the ASGI app (no sockets); an escaping exception is what a server would log."""
    try:
        await app(dict(scope), _receive, _send)
    except RuntimeError:
        pass


def _token_hex() -> bytes:
    return os.environ["CORSTRACE_INSPECTOR_TOKEN"].encode().hex().encode()


class InspectorClient:
    """An inspector page connected to ``app``'s WebSocket, in-process: the real Inspector streams to it.

    ``stall=True`` stops reading once the client is live, like a backgrounded tab whose socket buffer filled
    up: every later ``websocket.send`` then blocks forever.
    """

    def __init__(self, app: ASGIApp, *, stall: bool = False) -> None:
        self.app = app
        self.stall = stall
        self.frames = 0
        self.bytes = 0
        self.events = 0
        self._live = asyncio.Event()
        self._gone = asyncio.Event()
        self._connected = False
        self._task: asyncio.Future[None] | None = None

    async def start(self) -> None:
        scope: Scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 51001),
            "root_path": "",
            "path": "/_corstrace/ws",
            "raw_path": b"/_corstrace/ws",
            "query_string": b"",
            "headers": [
                (b"host", HOST.encode()),
                (b"origin", b"http://" + HOST.encode()),
                # The token as the page presents it: a subprotocol (see corstrace/_inspector/security.py).
                (b"sec-websocket-protocol", b"corstrace.v1, corstrace.auth." + _token_hex()),
            ],
            "subprotocols": [],
        }
        self._task = asyncio.ensure_future(self.app(scope, self._receive, self._send))
        await asyncio.wait_for(self._live.wait(), 10)

    async def drain(self) -> float:
        """Wait until the inspector has streamed everything queued for this client; the CPU seconds that took."""
        tracer = find_tracer(self.app)
        hub = tracer._recorder.hub if tracer is not None else None
        started = time.thread_time()
        # Polled every 10 ms: the sender sleeps its batch interval between frames, and the wait itself must
        # cost next to nothing.
        while hub is not None and any(subscription.pending() for subscription in list(hub._subscribers)):
            await asyncio.sleep(0.01)
        return time.thread_time() - started

    async def stop(self) -> None:
        self._gone.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(self._task, 5)

    async def _receive(self) -> Message:
        if not self._connected:
            self._connected = True
            return {"type": "websocket.connect"}
        await self._gone.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def _send(self, message: Message) -> None:
        if message["type"] != "websocket.send":
            return
        if self._live.is_set() and self.stall:
            await self._gone.wait()  # never reads again; released only when the client goes away
            raise OSError("client gone")
        self.frames += 1
        text = message.get("text") or ""
        self.bytes += len(text)
        if text.startswith('{"type":"events"'):
            self.events += text.count('"type":"leg"')
        if text.startswith('{"type":"synced"'):
            self._live.set()

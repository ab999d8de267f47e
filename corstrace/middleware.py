"""``CORSTraceMiddleware``: record and explain every cross-origin exchange, changing nothing.

Add it last, so it wraps CORSMiddleware and sees the headers the browser will see::

    app.add_middleware(CORSMiddleware, allow_origins=["http://localhost:3000"])
    app.add_middleware(CORSTraceMiddleware)

It is a pure ASGI middleware whose send wrapper only *reads* ``http.response.start``: status,
headers and body bytes pass through untouched, bodies are never buffered, lifespan passes through.
Requests without ``Origin`` and same-origin requests skip all of it.

This module is the ASGI layer only: dispatch, the inline no-Origin loop, inline HTTP tracing and the
WebSocket wrapper. What happens to a finished leg is :mod:`corstrace._pipeline`'s.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corstrace import _heal, _log
from corstrace._decision import request_key_names
from corstrace._inspector.hub import Hub
from corstrace._inspector.ingest import collector_address
from corstrace._inspector.publisher import Publisher, PublishingHub
from corstrace._inspector.server import Inspector
from corstrace._inspector.token import inspector_enabled
from corstrace._leg import ORIGIN, Leg, same_origin, scan
from corstrace._pipeline import Recorder
from corstrace._redact import Redactor

# A close before accept is sent to the browser as a 403 by the server.
_HANDSHAKE_STATUS = {"websocket.accept": 101, "websocket.close": 403, "websocket.http.response.start": 403}


class CORSTraceMiddleware:
    """Records every cross-origin exchange and explains what the browser will do with it.

    Args:
        app: The ASGI application to wrap (normally added with ``app.add_middleware``).
        inspector: Serve the live inspector under ``inspector_prefix``. ``None`` (the default) means
            on unless the environment sets ``CORSTRACE_INSPECTOR=0``; turn it off in production.
        inspector_prefix: Path prefix of the inspector page and its WebSocket.
        buffer_size: How many recent records the inspector keeps for new and reconnecting clients.
        redact_headers: Extra header names whose values are redacted (Authorization, Cookie,
            Set-Cookie, Proxy-Authorization and token-like names always are).
        heal_errors: Development only. When an exception escapes before a response started, send
            the 500 with the CORS headers CORSMiddleware would have added, so the page sees the real
            500 instead of a CORS error. Every healed response is logged as such.
        aggregate_window: Seconds during which identical blocked exchanges are counted, not logged.
        collector: Publish records to the ``corstrace inspector`` collector at this loopback URL (for
            example ``"http://127.0.0.1:2677"``; ``True`` for that default) instead of serving this process's
            own inspector: one page for every worker and app. ``None`` (the default) reads
            ``CORSTRACE_COLLECTOR``. With ``inspector=True`` the process does both; with the inspector off
            (``inspector=False`` or ``CORSTRACE_INSPECTOR=0``) it does neither.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        inspector: bool | None = None,
        inspector_prefix: str = "/_corstrace",
        buffer_size: int = 1000,
        redact_headers: Sequence[str] = (),
        heal_errors: bool = False,
        aggregate_window: float = _log.AGGREGATE_WINDOW,
        collector: str | bool | None = None,
    ) -> None:
        if isinstance(redact_headers, str):
            msg = "`redact_headers` must be a list of header names, not a string."
            raise TypeError(msg)
        if buffer_size < 1:
            msg = f"`buffer_size` must be at least 1, got {buffer_size!r}."
            raise ValueError(msg)
        self.app = app
        self.heal_errors = heal_errors
        hub = inspector_ui = None
        self._publisher: Publisher | None = None
        if inspector_enabled(inspector):
            address = collector_address(collector)
            if address is None:
                hub = Hub(buffer_size=buffer_size)
            else:  # the collector serves the page; this worker only publishes (unless inspector=True)
                hub = PublishingHub(address, buffer_size=buffer_size)
                self._publisher = hub.publisher
            if address is None or inspector is True:
                inspector_ui = Inspector(hub, prefix=inspector_prefix)
        self._inspector = inspector_ui
        # The request headers a leg keeps: the ones the engine decides on (see corstrace._decision), and Host.
        self._keyed = request_key_names()
        self._recorder = Recorder(
            self, redactor=Redactor(redact_headers), aggregate_window=aggregate_window, hub=hub, inspector=inspector_ui
        )
        # OpenTelemetry hook (corstrace._otel): with opentelemetry-api installed, a traced request's leg is one
        # that puts its verdict on the request's span; otherwise every leg is a plain Leg.
        spans = self._recorder.spans
        self._new_leg: Callable[[Scope, bytes, bytes | None, list[Any], Receive, Send], Leg] = (
            Leg if spans is None else spans.leg
        )

    def inspector_url(self, host: str, port: int) -> str | None:
        """The inspector's URL (with its token) on ``host:port``; None when the inspector is off."""
        return self._inspector.url(host, port) if self._inspector is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" or kind == "websocket":
            if self._inspector is not None and self._inspector.handles(scope):
                await self._inspector(scope, receive, send)
                return
            # Most requests carry no Origin: one comparison per header and they are on their way.
            try:
                headers = scope["headers"]
            except KeyError:  # required by ASGI, yet some hand-built scopes lack it: the app still gets them
                headers = ()
            for name, origin in headers:  # noqa: B007 - the loop leaves `origin` at the Origin header
                if name == ORIGIN:
                    break
            else:
                await self.app(scope, receive, send)
                return
            host, keyed = scan(headers, self._keyed)
            # A browser's same-origin request ends its Origin with its Host: the cheap endswith() spares
            # cross-origin legs the full test. Other spellings of the same origin are traced (the engine says so).
            if host and origin.endswith(host) and same_origin(origin, host, scope.get("scheme", "http")):
                await self.app(scope, receive, send)
                return
            recorder = self._recorder
            if not recorder.linted:
                recorder.startup(scope.get("app"), sys.argv)
            leg = self._new_leg(scope, origin, host, keyed, receive, send)
            if kind != "http":
                await self._trace_websocket(leg)
                return
            # Traced inline rather than in a helper coroutine: one coroutine less per request.
            try:
                await self.app(scope, leg.receive, leg.send)
            except Exception as exc:
                leg.failed(exc, "exception")
                if self.heal_errors and leg.status is None:
                    await self._heal(leg, receive)
                raise
            except BaseException as exc:  # a cancelled request task
                leg.failed(exc, "cancelled")
                raise
            finally:
                recorder.record(leg)  # guarded: never raises
                # The traceback holds this frame, which holds the leg: without this, every failed request
                # would leave a reference cycle (frames, scope and all) for the garbage collector.
                leg.exception = None
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _heal(self, leg: Leg, receive: Receive) -> None:
        recorder = self._recorder
        with recorder.guard:
            await _heal.heal(leg, recorder.discover(leg.scope.get("app")), receive, leg.send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._recorder.startup(scope.get("app"), sys.argv)
        if self._publisher is not None:
            self._publisher.start()  # connect at startup, not only with the first record
        try:
            await self.app(scope, receive, send)
        finally:
            await self._recorder.shutdown()

    async def _trace_websocket(self, leg: Leg) -> None:
        recorder = self._recorder
        send = leg.server_send
        recorded = False

        async def traced_send(message: Message) -> None:
            nonlocal recorded
            kind = message["type"]
            if not recorded and kind in _HANDSHAKE_STATUS:
                recorded = True
                leg.status = message.get("status", _HANDSHAKE_STATUS[kind])
                with recorder.guard:
                    recorder.record_websocket(leg, accepted=kind == "websocket.accept")
            await send(message)

        await self.app(leg.scope, leg.server_receive, traced_send)

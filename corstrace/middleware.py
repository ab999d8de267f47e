"""``CORSTraceMiddleware``: record and explain every cross-origin exchange, changing nothing.

Add it last, so it wraps CORSMiddleware and sees the headers the browser will see::

    app.add_middleware(CORSMiddleware, allow_origins=["http://localhost:3000"])
    app.add_middleware(CORSTraceMiddleware)

It is a pure ASGI middleware whose send wrapper only *reads* ``http.response.start``: status,
headers and body bytes pass through untouched, bodies are never buffered, lifespan passes through.
Requests without ``Origin`` and same-origin requests skip all of it.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import time
import traceback
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corstrace import _config, _events
from corstrace._exchange import Tracker
from corstrace._fetch import resolve_location
from corstrace._inspector.hub import Hub, Shared, SharedRecord
from corstrace._inspector.server import Inspector
from corstrace._inspector.token import inspector_enabled
from corstrace._redact import Redactor, redact_url
from corstrace.engine import DECISIVE_REQUEST_HEADERS, DECISIVE_RESPONSE_HEADERS, Request, Response, Verdict, evaluate

_ORIGIN = b"origin"
_HOST = b"host"
_ACRM = b"access-control-request-method"
_DEFAULT_PORTS = {"http": ":80", "https": ":443", "ws": ":80", "wss": ":443"}
_HANDSHAKE_STATUS = {"websocket.accept": 101, "websocket.close": 403, "websocket.http.response.start": 403}
_CREDENTIAL_REASONS = ("InvalidAllowCredentials", "PreflightInvalidAllowCredentials")
_MAX_INTERNAL_REPORTS = 64
_TRACEBACK_FRAMES = 6
_MAX_MESSAGE = 500
# Distinct CORS-relevant header combinations remembered; a frontend produces a handful, a scanner many.
_MAX_VERDICTS = 512
# Built events remembered by everything they are made from (see _leg_event): a page that repeats its
# requests gets its events copied, not rebuilt. Each holds a few kB.
_MAX_EVENTS = 256
_WS_SCHEMES = {"ws": "http", "wss": "https"}
# The request headers evaluate() reads to decide (the engine keeps the list next to the code that reads them).
_KEY_REQUEST_HEADERS = frozenset(name.encode("latin-1") for name in DECISIVE_REQUEST_HEADERS)
_COOKIE_NAME = b"cookie"
_COOKIE = (_COOKIE_NAME, b"")
# What _scan() looks for: Origin, Host, and the request headers evaluate() reads to decide.
_SCANNED = _KEY_REQUEST_HEADERS | {_HOST}
# Response header names in the verdict key: every name whose first byte is that of a decisive one, in either
# case (one cheap test per header; a finer key than needed, never a stale decision).
_A_OR_L = frozenset(
    byte for name in DECISIVE_RESPONSE_HEADERS for byte in (name[:1].lower().encode(), name[:1].upper().encode())
)


class _Leg:
    """Per-request state for one traced HTTP leg; lives for one request only.

    Its bound ``send``/``receive`` methods wrap the server's: cheaper than two fresh closures per request.
    The fields most legs never change are class-level defaults, so creating a leg sets only seven.
    """

    status: int | None = None
    response_headers: Sequence[tuple[bytes, bytes]] | None = None
    exception: BaseException | None = None
    # "completed", "exception", "cancelled" or "client_disconnected".
    outcome = "completed"
    healed = False
    complete = False
    _request_text: tuple[tuple[str, str], ...] | None = None
    _response_text: tuple[tuple[str, str], ...] | None = None
    _url_text: str | None = None

    def __init__(
        self, scope: Scope, origin: str, host: str, keyed: list[tuple[bytes, bytes]], receive: Receive, send: Send
    ) -> None:
        self.scope = scope
        self.origin = origin
        self.host = host
        # The request headers evaluate() reads besides Host, as _scan() found them.
        self.keyed = keyed
        self.started = time.perf_counter()
        self._send = send
        self._receive = receive

    def url(self) -> str:
        """The request's URL, redacted; built once, and only for the legs that need it (most do not)."""
        if self._url_text is None:
            self._url_text = redact_url(_url(self.scope, self.host))
        return self._url_text

    def request_text(self) -> tuple[tuple[str, str], ...]:
        """The request headers decoded (once: the verdict and the event both need them)."""
        if self._request_text is None:
            self._request_text = _decoded(self.scope["headers"])
        return self._request_text

    def response_text(self) -> tuple[tuple[str, str], ...]:
        """The response headers decoded (once)."""
        if self._response_text is None:
            self._response_text = _decoded(self.response_headers or ())
        return self._response_text

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            headers = message.get("headers", ())
            if not isinstance(headers, (list, tuple)):
                # A one-shot iterable would be used up by the server before the leg is recorded: hand the server
                # the same headers as a list instead.
                headers = message["headers"] = list(headers)
            # Kept, not copied: the server has consumed the message by the time the leg is recorded.
            self.response_headers = headers
        elif kind == "http.response.body" and not message.get("more_body", False):
            self.complete = True
        try:
            await self._send(message)
        except OSError:
            self.outcome = "client_disconnected"
            raise

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.complete:
            self.outcome = "client_disconnected"
        return message


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
        aggregate_window: float = _events.AGGREGATE_WINDOW,
    ) -> None:
        if isinstance(redact_headers, str):
            msg = "`redact_headers` must be a list of header names, not a string."
            raise TypeError(msg)
        if buffer_size < 1:
            msg = f"`buffer_size` must be at least 1, got {buffer_size!r}."
            raise ValueError(msg)
        self.app = app
        self.heal_errors = heal_errors
        self._redactor = Redactor(redact_headers)
        self._aggregator = _events.Aggregator(aggregate_window)
        self._tracker = Tracker()
        self._hub: Hub | None = None
        self._inspector: Inspector | None = None
        if inspector_enabled(inspector):
            self._hub = Hub(buffer_size=buffer_size)
            self._inspector = Inspector(self._hub, prefix=inspector_prefix)
        # Discovered once the app's middleware stack is built (app-level facts, not request state).
        self._topology: _config.Topology | None = None
        self._settings: _config.Settings | None = None
        self._linted = False
        self._announced = False
        self._internal_reported: set[str] = set()
        # (verdict, reason, requested method) by everything evaluate() reads to decide them: see _verdict_key.
        self._verdicts: dict[tuple[Any, ...], tuple[str, str | None, str | None]] = {}
        self._events: dict[tuple[Any, ...], tuple[dict[str, Any], Shared]] = {}

    # --- public helpers -------------------------------------------------------------------------

    def inspector_url(self, host: str, port: int) -> str | None:
        """The inspector's URL (with its token) on ``host:port``; None when the inspector is off."""
        return self._inspector.url(host, port) if self._inspector is not None else None

    # --- ASGI -----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" or kind == "websocket":
            if self._inspector is not None and self._inspector.handles(scope):
                await self._inspector(scope, receive, send)
                return
            # Most requests carry no Origin: one comparison per header and they are on their way.
            for name, _ in scope["headers"]:
                if name == _ORIGIN:
                    break
            else:
                await self.app(scope, receive, send)
                return
            origin, host, keyed = _scan(scope["headers"])
            # A browser's same-origin request ends its Origin with its Host (both lower-case, no default port):
            # the cheap endswith() spares cross-origin legs the full test. Other spellings of the same origin
            # are traced, and the engine reports them as same-origin.
            if origin is None or (host and origin.endswith(host) and _same_origin(origin, host, scope["scheme"])):
                await self.app(scope, receive, send)
                return
            if not self._linted:
                self._startup(scope.get("app"))
            leg = _Leg(scope, origin.decode("latin-1"), host.decode("latin-1") if host else "", keyed, receive, send)
            if kind != "http":
                await self._trace_websocket(leg)
                return
            # The HTTP leg is traced inline rather than in a helper coroutine: one coroutine less per request.
            try:
                await self.app(scope, leg.receive, leg.send)
            except Exception as exc:
                leg.exception = exc
                if leg.outcome == "completed":
                    leg.outcome = "exception"
                if self.heal_errors and leg.status is None:
                    await self._heal(leg, receive, leg.send)
                raise
            except BaseException as exc:  # cancelled request task
                leg.exception = exc
                if leg.outcome == "completed":
                    leg.outcome = "cancelled"
                raise
            finally:
                try:
                    self._record(leg)
                except Exception as exc:  # a bug in corstrace never fails the request
                    self._internal_error(exc)
                # The traceback holds this frame, which holds the leg: without this, every failed request
                # would leave a reference cycle (frames, scope and all) for the garbage collector.
                leg.exception = None
        elif kind == "lifespan":
            self._startup(scope.get("app"))
            try:
                await self.app(scope, receive, send)
            finally:
                await self._shutdown()
        else:
            await self.app(scope, receive, send)

    async def _trace_websocket(self, leg: _Leg) -> None:
        scope, receive, send = leg.scope, leg._receive, leg._send
        recorded = False

        async def traced_send(message: Message) -> None:
            nonlocal recorded
            kind = message["type"]
            if not recorded and kind in _HANDSHAKE_STATUS:
                recorded = True
                # A close before accept is sent to the browser as a 403 by the server.
                leg.status = message.get("status", _HANDSHAKE_STATUS[kind])
                try:
                    self._record_websocket(leg, accepted=message["type"] == "websocket.accept")
                except Exception as exc:
                    self._internal_error(exc)
            await send(message)

        await self.app(scope, receive, traced_send)

    # --- recording ------------------------------------------------------------------------------

    def _record(self, leg: _Leg) -> None:
        scope = leg.scope
        method = scope["method"]
        status = leg.status
        tracker = self._tracker
        if status is None and leg.outcome in ("cancelled", "client_disconnected"):
            preflight = method == "OPTIONS" and _is_preflight(leg.keyed)
            base = self._base(leg, method, preflight)
            base.update(exchange_id=tracker.id_text(tracker.new_id()), outcome=leg.outcome, status=None)
            _events.emit("cors.aborted", "info", base)
            return

        # The cheapest route first: most legs are allowed, their verdict is remembered, nothing waits to be
        # linked to them and nobody reads their event. The key holds everything evaluate() reads.
        # Link and flood windows run on the leg's start (monotonic, and already read); wall-clock time is read
        # only for what the inspector shows.
        now = leg.started
        preflight = method == "OPTIONS" and _is_preflight(leg.keyed)
        redirect = status is not None and 300 <= status < 400
        key = None if redirect else _verdict_key(scope, method, leg.host, leg.keyed, status, leg.response_headers)
        # Legs are linked through the raw parts of their URL; a URL string is built only to follow a
        # redirect hop, or for an event someone reads. Exchange ids are drawn only when needed.
        pending = tracker.pending
        redirected_from = None
        exchange_id = 0
        if pending and not preflight:
            url = leg.url() if tracker.redirects_pending else None
            exchange_id, redirected_from = tracker.actual(leg.origin, _target(scope, leg.host), url, method, now)
            if redirected_from is not None:
                key = None  # the hop's own URL takes part in the decision
        verdict: Verdict | None = None
        summary = self._verdicts.get(key) if key is not None else None
        if summary is None:
            verdict = self._evaluate(leg, method, preflight, redirected_from)
            summary = (verdict.verdict, verdict.reason, verdict.requested_method)
            if key is not None:
                if len(self._verdicts) >= _MAX_VERDICTS:
                    self._verdicts.clear()
                self._verdicts[key] = summary
        verdict_name, reason, requested_method = summary
        if preflight:
            allowed = verdict_name == "allowed"
            exchange_id = tracker.preflight(leg.origin, _target(scope, leg.host), requested_method or "", allowed, now)
        elif redirect and verdict_name == "allowed":
            location = _location(leg.response_text(), leg.url())
            if location is not None:
                exchange_id = exchange_id or tracker.new_id()
                tracker.redirect(exchange_id, leg.origin, leg.url(), location, method, now)

        # Who reads this leg: the inspector, the blocked-event aggregator, or a structlog that keeps debug.
        admission = None
        if verdict_name == "blocked":
            path = scope.get("root_path", "") + scope["path"]
            admission = self._aggregator.admit(leg.origin, method, path, reason or "", now)
            wanted = admission.log
        else:
            wanted = _events.debug_enabled()
        if wanted or self._hub is not None:
            exchange_id = exchange_id or tracker.new_id()
            fields = self._leg_event(leg, key, verdict, method, preflight, redirected_from)
            fields["exchange_id"] = tracker.id_text(exchange_id)
            if wanted:
                self._log(fields, admission)
            self._publish(fields)
        if pending or preflight:
            for stale_id, _, stale_origin, stale_method, stale_target in tracker.expired(now):
                self._note(
                    tracker.id_text(stale_id),
                    "preflight_without_actual",
                    f"The preflight for {stale_method} {redact_url(_target_url(stale_target))} from {stale_origin} "
                    "passed, but the actual request never arrived (the page may have been closed, or the request "
                    "aborted).",
                )

    def _leg_event(
        self,
        leg: _Leg,
        key: tuple[Any, ...] | None,
        verdict: Verdict | None,
        method: str,
        preflight: bool,
        redirected_from: str | None,
    ) -> dict[str, Any]:
        """The leg's event without its exchange id: a fresh dict, a SharedRecord when remembered.

        With the inspector on, or debug logging kept, every leg's event is built: a frontend that repeats
        the same requests would re-run the engine and re-redact the same headers each time. An event is
        remembered by everything it is made from (verdict key, path, query, every request and response
        header, and for a crash the exception's type, message and frames), so a repeated leg gets a copy
        with its own duration. Healed, cancelled and redirected legs are always built.
        """
        scope = leg.scope
        remembered = None
        crashed = leg.outcome == "exception"
        if key is not None and (leg.exception is None or crashed) and not leg.healed:
            remembered = (
                key,
                leg.outcome,
                _crash_key(leg.exception) if crashed else None,
                self._settings is not None,  # found CORSMiddleware's settings: the server-side fields
                scope.get("root_path", ""),
                scope.get("raw_path") or scope["path"],
                scope.get("query_string", b""),
                tuple(scope["headers"]),
                tuple(leg.response_headers or ()),
            )
            cached = self._events.get(remembered)
            if cached is not None:
                template, shared = cached
                copy = SharedRecord(template, shared)
                copy["duration_ms"] = round((time.perf_counter() - leg.started) * 1000, 3)
                return copy
        if verdict is None:
            verdict = self._evaluate(leg, method, preflight, redirected_from)
        fields = self._fields(leg, verdict, method, preflight, redirected_from)
        if remembered is None:
            return fields
        if len(self._events) >= _MAX_EVENTS:
            self._events.clear()
        shared = Shared()
        # ``fields`` itself becomes the template: the caller gets a copy, like every later leg.
        self._events[remembered] = (fields, shared)
        return SharedRecord(fields, shared)

    def _evaluate(self, leg: _Leg, method: str, preflight: bool, redirected_from: str | None) -> Verdict:
        url = leg.url()
        request_headers = leg.request_text()
        response = Response(leg.status, leg.response_text()) if leg.status is not None else None
        if preflight:
            return evaluate(Request(method, url, request_headers, preflight=True), response)
        return evaluate(Request(method, url, request_headers, redirected_from=redirected_from), response)

    def _base(self, leg: _Leg, method: str, preflight: bool) -> dict[str, Any]:
        scope = leg.scope
        return {
            "origin": leg.origin,
            "method": method,
            "url": leg.url(),
            "path": scope.get("root_path", "") + scope["path"],
            "preflight": preflight,
            "duration_ms": round((time.perf_counter() - leg.started) * 1000, 3),
            "request_headers": self._redactor.headers(leg.request_text()),
        }

    def _fields(
        self,
        leg: _Leg,
        verdict: Verdict,
        method: str,
        preflight: bool,
        redirected_from: str | None,
    ) -> dict[str, Any]:
        """The full per-leg event (the README's contract) but its exchange id; built only when someone reads it."""
        fields = verdict.as_dict()
        fields.update(self._base(leg, method, preflight))
        fields.update(
            exchange_id=None,
            status=leg.status if leg.status is not None else 500,
            outcome=leg.outcome,
            layer=None,
            exception=None,
            healed=leg.healed,
            redirected_from=redirected_from,
            response_headers=self._redactor.headers(leg.response_text()),
            websocket=False,
        )
        if leg.exception is not None and leg.outcome == "exception":
            fields["exception"] = _describe_exception(leg.exception)
        self._explain_server_side(leg, verdict, fields)
        if leg.healed:
            fields["warnings"] = [
                *fields["warnings"],
                {
                    "code": "healed",
                    "message": "heal_errors=True added CORS headers to this 500 so the page can read it; "
                    "without it the browser reports a CORS error.",
                },
            ]
        return fields

    def _record_websocket(self, leg: _Leg, accepted: bool) -> None:
        scope = leg.scope
        self._discover(scope.get("app"))
        request_headers = leg.request_text()
        allowed_by_cors = None
        if self._settings is not None:
            allowed_by_cors = self._settings.cors.is_allowed_origin(leg.origin)
        warnings: list[dict[str, str]] = []
        if accepted and allowed_by_cors is False:
            warnings.append(
                {
                    "code": "websocket_origin_unchecked",
                    "message": f"The handshake from '{leg.origin}' was accepted although that origin is not in "
                    "allow_origins: any website can open this WebSocket with your users' cookies "
                    "(cross-site WebSocket hijacking).",
                }
            )
        verb = "accepted" if accepted else "refused"
        fields: dict[str, Any] = {
            "verdict": "allowed",
            "reason": None,
            "browser_message": None,
            "firefox_message": None,
            "explanation": f"WebSocket handshake from '{leg.origin}' {verb} by the app. Browsers apply no CORS to "
            "WebSockets: they send Origin and connect whatever the server answers, so the server must check "
            "Origin itself.",
            "fix": 'if websocket.headers.get("origin") not in ALLOWED_ORIGINS: await websocket.close(code=1008)'
            if warnings
            else None,
            "warnings": warnings,
            "credentials": "include" if any(n.lower() == "cookie" for n, _ in request_headers) else "unknown",
            "if_credentialed": None,
            "preflight": False,
            "exchange_id": self._tracker.id_text(self._tracker.new_id()),
            "origin": leg.origin,
            "method": "GET",
            "requested_method": None,
            "requested_headers": [],
            "url": leg.url(),
            "path": scope.get("root_path", "") + scope["path"],
            "status": leg.status,
            "layer": None,
            "exception": None,
            "duration_ms": round((time.perf_counter() - leg.started) * 1000, 3),
            "request_headers": self._redactor.headers(request_headers),
            "response_headers": [],
            "decisive_headers": ["origin"],
            "healed": False,
            "websocket": True,
            "outcome": "completed",
        }
        _events.emit("cors.websocket", "warning" if warnings else "debug", fields)
        self._publish(fields)

    def _explain_server_side(self, leg: _Leg, verdict: Verdict, fields: dict[str, Any]) -> None:
        """Add what only the server knows: the crash, the layer that answered, CORSMiddleware's reason."""
        topology = self._discover(leg.scope.get("app"))
        settings = self._settings
        exception = fields["exception"]
        if exception is not None:
            fields["layer"] = "ServerErrorMiddleware"
            where = f" at {exception['where']}" if exception["where"] else ""
            crash = f"{exception['type']}({exception['message']!r}){where}"
            if leg.status is None:
                if leg.healed:
                    fields["explanation"] = (
                        f"The app raised {crash}. heal_errors=True sent the 500 with CORS headers, so the page "
                        "sees the real 500."
                    )
                else:
                    fields["explanation"] = (
                        # The engine's explanation says the same from the browser's side: replaced, not appended.
                        f"The app raised {crash} before any response started. The outer ServerErrorMiddleware "
                        "answers with a 500 that never passes through CORSMiddleware, so it has no CORS headers: "
                        f"the page never sees the 500, the browser reports {verdict.reason} instead."
                    )
            fields["fix"] = (
                f"Fix the {exception['type']} raised{where}. To let the page read such 500s, wrap the whole app so "
                "CORSMiddleware is outermost: app = CORSMiddleware(app, ...), or pass heal_errors=True to "
                "CORSTraceMiddleware in development."
            )
            return
        if topology is None or settings is None or topology.placement != "wraps":
            return
        headers = {name.lower() for name, _ in fields["response_headers"]}
        if verdict.preflight:
            from_cors = "access-control-allow-methods" in headers and "access-control-max-age" in headers
        else:
            vary = " ".join(value.lower() for name, value in fields["response_headers"] if name.lower() == "vary")
            from_cors = "origin" in vary or "access-control-allow-origin" in headers
        if not from_cors:
            layer = " or ".join(topology.between) if topology.between else "a layer outside CORSMiddleware"
            fields["layer"] = layer
            if verdict.verdict == "blocked":
                fields["explanation"] = (
                    f"{layer} answered {leg.status} before CORSMiddleware ran, so the response has no CORS "
                    "headers. " + verdict.explanation
                )
                fields["fix"] = (
                    f"Make CORSMiddleware outermost: call app.add_middleware(CORSMiddleware, ...) after adding "
                    f"{layer}" + (", and let OPTIONS preflights through unauthenticated." if verdict.preflight else ".")
                )
            return
        fields["layer"] = "CORSMiddleware"
        cause: _config.ServerCause | None
        if verdict.preflight:
            requested = [h.strip().lower() for h in verdict.requested_headers]
            private = any(n.lower() == "access-control-request-private-network" for n, _ in fields["request_headers"])
            cause = _config.preflight_cause(settings, leg.origin, verdict.requested_method or "", requested, private)
        else:
            cause = _config.origin_cause(settings, leg.origin)
        if cause is not None:
            fields["server_reason"] = cause.summary
            fields["server_details"] = list(cause.details)
            if verdict.verdict == "blocked":
                text = f"CORSMiddleware: {cause.summary}."
                if cause.details:
                    text += " " + "; ".join(cause.details) + "."
                if verdict.reason == "PreflightInvalidStatus" and leg.status == 400:
                    text += (
                        " Starlette answers a failed preflight with 400 'Disallowed CORS "
                        + ", ".join(cause.failures)
                        + "', which is why Chrome only says 'It does not have HTTP ok status'."
                    )
                fields["explanation"] = verdict.explanation + " " + text
                fields["fix"] = cause.fix
        # Missing Access-Control-Allow-Credentials is always a server setting: say which one.
        if verdict.reason in _CREDENTIAL_REASONS:
            fields["fix"] = settings.credentials_fix
        credentialed = verdict.if_credentialed
        if credentialed is not None and credentialed.reason in _CREDENTIAL_REASONS and fields.get("if_credentialed"):
            fields["if_credentialed"] = {**fields["if_credentialed"], "fix": settings.credentials_fix}

    def _log(self, fields: dict[str, Any], admission: _events.Admission | None) -> None:
        """Emit ``cors.blocked`` (``admission`` says the aggregator let it through) or ``cors.allowed``."""
        crash = fields["exception"]
        if crash is not None:
            # structlog's renderers treat `exception` as traceback text (ConsoleRenderer prints it as a
            # block, JSON gets a string); the parts stay greppable as separate keys.
            fields = {
                **fields,
                "exception": crash["traceback"],
                "exception_type": crash["type"],
                "exception_message": crash["message"],
                "exception_where": crash["where"],
            }
        if admission is not None:
            if admission.suppressed or admission.other_origins:
                fields = dict(fields)  # not in place: the caller publishes ``fields`` next
                if admission.suppressed:
                    fields["repeats_suppressed"] = admission.suppressed
                if admission.other_origins:
                    fields["other_origins_suppressed"] = admission.other_origins
            _events.emit("cors.blocked", "warning", fields)
        else:
            _events.emit("cors.allowed", "debug", fields)

    def _publish(self, fields: dict[str, Any]) -> None:
        """Hand ``fields`` to the inspector as a ``leg`` record: the last use of ``fields``, which it changes."""
        if self._hub is not None:
            fields["type"] = "leg"
            fields["ts"] = time.time()
            self._hub.publish(fields)

    def _note(self, exchange_id: str, code: str, message: str) -> None:
        _events.emit("cors.exchange", "info", {"exchange_id": exchange_id, "code": code, "message": message})
        if self._hub is not None:
            note = {"type": "note", "ts": time.time(), "exchange_id": exchange_id, "code": code, "message": message}
            self._hub.publish(note)

    # --- healing --------------------------------------------------------------------------------

    async def _heal(self, leg: _Leg, receive: Receive, send: Send) -> None:
        """Send the error response ServerErrorMiddleware would send, plus CORS headers for allowed origins."""
        try:
            topology = self._discover(leg.scope.get("app"))
            settings = self._settings
            if topology is None or settings is None or not settings.cors.is_allowed_origin(leg.origin):
                return
            from starlette.requests import Request as StarletteRequest
            from starlette.responses import PlainTextResponse
            from starlette.responses import Response as StarletteResponse

            request = StarletteRequest(leg.scope)
            error_layer = topology.error_layer
            exc = leg.exception
            if not isinstance(exc, Exception):
                return
            response: StarletteResponse
            # Build exactly the response the outer ServerErrorMiddleware would send (debug page or the
            # app's own 500/Exception handler), so healing changes only the CORS headers.
            handler: Any = error_layer.handler if error_layer is not None else None
            if error_layer is not None and error_layer.debug:
                response = error_layer.debug_response(request, exc)
            elif handler is not None:
                result = handler(request, exc)
                response = await result if inspect.isawaitable(result) else result
            else:
                response = PlainTextResponse("Internal Server Error", status_code=500)
            # Send it through CORSMiddleware's own send wrapper: its headers are then exactly the ones
            # CORSMiddleware adds to any response (ACAO, ACAC, ACEH, Vary), not a copy of its rules.
            cors_send = functools.partial(settings.cors.send, send=send, request_headers=Headers(scope=leg.scope))
            leg.healed = True
            await response(leg.scope, receive, cors_send)
        except Exception as exc:
            self._internal_error(exc)

    # --- startup and shutdown --------------------------------------------------------------------

    def _discover(self, app: Any) -> _config.Topology | None:
        if self._topology is None:
            self._topology = _config.discover(self, app)
            if self._topology is not None and self._topology.cors is not None:
                self._settings = _config.Settings(self._topology.cors, self._topology.cors_kwargs)
        return self._topology

    def _startup(self, app: Any) -> None:
        try:
            topology = self._discover(app)
            if topology is None or self._linted:
                return
            self._linted = True
            findings = _config.lint(topology)
            for finding in findings:
                _events.emit("cors.lint", "warning", finding.as_dict())
            if self._hub is not None:
                self._hub.set_lint([finding.as_dict() for finding in findings])
            if self._inspector is not None and not self._announced:
                self._announced = True
                host, port = _cli_address(sys.argv)
                url = self._inspector.url(host, port) if port else None
                path = self._inspector.url("HOST", 0).split("HOST:0", 1)[-1]
                shown = url or f"http://127.0.0.1:<port>{path}"
                _events.emit("corstrace.inspector", "info", {"url": url, "path": path, "message": f"open {shown}"})
        except Exception as exc:
            self._internal_error(exc)

    async def _shutdown(self) -> None:
        try:
            for summary in self._aggregator.pending():
                _events.emit("cors.blocked.summary", "warning", summary)
            if self._hub is not None:
                await self._hub.close()
        except Exception as exc:
            self._internal_error(exc)

    def _internal_error(self, exc: Exception) -> None:
        """Log a corstrace bug once per kind and location; the request itself carries on."""
        try:
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            key = f"{type(exc).__name__}:{frame.filename if frame else ''}:{frame.lineno if frame else ''}"
            if key in self._internal_reported or len(self._internal_reported) >= _MAX_INTERNAL_REPORTS:
                return
            self._internal_reported.add(key)
            _events.logger.error("corstrace.internal_error", error=repr(exc), exc_info=exc)
        except Exception:
            pass


# --- helpers ------------------------------------------------------------------------------------------


def _cli_address(argv: Sequence[str]) -> tuple[str, int | None]:
    """The host and port ``uvicorn``/``fastapi`` were started with, read from the command line.

    The lifespan scope carries no address; for the usual ``uvicorn app:app --port 8001`` the command line
    does. Any other launcher (``uvicorn.run(...)``, gunicorn) gives None: better no URL than a wrong one.
    """
    if not argv or os.path.basename(argv[0]) not in ("uvicorn", "fastapi") or {"--uds", "--fd"} & set(argv):
        return "127.0.0.1", None
    host, port = "127.0.0.1", 8000
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag == "--host":
            host = value
        elif flag == "--port" and value.isdigit():
            port = int(value)
    for arg in argv:
        if arg.startswith("--host="):
            host = arg.split("=", 1)[1]
        elif arg.startswith("--port=") and arg.split("=", 1)[1].isdigit():
            port = int(arg.split("=", 1)[1])
    return host, port


def _same_origin(origin: bytes, host: bytes | None, scheme: str) -> bool:
    if host is None:
        return False
    # Cheap exact test first: "http://" + host, as the browser serialises its own origin.
    prefix = b"https://" if scheme in ("https", "wss") else b"http://"
    if not origin.startswith(prefix):
        return False
    rest = origin[len(prefix) :].lower()
    host = host.lower()
    if rest == host:
        return True
    default = _DEFAULT_PORTS.get(scheme, "").encode()
    return bool(default) and host.endswith(default) and rest == host[: -len(default)]


def _is_preflight(keyed: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether an OPTIONS request carries Access-Control-Request-Method (``keyed`` as _scan() found it)."""
    for name, _ in keyed:
        if name == _ACRM:
            return True
    return False


def _decoded(headers: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    return tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in headers)


def _scan(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bytes | None, bytes | None, list[tuple[bytes, bytes]]]:
    """One pass over the request headers: Origin, Host, and the other headers evaluate() reads.

    Runs for every request, so it is one set test per header. ASGI servers lower-case request header names
    (the spec requires it). A Cookie header is kept without its value: only its presence matters.
    """
    origin = host = None
    keyed: list[tuple[bytes, bytes]] = []
    for pair in headers:
        name = pair[0]
        if name in _SCANNED:
            if name == _HOST:
                host = pair[1]
                continue
            if name == _ORIGIN:
                origin = pair[1]
            elif name == _COOKIE_NAME:
                pair = _COOKIE
            keyed.append(pair)
    return origin, host, keyed


def _verdict_key(
    scope: Scope,
    method: str,
    host: str,
    keyed: Sequence[tuple[bytes, bytes]],
    status: int | None,
    response_headers: Sequence[tuple[bytes, bytes]] | None,
) -> tuple[Any, ...] | None:
    """Everything ``evaluate()`` reads to decide the verdict, the reason and the requested method; None if unsure.

    Two legs with equal keys get the same decision (tests/test_middleware_fastpath.py checks it against
    evaluate() on random legs): the method, this server's own origin (scheme and Host, for the same-origin
    test), the request headers the engine reads (``keyed``, from :func:`_scan`), and the response's status,
    ``Access-Control-*`` and ``Location`` headers (and a few more, see below). The path, the other headers and
    the cookie's value only change the wording, which is built when someone reads the event.
    """
    raw_path = scope.get("raw_path")
    if not host or not (raw_path.startswith(b"/") if raw_path else scope["path"].startswith("/")):
        return None  # the URL's origin would not be scheme://Host alone
    # Response names come from the app, in any case. One cheap test per header (a one-byte slice is a cached
    # object): every name starting with a/A/l/L is kept as sent. That covers Access-Control-* and Location in
    # any spelling; the few others it keeps (Age, Allow, Last-Modified, Link...) only make the key finer
    # (more entries, never a wrong decision).
    response = tuple([pair for pair in response_headers or () if pair[0][:1] in _A_OR_L])
    return (method, scope["scheme"], host, tuple(keyed), status, response)


def _target(scope: Scope, host: str) -> tuple[str, str, bytes | str, bytes]:
    """The request's URL as raw parts (scheme, Host, raw path, query): cheap to build, compare and hash."""
    if not host:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else "localhost"
    path = scope.get("raw_path") or scope.get("root_path", "") + scope["path"]
    return (scope["scheme"], host, path, scope.get("query_string", b""))


def _target_url(target: tuple[str, str, bytes | str, bytes]) -> str:
    scheme, host, path, query = target
    scheme = _WS_SCHEMES.get(scheme, scheme)
    if isinstance(path, bytes):
        path = path.decode("latin-1")
    return f"{scheme}://{host}{path}" + (f"?{query.decode('latin-1')}" if query else "")


def _url(scope: Scope, host: str) -> str:
    return _target_url(_target(scope, host))


def _location(headers: Sequence[tuple[str, str]], base: str) -> str | None:
    for name, value in headers:
        if name.lower() == "location":
            return resolve_location(base, value)
    return None


def _crash_key(exc: BaseException | None) -> tuple[Any, ...]:
    """What _describe_exception() makes its description from: type, message, and where each frame it shows was.

    A frame is keyed by its code's file, first line and name and by the instruction it was at: the
    instruction fixes the line and the traceback's carets. All are stored values, cheap to read and hash. Not
    ``tb_lineno``: it is computed from the line table on every read (~1.6 µs a frame under FastAPI); not the
    code object: it re-hashes its constants, names and bytecode on every hash() (~10,000 instructions).
    """
    frames = []
    for tb in _shown_tracebacks(exc):
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, code.co_firstlineno, code.co_name, tb.tb_lasti))
    # The description shows at most _MAX_MESSAGE characters of the message; a longer one is keyed on a bit more.
    return (type(exc), str(exc)[: _MAX_MESSAGE + 1], tuple(frames))


def _shown_tracebacks(exc: BaseException | None) -> list[TracebackType]:
    """The traceback entries whose frames an exception's description shows: the last _TRACEBACK_FRAMES.

    All of them when ``sys.tracebacklimit`` is set (``extract_tb`` then applies it). Only the last ones
    otherwise: looking up the source lines of the whole stack (a dozen framework frames under FastAPI) cost
    hundreds of µs per failed request.
    """
    entries = []
    tb = exc.__traceback__ if exc is not None else None
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    # Not getattr(sys, "tracebacklimit", None): a missing module attribute builds an AttributeError (~2.7 µs).
    if sys.__dict__.get("tracebacklimit") is None:
        return entries[-_TRACEBACK_FRAMES:]
    return entries


def _describe_exception(exc: BaseException) -> dict[str, Any]:
    shown = _shown_tracebacks(exc)
    # extract_tb follows tb_next from the first entry shown to the end of the traceback.
    frames = traceback.extract_tb(shown[0]) if shown else traceback.StackSummary()
    where = None
    if frames:
        last = frames[-1]
        filename = last.filename
        try:
            relative = os.path.relpath(filename)
            if not relative.startswith(".."):
                filename = relative
        except ValueError:
            pass
        where = f"{filename}:{last.lineno}"
    message = str(exc)
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "…"
    short = traceback.format_list(frames[-_TRACEBACK_FRAMES:])
    return {
        "type": type(exc).__name__,
        "message": message,
        "where": where,
        "traceback": "".join(short) + f"{type(exc).__name__}: {message}",
    }

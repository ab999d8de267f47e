"""The least a CORS tracer can cost: two minimal layers, measured beside corstrace in the same run.

- :class:`ObservingLayer` finds ``Origin`` and wraps ``send`` to read the response start: what any tracer
  that sees the browser's answer pays (requests without ``Origin`` skip the wrapper).
- :class:`DecidingLayer` also decides every cross-origin leg the way corstrace must at least: it collects the
  request and response headers that decide a verdict and looks the decision up (the engine runs once per
  distinct combination). No logging, no linking, no events.

If a target is below what :class:`DecidingLayer` adds, no design that explains every leg can meet it here.
Both are written for speed alone, as plainly as the ASGI spec allows.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corstrace.engine import Request, Response, evaluate

_ORIGIN = b"origin"
_ACCESS_CONTROL_REQUEST = {b"access-control-request-method", b"access-control-request-headers"}
_DECIDING_REQUEST = frozenset({b"host", b"origin", b"cookie", b"sec-fetch-mode", *_ACCESS_CONTROL_REQUEST})
# Access-Control-* and Location, in any case (a few other names too: a finer key, never a wrong one).
_A_OR_L = frozenset({b"a", b"A", b"l", b"L"})


class _Leg:
    status = 0
    headers: Any = ()

    def __init__(self, send: Send) -> None:
        self._send = send

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = message.get("headers", ())
        await self._send(message)


class ObservingLayer:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, _ in scope["headers"]:
            if name == _ORIGIN:
                break
        else:
            await self.app(scope, receive, send)
            return
        leg = _Leg(send)
        await self.app(scope, receive, leg.send)
        self.observed(scope, leg)

    def observed(self, scope: Scope, leg: _Leg) -> None:
        pass


class DecidingLayer(ObservingLayer):
    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self.decisions: dict[tuple[Any, ...], str] = {}

    def observed(self, scope: Scope, leg: _Leg) -> None:
        request = tuple([pair for pair in scope["headers"] if pair[0] in _DECIDING_REQUEST])
        response = tuple([pair for pair in leg.headers if pair[0][:1] in _A_OR_L])
        key = (scope["method"], scope["scheme"], request, leg.status, response)
        if key not in self.decisions:
            self.decisions[key] = _decide(scope, request, leg.status, response)


def _decide(scope: Scope, request: tuple[Any, ...], status: int, response: tuple[Any, ...]) -> str:
    text = tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in request)
    host = dict(text).get("host", "localhost")
    url = f"{scope['scheme']}://{host}{scope['path']}"
    answer = tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in response)
    return evaluate(Request(scope["method"], url, text), Response(status, answer)).verdict

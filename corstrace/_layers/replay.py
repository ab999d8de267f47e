"""Replaying an exchange in-process through a real CORS layer built with proposed settings, judged by the engine.

A fix is shown as verified only when the whole exchange the leg belongs to passes: the preflight the browser
sends first (when the request needs one) and the actual request, in each credentials mode the page may use.
The layer under test is called with requests built from the leg (never the app's routes: a stub answers
behind it) and must answer without waiting for anything; one that waits, raises or answers nothing makes the
fix unverified, never wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

from corstrace._layers.base import Ask
from corstrace.engine import Request, Response, evaluate, needs_preflight

Mode = Literal["omit", "include"]


class Leg(NamedTuple):
    """One request of the replayed exchange, as the browser sends it."""

    preflight: bool
    method: str  # the actual request's method (Access-Control-Request-Method on a preflight)
    url: str
    origin: str
    headers: tuple[str, ...]  # lower-cased unsafe header names
    private_network: bool

    def request_headers(self) -> tuple[tuple[str, str], ...]:
        pairs = [("origin", self.origin)]
        if self.preflight:
            pairs.append(("access-control-request-method", self.method))
            if self.headers:
                pairs.append(("access-control-request-headers", ",".join(self.headers)))
            if self.private_network:
                pairs.append(("access-control-request-private-network", "true"))
        else:
            pairs.extend((name, "1") for name in self.headers)
        return tuple(pairs)


Answer = Callable[[Leg], "Response | None"]


def legs_of(ask: Ask) -> list[Leg]:
    """The exchange ``ask`` is part of: preflight (when the browser sends one) and actual request."""
    legs = []
    probe = [(name, "1") for name in ask.headers]
    if ask.preflight or ask.private_network or needs_preflight(ask.method, probe):
        legs.append(Leg(True, ask.method, ask.url, ask.origin, ask.headers, ask.private_network))
    legs.append(Leg(False, ask.method, ask.url, ask.origin, ask.headers, False))
    return legs


def blocked(answer: Answer, ask: Ask, modes: Sequence[Mode]) -> str | None:
    """Why the replayed exchange fails (the first blocking reason), or None when every leg passes in every mode."""
    if ask.redirected:
        return "the leg follows a redirect, and the replay cannot start from the chain's first request"
    for leg in legs_of(ask):
        response = answer(leg)
        if response is None:
            return "the layer could not be called in-process with the replayed request"
        for mode in modes:
            request = Request("OPTIONS" if leg.preflight else leg.method, leg.url, leg.request_headers(),
                              preflight=leg.preflight, credentials=mode)  # fmt: skip
            verdict = evaluate(request, response)
            if verdict.verdict == "blocked":
                kind = "preflight" if leg.preflight else "request"
                return f"replayed with the change, the {leg.method} {kind} is still blocked ({verdict.reason})"
    return None


def scope_of(leg: Leg, **extra: Any) -> dict[str, Any]:
    """The ASGI scope a server would build for ``leg``."""
    parts = urlsplit(leg.url)
    path = parts.path or "/"
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in leg.request_headers()]
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": "OPTIONS" if leg.preflight else leg.method, "scheme": parts.scheme or "http",
        "path": path, "raw_path": path.encode("latin-1"), "query_string": parts.query.encode("latin-1"),
        "root_path": "", "headers": [(b"host", parts.netloc.encode("latin-1")), *headers],
        "client": ("127.0.0.1", 0), "server": (parts.hostname or "localhost", parts.port or 80),
    }  # fmt: skip
    scope.update(extra)
    return scope


async def stub(scope: Any, receive: Any, send: Any) -> None:
    """The route behind a replayed layer: 200, no headers of its own."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})

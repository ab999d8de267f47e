"""Hostile input through the real middleware: never an exception from corstrace, never a changed response."""

from __future__ import annotations

from typing import Any

import anyio
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from corstrace import CORSTraceMiddleware
from tests.support import http_scope


async def _echo(request: Request) -> Response:
    return PlainTextResponse("ok", headers={"X-Echo": request.headers.get("x-custom", "-")[:50]})


async def _crash(request: Request) -> Response:
    raise ValueError("boom")


async def _redirect(request: Request) -> Response:
    return RedirectResponse("http://user:pass@other.test/x", status_code=302)


ROUTES = [Route("/", _echo, methods=["GET", "POST", "PUT", "OPTIONS"]), Route("/crash", _crash), Route("/r", _redirect)]


def _stacks() -> tuple[ASGIApp, ASGIApp]:
    cors: dict[str, Any] = {"allow_origin_regex": r"https?://[a-z]+\.test", "allow_credentials": True}
    bare = CORSMiddleware(Starlette(routes=ROUTES), **cors)
    return bare, CORSTraceMiddleware(CORSMiddleware(Starlette(routes=ROUTES), **cors), inspector=False)


BARE, TRACED = _stacks()

header_bytes = st.binary(min_size=0, max_size=300) | st.sampled_from(
    [b"", b"*", b"null", b"http://a.test", b"https://b.test", b"\xff\xfe", b"x" * 70_000, b"\x00\r\n", b"GET, PUT"]
)
header_names = st.sampled_from(
    [
        b"origin",
        b"access-control-request-method",
        b"access-control-request-headers",
        b"access-control-request-private-network",
        b"cookie",
        b"authorization",
        b"content-type",
        b"x-custom",
        b"sec-fetch-mode",
        b"host",
    ]
) | st.binary(min_size=1, max_size=20)


async def _call(app: ASGIApp, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> list[Message]:
    scope = http_scope(method, path, headers, query=b"a=1")
    scope["headers"] = headers  # no Host added: hostile input decides every header
    sent: list[Message] = []
    done = False

    async def receive() -> Message:
        nonlocal done
        if done:
            return {"type": "http.disconnect"}
        done = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    try:
        await app(scope, receive, send)
    except ValueError as exc:  # the app's own crash propagates unchanged
        sent.append({"type": "raised", "repr": repr(exc)})
    return sent


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "OPTIONS", "patch", "DELETE"]),
    path=st.sampled_from(["/", "/crash", "/r", "/missing"]),
    headers=st.lists(st.tuples(header_names, header_bytes), max_size=8),
)
def test_hostile_requests_get_identical_responses_and_no_corstrace_error(
    method: str, path: str, headers: list[tuple[bytes, bytes]]
) -> None:
    """Garbage headers, huge values and odd bytes: same messages as without corstrace, no internal error."""
    with structlog.testing.capture_logs() as logs:
        expected = anyio.run(_call, BARE, method, path, headers)
        actual = anyio.run(_call, TRACED, method, path, headers)
    assert actual == expected
    assert not [e for e in logs if e["event"] == "corstrace.internal_error"], logs

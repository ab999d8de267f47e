"""Legs linked into exchanges: redirect chains and preflights at a redirect's target (issue 16 item 2).

A raw ASGI app answers each path with a fixed status and headers, so every hop is exactly what the test says.
Chromium names the chain's *first* URL in "(redirected from …)" and the page's origin even where the hop
itself says ``Origin: null`` (checked in the browser by tests/test_engine_browser_consoles.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from starlette.types import Message

from corstrace import CORSTraceMiddleware
from tests.support import http_scope

pytestmark = pytest.mark.anyio

PAGE = "http://localhost:3000"
API = "http://api.test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _app(routes: dict[tuple[str, str], tuple[int, list[tuple[bytes, bytes]]]]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        status, headers = routes[(scope["method"], scope["path"])]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    return CORSTraceMiddleware(app, inspector=False, aggregate_window=0)


async def _run(app: Any, legs: list[tuple[str, str, list[tuple[bytes, bytes]]]]) -> list[dict[str, Any]]:
    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    with structlog.testing.capture_logs() as logs:
        for method, path, headers in legs:
            await app(http_scope(method, path, headers), receive, send)
    return [e for e in logs if e["event"] in ("cors.blocked", "cors.allowed")]


def _acao(value: str) -> tuple[bytes, bytes]:
    return (b"access-control-allow-origin", value.encode())


def _to(path: str) -> tuple[bytes, bytes]:
    return (b"location", path.encode())


ORIGIN = [(b"origin", PAGE.encode())]


async def test_every_hop_of_a_chain_names_the_first_url() -> None:
    app = _app(
        {
            ("GET", "/a"): (307, [_acao(PAGE), _to("/b")]),
            ("GET", "/b"): (307, [_acao(PAGE), _to("/c")]),
            ("GET", "/c"): (200, []),
        }
    )
    first, second, third = await _run(app, [("GET", "/a", ORIGIN), ("GET", "/b", ORIGIN), ("GET", "/c", ORIGIN)])
    assert first["exchange_id"] == second["exchange_id"] == third["exchange_id"]
    assert (second["redirected_from"], third["redirected_from"]) == (f"{API}/a", f"{API}/b")
    assert third["verdict"] == "blocked"
    assert f"Access to fetch at '{API}/c' (redirected from '{API}/a') from origin '{PAGE}'" in third["browser_message"]


async def test_a_hop_that_says_origin_null_is_reported_with_the_pages_origin() -> None:
    app = _app(
        {
            ("GET", "/a"): (302, [_acao(PAGE), _to("http://other.test/b")]),
            ("GET", "/b"): (200, [_acao(PAGE)]),
        }
    )
    (first,) = await _run(app, [("GET", "/a", ORIGIN)])
    # The second hop goes to another host (so the browser sends `Origin: null`): its scope has that Host.
    hop = http_scope("GET", "/b", [(b"origin", b"null")], host=b"other.test")

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    with structlog.testing.capture_logs() as logs:
        await app(hop, receive, send)
    (second,) = [e for e in logs if e["event"] == "cors.blocked"]
    assert second["exchange_id"] == first["exchange_id"]
    assert second["reason"] == "AllowOriginMismatch"
    assert f"(redirected from '{API}/a') from origin '{PAGE}' has been blocked" in second["browser_message"]


async def test_a_preflight_at_a_redirect_target_belongs_to_the_exchange_and_names_the_first_url() -> None:
    allow = [_acao(PAGE), (b"access-control-allow-methods", b"PUT"), (b"access-control-max-age", b"5")]
    app = _app(
        {
            ("OPTIONS", "/a"): (204, allow),
            ("PUT", "/a"): (307, [_acao(PAGE), _to("/b")]),
            ("OPTIONS", "/b"): (400, [_acao(PAGE)]),
        }
    )
    preflight = [*ORIGIN, (b"access-control-request-method", b"PUT")]
    first, redirect, second = await _run(app, [("OPTIONS", "/a", preflight), ("PUT", "/a", ORIGIN),
                                               ("OPTIONS", "/b", preflight)])  # fmt: skip
    assert first["exchange_id"] == redirect["exchange_id"] == second["exchange_id"]
    assert second["reason"] == "PreflightInvalidStatus"
    assert f"Access to fetch at '{API}/b' (redirected from '{API}/a')" in second["browser_message"]


async def test_the_actual_request_after_a_preflight_at_the_target_continues_the_hop() -> None:
    allow = [_acao(PAGE), (b"access-control-allow-methods", b"PUT"), (b"access-control-max-age", b"5")]
    app = _app(
        {
            ("OPTIONS", "/a"): (204, allow),
            ("PUT", "/a"): (307, [_acao(PAGE), _to("/b")]),
            ("OPTIONS", "/b"): (204, allow),
            ("PUT", "/b"): (200, [_acao(PAGE)]),
        }
    )
    preflight = [*ORIGIN, (b"access-control-request-method", b"PUT")]
    legs = await _run(app, [("OPTIONS", "/a", preflight), ("PUT", "/a", ORIGIN), ("OPTIONS", "/b", preflight),
                            ("PUT", "/b", ORIGIN)])  # fmt: skip
    assert len({leg["exchange_id"] for leg in legs}) == 1
    assert legs[-1]["redirected_from"] == f"{API}/a" and legs[-1]["verdict"] == "allowed"

"""Hostile traffic never breaks an event, never reaches the terminal raw, never grows memory (issue 13 items 4, 6-8).

Real Starlette + CORSMiddleware + CORSTraceMiddleware, driven through raw ASGI calls so every byte of the scope
is what the test says (TestClient would refuse most of them).
"""

from __future__ import annotations

import io
from typing import Any

import pytest
import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from corstrace import CORSTraceMiddleware
from tests.support import call_asgi as _call
from tests.support import http_scope

pytestmark = pytest.mark.anyio

FRONTEND = "http://localhost:3000"
TOKEN = "Zq8tKw2pLm4nRv6sXy9b"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _crash(request: Any) -> Response:
    raise RuntimeError(f"bad token {request.headers.get('authorization')!r}")


def _app(**trace: Any) -> Any:
    async def items(request: Any) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[Route("/items", items), Route("/crash", _crash), Route("/{rest:path}", items)],
        middleware=[
            Middleware(CORSTraceMiddleware, **({"inspector": False, "aggregate_window": 0} | trace)),
            Middleware(CORSMiddleware, allow_origins=[FRONTEND], allow_origin_regex=r"http://.*\.example"),
        ],
    )


def _legs(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] in ("cors.blocked", "cors.allowed")]


@pytest.mark.parametrize("origin", [b"http://[::1", b"http://[", b"http://[zz]", b"http://a.example:99999"])
async def test_a_malformed_origin_still_gets_its_event(origin: bytes) -> None:
    with structlog.testing.capture_logs() as logs:
        await _call(_app(), http_scope("GET", "/items", [(b"origin", origin)]))
    (event,) = _legs(logs)
    assert event["origin"] == origin.decode()
    assert not [e for e in logs if e["event"] == "corstrace.internal_error"]


def _console(app: Any, scope: dict[str, Any]) -> str:
    """What structlog's ConsoleRenderer prints for the request (the log a developer reads in the terminal)."""
    out = io.StringIO()
    structlog.configure(
        processors=[structlog.dev.ConsoleRenderer(colors=False)], logger_factory=structlog.PrintLoggerFactory(out)
    )
    import anyio

    anyio.run(_call, app, scope)
    return out.getvalue()


@pytest.mark.usefixtures("restore_structlog")
def test_terminal_escapes_from_traffic_never_reach_the_console_raw() -> None:
    scope = http_scope("GET", "/x\x1b]0;pwned\x07\x1b[2J", [(b"origin", b"http://evil\x1bM.test\x9b31m")])
    scope["raw_path"] = b"/x%1b]0;pwned%07%1b[2J"
    text = _console(_app(), scope)
    assert "cors.blocked" in text
    assert not any(char in text for char in "\x1b\x07\x9b")


@pytest.mark.usefixtures("restore_structlog")
def test_a_secret_quoted_in_an_exception_is_scrubbed_from_event_and_console() -> None:
    scope = http_scope(
        "GET", "/crash", [(b"origin", FRONTEND.encode()), (b"authorization", f"Bearer {TOKEN}".encode())]
    )
    with structlog.testing.capture_logs() as logs:
        import anyio

        anyio.run(_call, _app(), scope)
    (event,) = _legs(logs)
    assert TOKEN not in repr(event)
    assert "RuntimeError" in event["exception"] and "bad token" in event["exception_message"]
    assert TOKEN not in _console(_app(), scope)


async def test_huge_values_are_cut_with_a_visible_marker() -> None:
    origin = b"http://" + b"a" * 500_000 + b".example"
    headers = [(b"origin", origin), (b"x-big", b"b" * 300_000), *[(f"x-{n}".encode(), b"v") for n in range(200)]]
    with structlog.testing.capture_logs() as logs:
        await _call(_app(), http_scope("GET", "/" + "p" * 100_000, headers))
    (event,) = _legs(logs)
    assert len(repr(event)) < 200_000
    assert "truncated" in event["origin"] and "truncated" in event["url"]
    assert any("truncated" in value for _, value in event["request_headers"])


async def test_remembered_state_stays_small_under_a_flood_of_huge_unique_requests() -> None:
    app = _app(inspector=True)
    with structlog.testing.capture_logs():
        for n in range(60):
            origin = f"http://{n}".encode() + b"a" * 200_000 + b".example"
            headers = [(b"origin", origin), (b"access-control-request-method", b"GET")]
            await _call(app, http_scope("OPTIONS", f"/items{n}", headers))
    recorder = _tracer(app)._recorder
    assert _deep_size(recorder) < 20_000_000


def _tracer(app: Any) -> CORSTraceMiddleware:
    node = app.middleware_stack
    while not isinstance(node, CORSTraceMiddleware):
        node = node.app
    return node


def _deep_size(root: Any) -> int:
    """Bytes of the str/bytes values reachable from ``root`` (what a flood can grow)."""
    seen: set[int] = set()
    total = 0
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen or isinstance(node, type):
            continue
        seen.add(id(node))
        if isinstance(node, (str, bytes)):
            total += len(node)
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, (list, tuple, set, frozenset)) or type(node).__name__ == "deque":
            stack.extend(node)
        elif hasattr(node, "__dict__") or hasattr(node, "__slots__"):
            module = type(node).__module__
            if module.startswith("corstrace"):
                stack.extend(vars(node).values() if hasattr(node, "__dict__") else [])
                for slot in getattr(type(node), "__slots__", ()):
                    if hasattr(node, slot):
                        stack.append(getattr(node, slot))
    return total


async def test_an_internal_error_is_logged_without_local_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    import corstrace._facts

    def broken(*args: Any) -> Any:
        secret = TOKEN  # noqa: F841 - a local a rich traceback would print
        raise ZeroDivisionError("corstrace bug")

    monkeypatch.setattr(corstrace._facts, "evaluate", broken)
    with structlog.testing.capture_logs() as logs:
        await _call(_app(), http_scope("GET", "/items", [(b"origin", FRONTEND.encode())]))
    (error,) = [e for e in logs if e["event"] == "corstrace.internal_error"]
    assert "exc_info" not in error and "ZeroDivisionError" in error["traceback"]
    assert TOKEN not in repr(error)

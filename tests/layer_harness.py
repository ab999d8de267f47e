"""Drive a traced ASGI app in-process (lifespan, then requests) and collect corstrace's structlog events."""

from __future__ import annotations

import asyncio
from typing import Any

from structlog.testing import capture_logs

from corstrace import CORSTraceMiddleware
from tests.support import http_scope

FRONTEND = "http://localhost:3000"


def preflight(path: str, method: str, headers: str = "", origin: str = FRONTEND) -> tuple[str, str, list[Any]]:
    pairs = [(b"origin", origin.encode()), (b"access-control-request-method", method.encode())]
    if headers:
        pairs.append((b"access-control-request-headers", headers.encode()))
    return ("OPTIONS", path, pairs)


def get(path: str, origin: str = FRONTEND, *extra: tuple[bytes, bytes]) -> tuple[str, str, list[Any]]:
    return ("GET", path, [(b"origin", origin.encode()), *extra])


async def _call(app: Any, scope: dict[str, Any]) -> None:
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected: frameworks listen for a disconnect
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        pass

    try:
        await app(scope, receive, send)
    except Exception:  # an exception escaping the app is what some tests are about; the server would log it
        pass


async def _lifespan(app: Any) -> None:
    messages = [{"type": "lifespan.startup"}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        pass

    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    for _ in range(50):  # let the app start up (a framework that refuses lifespan raises: fine)
        await asyncio.sleep(0)
        if task.done():
            break
    if not task.done():
        task.cancel()
    try:
        await task
    except BaseException:
        pass


def events(
    app: Any, *requests: tuple[str, str, list[Any]], lifespan: bool = True, wrap: bool = True
) -> list[dict[str, Any]]:
    """corstrace's events for ``app`` (wrapped here unless ``wrap=False``) started up and sent ``requests``."""
    traced = CORSTraceMiddleware(app, inspector=False, aggregate_window=0) if wrap else app

    async def main() -> None:
        if lifespan:
            await _lifespan(traced)
        for method, path, headers in requests:
            await _call(traced, http_scope(method, path, headers))

    with capture_logs() as logs:
        asyncio.run(main())
    return logs


def lints(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "cors.lint"]


def legs(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] in ("cors.blocked", "cors.allowed")]

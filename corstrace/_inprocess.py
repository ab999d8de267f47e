"""A CORS layer called in-process with a replayed request, driven to its end without an event loop.

Shared by the fixes replayed through Starlette's CORSMiddleware (:mod:`corstrace._fix`) and through other
frameworks' CORS layers (:mod:`corstrace._layers.replay`).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from corstrace.engine import Response


def answer(app: Any, scope: dict[str, Any]) -> Response | None:
    """``app`` called with ``scope`` and an empty body: its response start, or None if it waits, fails or is silent."""
    started: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.append(message)

    if not _run(app(scope, receive, send)) or not started:
        return None
    start = started[0]
    pairs = tuple((bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in start.get("headers") or ())
    return Response(int(start["status"]), pairs)


def _run(coroutine: Coroutine[Any, Any, Any]) -> bool:
    """Drive a call that never waits to its end; False if it raised or waited for something."""
    try:
        coroutine.send(None)
    except StopIteration:
        return True
    except Exception:  # a layer that fails on the replayed request: nothing is proven
        return False
    coroutine.close()  # it waited for something: not replayable in-process
    return False

"""``heal_errors=True`` (development only): let the page read the 500 behind a "CORS error".

When an exception escapes before a response started, Starlette's outer error layer answers a 500 that never
passes through CORSMiddleware. Healing sends exactly that response (debug page or the app's own handler)
through CORSMiddleware's own send wrapper instead, so it carries the headers CORSMiddleware adds to any
response for an allowed origin, and nothing else changes.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from starlette.datastructures import Headers
from starlette.types import Receive, Send

from corstrace._config import Stack
from corstrace._leg import Leg


async def heal(leg: Leg, stack: Stack | None, receive: Receive, send: Send) -> bool:
    """Send the healed 500 for ``leg``; False when it cannot be healed (no CORSMiddleware, origin refused...)."""
    settings = stack.settings if stack is not None else None
    exc = leg.exception
    if stack is None or settings is None or not isinstance(exc, Exception):
        return False
    if not settings.cors.is_allowed_origin(leg.origin()):
        return False
    from starlette.requests import Request as StarletteRequest
    from starlette.responses import PlainTextResponse
    from starlette.responses import Response as StarletteResponse

    request = StarletteRequest(leg.scope)
    error_layer = stack.topology.error_layer
    response: StarletteResponse
    handler: Any = error_layer.handler if error_layer is not None else None
    if error_layer is not None and error_layer.debug:
        response = error_layer.debug_response(request, exc)
    elif handler is not None:
        result = handler(request, exc)
        response = await result if inspect.isawaitable(result) else result
    else:
        response = PlainTextResponse("Internal Server Error", status_code=500)
    cors_send = functools.partial(settings.cors.send, send=send, request_headers=Headers(scope=leg.scope))
    leg.healed = True
    await response(leg.scope, receive, cors_send)
    return True

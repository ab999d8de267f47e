"""CORS layers other than Starlette's ``CORSMiddleware``: found once, then asked to lint and to explain legs.

One module per framework, each with a ``detect(node) -> Layer | None`` that recognises the framework's app
(or, for asgi-cors, its wrapper) without importing anything the app has not already loaded:

- :mod:`.litestar` — ``Litestar(cors_config=CORSConfig(...))`` (fixes verified by replay)
- :mod:`.django` — django-cors-headers' ``CorsMiddleware`` and ``settings.CORS_*`` (fixes verified by replay)
- :mod:`.quart` — quart-cors' ``cors(app, ...)``
- :mod:`.falcon` — ``falcon.asgi.App(cors_enable=True)`` / ``falcon.CORSMiddleware``
- :mod:`.blacksheep` — ``app.use_cors(...)``
- :mod:`.asgi_cors` — ``asgi_cors(app, ...)``
- :mod:`.unknown` — any other ASGI app: said plainly, explained from the headers alone

:func:`discover_stack` is :func:`corstrace._config.discover_stack` plus that search, for apps whose stack has
no Starlette ``CORSMiddleware``; :func:`explain` is the hook :func:`corstrace._cause.explain` calls for them.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from corstrace import _config
from corstrace._facts import LegFacts, Texts
from corstrace._layers import asgi_cors, blacksheep, django, falcon, litestar, quart, unknown
from corstrace._layers.base import Cause, Layer, ask_of
from corstrace.engine import Verdict

__all__ = ["Cause", "Layer", "discover_stack", "explain", "find"]

_DETECTORS: tuple[Callable[[Any], Layer | None], ...] = (
    asgi_cors.detect,
    litestar.detect,
    django.detect,
    quart.detect,
    falcon.detect,
    blacksheep.detect,
)
_MAX_WALK = 32


def find(app: Any) -> Layer:
    """The CORS layer of the ASGI app ``app`` (following ``.app`` through plain wrappers); Unknown if none fits."""
    node = app
    for _ in range(_MAX_WALK):
        # `app.asgi_app = CORSTraceMiddleware(app.asgi_app)` (Quart's way) hands corstrace a bound method.
        target = node.__self__ if inspect.ismethod(node) else node
        for detect in _DETECTORS:
            layer = detect(target)
            if layer is not None:
                return layer
        node = getattr(target, "app", None)
        if node is None or not callable(node):
            break
    return unknown.Unknown(app)


def discover_stack(tracer: Any, app: Any) -> _config.Stack | None:
    """The app's CORS setup: Starlette's, as :mod:`corstrace._config` finds it, or another framework's layer."""
    stack = _config.discover_stack(tracer, app)
    if stack is None or stack.topology.cors is not None or stack.starlette:
        return stack  # Starlette's CORSMiddleware, a Starlette app without one, or a stack not built yet
    topology = dataclasses.replace(stack.topology, layer=find(tracer.app))
    return _config.Stack(topology, stack.settings)


def explain(stack: _config.Stack, facts: LegFacts, texts: Texts, verdict: Verdict) -> Cause | None:
    """The server-side cause of ``verdict`` from the stack's own (non-Starlette) CORS layer."""
    layer = stack.topology.layer
    if not isinstance(layer, Layer):
        return None
    return layer.explain(ask_of(facts, texts, verdict), verdict)

"""corstrace: see why the browser blocked your cross-origin request.

The public API is what ``__all__`` lists (plus :mod:`corstrace.engine` and :mod:`corstrace.testing`); every
other module is private. How the package is laid out, one job per module:

The request path, one way: ASGI messages → leg → decision → link → event → sinks.

- ``middleware``: the ASGI layer only (dispatch, the no-Origin loop, inline HTTP tracing, the WebSocket wrapper).
- ``_leg``: a traced leg; the only reader of the scope and of the ASGI messages (raw bytes, decoded lazily).
- ``_pipeline``: records a finished leg: decision, link, who reads it, event, sinks.
- ``_decision``: remembered decisions, keyed on the headers the engine exports as decisive.
- ``_exchange``: linking legs into exchanges (preflight → actual request, redirect hops).
- ``_facts``: everything an event is built from, as one hashable value; the one call into the engine.
- ``_cause``: the server-side cause (crash, bypassing layer, CORS setting) and its one rule for joining the
  engine's wording.
- ``_event``: the event as a TypedDict (the README's table), built in one place; bodies remembered by facts.
- ``_log``: the structlog sink, with flood control. ``_console``: ``ConsoleView``, the events as a terminal shows
  them (used on its own when the app has not configured structlog).
- ``_inspector``: the inspector sink (a bounded hub fanned out over WebSocket) and the page's server; with
  ``collector`` / ``publisher`` / ``ingest``, one ``corstrace inspector`` page for several worker processes.
- ``_otel``: the OpenTelemetry sink (a traced leg's verdict on its span, ``cors.legs``), only when installed.
- ``_guard``: the one guard for "a corstrace bug never fails the request".
- ``_crash``: exceptions described (type, message, where, frames). ``_heal``: ``heal_errors``.
- ``_startup``: the startup lint and the inspector's URL. ``_config``: what the app's CORSMiddleware says.
- ``_layers``: CORS layers other than Starlette's (Litestar, django-cors-headers, quart-cors, Falcon,
  BlackSheep, asgi-cors, unknown): found, linted, explained in their own terms.
- ``_fix``: fixes proven by replaying the whole exchange through the changed configuration. ``_inprocess``:
  a CORS layer called with a replayed request and driven to its end without an event loop (also for ``_layers``).

The engine and its facts:

- ``engine``: the verdict on one leg, as Chromium and Firefox decide and word it (pure, no I/O).
- ``_fetch``: Fetch-standard primitives as Chromium implements them. ``_messages``: console texts.

Keeping traffic safe where it goes:

- ``_redact``: secrets out of headers, URLs and app text. ``_limits``: byte bounds and their marker.
- ``_escape``: control characters shown, never obeyed. ``_traceback``: tracebacks without locals or secrets.

The other front ends of the same engine:

- ``__main__``: the ``corstrace`` command. ``_check``: what the browser sends for one fetch(), leg by leg (shared
  with ``testing``); ``_check_cli``: ``corstrace check``; ``_wire``: its network under one deadline;
  ``_header_fix``: its verified header-level fix; ``_har``: ``corstrace explain``; ``_output``: how both print;
  ``_term``: colours. ``_demo``: ``corstrace demo``; ``_serving``: uvicorn servers of corstrace's own
  commands. ``testing``: pytest helpers. ``_version``: the version.
"""

from __future__ import annotations

from corstrace._console import ConsoleView
from corstrace._version import __version__
from corstrace.engine import Request, Response, Verdict, evaluate
from corstrace.middleware import CORSTraceMiddleware

__all__ = ["CORSTraceMiddleware", "ConsoleView", "Request", "Response", "Verdict", "__version__", "evaluate"]

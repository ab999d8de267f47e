"""The OpenTelemetry sink: a traced leg's verdict on its request's span, and legs counted in ``cors.legs``.

Used only when ``opentelemetry-api`` is installed (:func:`find`, once per middleware; nothing is imported
otherwise). corstrace never creates or configures a tracer or meter provider: the span is whatever
``trace.get_current_span()`` holds when the leg starts (the ASGI or FastAPI instrumentation's server span, when
corstrace runs inside it), and the counter comes from ``metrics.get_meter("corstrace", version)``, which reports
through whatever meter provider the app sets, before or after this point.

Why a leg of a traced request is recorded as soon as its response is complete, rather than after the app
returns: every instrumentation ends its server span right after handing the last body chunk to the server,
before control comes back to the middleware inside it. A span that has ended takes no attributes or events, so
:class:`SpanLeg` records itself just before it forwards that chunk.

The names below are a public contract (the README's "OpenTelemetry" section).
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from corstrace._leg import Leg
from corstrace._version import __version__

if TYPE_CHECKING:  # pragma: no cover - types only: the module never imports OpenTelemetry unless it is installed
    from opentelemetry.metrics import Counter
    from opentelemetry.trace import Span
    from starlette.types import Message

    from corstrace._decision import Decision

# Span attributes (every traced leg; `cors.reason` only when blocked) and the `cors.blocked` span event's.
VERDICT = "cors.verdict"
REASON = "cors.reason"
PREFLIGHT = "cors.preflight"
EXCHANGE_ID = "cors.exchange.id"
ORIGIN = "cors.origin"
BROWSER_MESSAGE = "cors.browser_message"
FIREFOX_MESSAGE = "cors.firefox_message"
EXPLANATION = "cors.explanation"
FIX = "cors.fix"
BLOCKED_EVENT = "cors.blocked"
METRIC = "cors.legs"
METRIC_UNIT = "{leg}"
# The event's texts come from traffic (an Origin, a URL): a hostile one must not make a span huge.
MAX_TEXT = 4096
# Distinct metric attribute sets kept built: (verdict, reason, preflight), a few dozen in all.
_MAX_ATTRIBUTE_SETS = 256


def find(record: Callable[[Leg], None], app: Any) -> Spans | None:
    """The sink when ``opentelemetry-api`` is installed, else None (and nothing imported).

    ``record`` is the recorder's: a traced leg calls it as its response completes. ``app`` is what corstrace
    wraps: an instrumentation found in it starts its spans *inside* corstrace (see :meth:`Spans.leg`).
    """
    try:
        installed = importlib.util.find_spec("opentelemetry.trace") is not None
        installed = installed and importlib.util.find_spec("opentelemetry.metrics") is not None
    except (ImportError, ValueError):  # a namespace `opentelemetry` without the API, or a broken install
        return None
    return Spans(record, instrumented(app)) if installed else None


def instrumented(app: Any) -> bool:
    """Whether OpenTelemetry's ASGI middleware is somewhere in the chain of apps below corstrace.

    Followed through ``.app`` (what Starlette's and the instrumentation's middleware keep); the stack is built
    from the inside out, so it is complete when corstrace is constructed.
    """
    seen: set[int] = set()
    while app is not None and id(app) not in seen and len(seen) < 100:
        seen.add(id(app))
        kind = type(app)
        if kind.__name__ == "OpenTelemetryMiddleware" and kind.__module__.startswith("opentelemetry.instrumentation"):
            return True
        app = getattr(app, "app", None)
    return False


class Spans:
    """App-level OpenTelemetry state: the API entry points, the counter, built metric attributes."""

    __slots__ = ("_attribute_sets", "_context", "_counter", "_invalid", "_late", "current", "record")

    def __init__(self, record: Callable[[Leg], None], late: bool = False) -> None:
        from opentelemetry import context, metrics, trace

        self.record = record
        self.current = trace.get_current_span
        self._context = context.get_current
        self._invalid = trace.INVALID_SPAN
        # An instrumentation below corstrace: its span exists only once the request is inside it.
        self._late = late
        meter = metrics.get_meter("corstrace", __version__)
        self._counter: Counter = meter.create_counter(
            METRIC, unit=METRIC_UNIT, description="Cross-origin request legs, by the browser's verdict."
        )
        self._attribute_sets: dict[tuple[str, str | None, bool], Mapping[str, Any]] = {}

    # --- the request path ---------------------------------------------------------------------

    def leg(self, scope: Any, origin: bytes, host: bytes | None, keyed: list[Any], receive: Any, send: Any) -> Leg:
        """The leg of a request, as its span asks: a plain :class:`Leg` when no instrumentation traces it.

        Decided when the leg starts, when the current span is the request's own (the instrumentation's server
        span), not a child span some code below opens around its response. With the instrumentation below
        corstrace, there is no span yet: the leg looks for it as its response completes, inside the
        instrumentation's send.
        """
        try:
            # An empty context (nothing attached to it) is the common case, and the cheapest to tell.
            context = self._context()
            span = self.current(context) if context else self._invalid
            recording = span is not self._invalid and span.is_recording()
        except Exception:  # a broken tracer or span must not fail the request: traced without its span
            return Leg(scope, origin, host, keyed, receive, send)
        if span is self._invalid:
            if self._late:
                return SpanLeg(scope, origin, host, keyed, receive, send, self, None)
            return Leg(scope, origin, host, keyed, receive, send)
        if not recording:  # traced, but sampled out: counted, nothing else
            return CountedLeg(scope, origin, host, keyed, receive, send)
        return SpanLeg(scope, origin, host, keyed, receive, send, self, span)

    def recorded(self, leg: Leg) -> bool:
        """Whether ``leg`` was already recorded as its response completed (the late call then does nothing)."""
        return type(leg) is SpanLeg and leg.recorded

    def decided(self, leg: Leg, decision: Decision, preflight: bool, exchange_id: str) -> Span | None:
        """Count a traced leg in ``cors.legs`` and set its verdict on its recording span, if it has one.

        Returns the span when the leg is blocked: it then reads the leg's event (:meth:`blocked`).
        """
        if not isinstance(leg, CountedLeg):
            return None
        key = (decision.verdict, decision.reason, preflight)
        attributes = self._attribute_sets.get(key)
        if attributes is None:
            if len(self._attribute_sets) >= _MAX_ATTRIBUTE_SETS:
                self._attribute_sets.clear()
            attributes = self._attribute_sets[key] = metric_attributes(*key)
        # What the app's tracer or meter raises costs the span its verdict, never the leg its log event.
        with contextlib.suppress(Exception):
            self._counter.add(1, attributes)
        span = leg.span
        try:
            if span is None or not span.is_recording():
                return None
            span.set_attributes({**attributes, EXCHANGE_ID: exchange_id})
        except Exception:
            return None
        return span if decision.verdict == "blocked" else None

    def blocked(self, span: Span, event: Mapping[str, Any]) -> None:
        """Add a blocked leg's ``cors.blocked`` event to its span."""
        with contextlib.suppress(Exception):
            span.add_event(BLOCKED_EVENT, blocked_event_attributes(event))


# --- the contract, as plain functions of an event (tested without any span) ------------------------------


def metric_attributes(verdict: str, reason: str | None, preflight: bool) -> dict[str, Any]:
    """``cors.legs``'s attributes, also the span's with ``cors.exchange.id``: bounded values only."""
    attributes: dict[str, Any] = {VERDICT: verdict, PREFLIGHT: preflight}
    if reason is not None:
        attributes[REASON] = reason
    return attributes


def blocked_event_attributes(event: Mapping[str, Any]) -> dict[str, Any]:
    """The ``cors.blocked`` span event's attributes: the log event's keys that say why and what to do."""
    attributes: dict[str, Any] = {}
    for name, key in (
        (REASON, "reason"),
        (EXCHANGE_ID, "exchange_id"),
        (ORIGIN, "origin"),
        (BROWSER_MESSAGE, "browser_message"),
        (FIREFOX_MESSAGE, "firefox_message"),
        (EXPLANATION, "explanation"),
        (FIX, "fix"),
    ):
        value = event.get(key)
        if value is not None:  # OpenTelemetry attributes have no null: an absent key says "none"
            attributes[name] = value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 1] + "…"
    return attributes


# --- per-request state ---------------------------------------------------------------------------------


class CountedLeg(Leg):
    """The leg of a traced request whose span is not recording (sampled out): counted in ``cors.legs`` only."""

    span: Span | None = None


def _completes(message: Message) -> bool:
    kind = message["type"]
    return (kind == "http.response.body" and not message.get("more_body", False)) or kind == "http.response.pathsend"


class SpanLeg(CountedLeg):
    """The leg of a request with a recording span: recorded just before its last response message goes out.

    The instrumentation outside corstrace ends the span as soon as that message has gone to the server (see
    the module docstring); a leg without one (an exception escaped, the client left) is recorded after the app
    returns, as any other, while the instrumentation still holds its span open. ``span`` None: the
    instrumentation is below corstrace, and its span is looked up when the response completes.
    """

    recorded = False

    def __init__(
        self,
        scope: Any,
        origin: bytes,
        host: bytes | None,
        keyed: list[Any],
        receive: Any,
        send: Any,
        spans: Spans,
        span: Span | None,
    ) -> None:
        super().__init__(scope, origin, host, keyed, receive, send)
        self.spans = spans
        self.span = span

    async def send(self, message: Message) -> None:
        if not self.recorded and self.status is not None and _completes(message):
            if self.span is None:
                try:
                    current = self.spans.current()
                    self.span = current if current.is_recording() else None
                except Exception:  # a broken tracer: the leg is recorded after the app returns, without a span
                    self.span = None
            if self.span is not None:
                self.spans.record(self)  # guarded: never raises
                self.recorded = True  # after: the call itself must not find the leg recorded
        await Leg.send(self, message)

"""From a finished leg to its sinks, one way: leg → decision → link → event → sinks.

:class:`Recorder` holds the app-level state that outlives a request (remembered decisions and events, the
exchange tracker, the flood control, the discovered stack) and records each finished :class:`Leg`:

1. the :class:`~corstrace._decision.Decision` (remembered, or the engine's verdict on the leg's facts);
2. the exchange it belongs to (:class:`~corstrace._exchange.Tracker`);
3. who reads it: the log (blocked legs through flood control, allowed ones when structlog keeps debug) and
   the inspector; only then is the event built (:mod:`corstrace._event`), once per distinct set of facts;
4. the sinks, which receive the finished event and never change it.
"""

from __future__ import annotations

import time
from typing import Any

from corstrace import _config, _layers, _otel, _startup
from corstrace._crash import Crashes
from corstrace._decision import Decision, Decisions, decision_of
from corstrace._escape import escape_all, escape_control
from corstrace._event import Events, aborted_event, finish, websocket_event
from corstrace._exchange import Link, Tracker
from corstrace._facts import LegFacts, facts_of, judge, texts_of
from corstrace._fetch import REDIRECT_STATUSES, resolve_location
from corstrace._guard import Guard, guarded
from corstrace._inspector.hub import Hub, SharedRecord
from corstrace._inspector.server import Inspector
from corstrace._leg import Leg
from corstrace._limits import URL_LIMIT, truncate
from corstrace._log import Admission, Aggregator, debug_enabled, log_leg, logger
from corstrace._redact import Redactor, redact_url

# structlog offers no cheap way to learn its configuration changed (get_config() builds a dict, ~4k instructions, more
# than the rest of an allowed leg's decision), so whether it keeps debug events is re-read at most this often. A
# `structlog.configure()` takes effect for corstrace's `cors.allowed` events within that time; a stale "keeps debug"
# only builds an event structlog then drops.
DEBUG_RECHECK = 0.1


class Recorder:
    """Records finished legs; one per middleware instance (app-level state only, never request state)."""

    def __init__(
        self, tracer: Any, *, redactor: Redactor, aggregate_window: float, hub: Hub | None, inspector: Inspector | None
    ) -> None:
        self.guard = Guard()
        self.hub = hub
        self.inspector = inspector
        self.stack: _config.Stack | None = None
        self.linted = False
        self._tracer = tracer
        self._redactor = redactor
        self._decisions = Decisions()
        self._tracker = Tracker()
        self._crashes = Crashes()
        self._events = Events(redactor, self.guard)
        self._aggregator = Aggregator(aggregate_window)
        self._announced = False
        # Whether structlog keeps debug events, re-read at most every DEBUG_RECHECK seconds (see there).
        self._debug = True
        self._debug_next = 0.0
        # OpenTelemetry hook (corstrace._otel): None unless opentelemetry-api is installed.
        self.spans = _otel.find(self.record, getattr(tracer, "app", None))

    # --- the request path ---------------------------------------------------------------------

    @guarded
    def record(self, leg: Leg) -> None:
        """Decide, link and publish one finished HTTP leg."""
        spans = self.spans  # OpenTelemetry hook: a traced leg may have recorded itself as its response completed
        if spans is not None and type(leg) is not Leg and spans.recorded(leg):
            return
        if leg.status is None and leg.outcome != "completed" and leg.outcome != "exception":
            self._aborted(leg)
            return
        now = leg.started
        preflight = leg.is_preflight()
        tracker = self._tracker
        pending = tracker.is_pending()
        link = None
        # A preflight continues an exchange only at a redirect's target.
        if pending and (not preflight or tracker.redirects_pending()):
            link = self._continues(leg, preflight, now)
        decisions = self._decisions
        key = decisions.key(leg)
        decision = decisions.get(key)
        facts = verdict = None
        if decision is None:
            facts = self._facts(leg, link)
            verdict = judge(facts, texts_of(facts))
            decision = decision_of(verdict)
            if key is not None:
                decisions.put(key, decision)
        exchange_id = 0
        if preflight or link is not None or leg.status in REDIRECT_STATUSES:
            exchange_id = self._link(leg, decision, link, preflight, now)
        admission = None
        if decision.verdict == "blocked":
            admission = self._aggregator.admit(leg.raw_origin, leg.method, leg.path(), decision.reason or "", now)
            logged = admission.log
        else:
            if now >= self._debug_next:
                self._debug = debug_enabled()
                self._debug_next = now + DEBUG_RECHECK
            logged = self._debug
        span = None  # OpenTelemetry hook: a traced leg is counted and its verdict set on its span
        if spans is not None and type(leg) is not Leg:
            exchange_id = exchange_id or tracker.new_id()
            span = spans.decided(leg, decision, preflight, tracker.id_text(exchange_id))
        if logged or self.hub is not None or span is not None:
            if facts is None:
                facts = self._facts(leg, link)
            self._publish(leg, facts, verdict, exchange_id or tracker.new_id(), link, logged, admission, span)
        if (pending or preflight) and now >= tracker.next_sweep:
            self._expire(now)

    def _continues(self, leg: Leg, preflight: bool, now: float) -> Link | None:
        """The exchange a leg continues: a passed preflight's, or a redirect's (also for a preflight at its target)."""
        tracker = self._tracker
        url = leg.url() if tracker.redirects_pending() else None
        if not preflight:
            return tracker.actual(leg.link_key(leg.method), url, now)
        hop = tracker.hop_to(url, now) if url is not None else None
        return Link(hop.exchange_id, hop) if hop is not None else None

    def _facts(self, leg: Leg, link: Link | None) -> LegFacts:
        crash = None
        if leg.outcome == "exception" and leg.exception is not None:
            crash = self._crashes.describe(leg.exception)
        return facts_of(leg, link.hop if link is not None else None, crash, self.discover(leg.scope.get("app")))

    def _link(self, leg: Leg, decision: Decision, link: Link | None, preflight: bool, now: float) -> int:
        """The leg's exchange id (0: a new exchange, drawn only if someone reads the event)."""
        tracker = self._tracker
        if preflight:
            allowed = decision.verdict == "allowed"
            after = link.exchange_id if link is not None else 0
            key = leg.link_key(decision.requested_method or "")
            return tracker.preflight(key, allowed, now, after)
        exchange_id = link.exchange_id if link is not None else 0
        if leg.status in REDIRECT_STATUSES and decision.verdict == "allowed":
            location = _location(leg)
            if location is not None:
                exchange_id = exchange_id or tracker.new_id()
                hop = link.hop if link is not None else None
                tracker.redirect(exchange_id, leg.origin(), leg.url(), location, leg.method, now, hop)
        return exchange_id

    def _publish(
        self,
        leg: Leg,
        facts: LegFacts,
        verdict: Any,
        exchange_id: int,
        link: Link | None,
        logged: bool,
        admission: Admission | None,
        span: Any = None,
    ) -> None:
        """Build the leg's event and hand it to the sinks; keep what Chromium's preflight cache will reuse."""
        tracker = self._tracker
        if link is None and not facts.preflight:
            cached = tracker.cached(facts.origin, facts.target, leg.started)
            if cached is not None:
                facts = facts._replace(cached_preflight=(tracker.id_text(cached.exchange_id), cached.seconds))
        body, common = self._events.body(facts, verdict)
        if facts.preflight and body["verdict"] == "allowed" and body["preflight_cache_seconds"]:
            tracker.cache(facts.origin, facts.target, exchange_id, body["preflight_cache_seconds"], leg.started)
        event = finish(body, tracker.id_text(exchange_id), leg.duration_ms())
        if logged:
            log_leg(event, admission)
        if span is not None and self.spans is not None:  # OpenTelemetry hook: a blocked leg's span event
            self.spans.blocked(span, event)
        hub = self.hub
        if hub is not None:
            record = SharedRecord(event, common)
            record["type"] = "leg"
            record["ts"] = time.time()
            hub.publish(record)

    def _aborted(self, leg: Leg) -> None:
        facts = self._facts(leg, None)
        tracker = self._tracker
        event = aborted_event(facts, self._redactor, tracker.id_text(tracker.new_id()), leg.duration_ms())
        logger.info("cors.aborted", **event)

    def _expire(self, now: float) -> None:
        tracker = self._tracker
        for stale in tracker.expired(now):
            url = truncate(redact_url(stale.url()), URL_LIMIT)
            self._note(
                tracker.id_text(stale.exchange_id),
                "preflight_without_actual",
                f"The preflight for {stale.method} {url} from {stale.origin} passed, but the actual request never "
                "arrived (the page may have been closed, or the request aborted).",
            )

    def _note(self, exchange_id: str, code: str, message: str) -> None:
        message = escape_control(message)
        logger.info("cors.exchange", exchange_id=exchange_id, code=code, message=message)
        if self.hub is not None:
            self.hub.publish({"type": "note", "ts": time.time(), "exchange_id": exchange_id, "code": code,
                              "message": message})  # fmt: skip

    def record_websocket(self, leg: Leg, accepted: bool) -> None:
        """One WebSocket handshake with an Origin: browsers apply no CORS to it, so say what the app did."""
        facts = self._facts(leg, None)
        tracker = self._tracker
        event = websocket_event(facts, self._redactor, accepted, tracker.id_text(tracker.new_id()), leg.duration_ms())
        warned = bool(event["warnings"])
        if warned:
            logger.warning("cors.websocket", **event)
        else:
            logger.debug("cors.websocket", **event)
        if self.hub is not None:
            record: dict[str, Any] = dict(event)
            record["type"] = "leg"
            record["ts"] = time.time()
            self.hub.publish(record)

    # --- app-level facts ----------------------------------------------------------------------

    def discover(self, app: Any) -> _config.Stack | None:
        """The app's CORS setup; found once its middleware stack is built (None until then)."""
        if self.stack is None:
            self.stack = _layers.discover_stack(self._tracer, app)
        return self.stack

    def startup(self, app: Any, argv: list[str]) -> None:
        """Lint the configuration and announce the inspector, once, as soon as the stack can be found."""
        with self.guard:
            stack = self.discover(app)
            if stack is None or self.linted:
                return
            self.linted = True
            _startup.lint(stack, self.hub)
            if self.inspector is not None and not self._announced:
                self._announced = True
                _startup.announce(self.inspector, argv)

    async def shutdown(self) -> None:
        with self.guard:
            for summary in self._aggregator.pending():
                logger.warning("cors.blocked.summary", **escape_all(summary))
            if self.hub is not None:
                await self.hub.close()

    def sizes(self) -> dict[str, int]:
        """How full each bounded store is (the memory benchmark reports them)."""
        return {
            "remembered verdicts": len(self._decisions),
            "remembered events": len(self._events),
            **self._aggregator.sizes(),
            **self._tracker.sizes(),
        }


def _location(leg: Leg) -> str | None:
    """Where a redirect leads, as the next hop's own (redacted, bounded) URL will read: the key it is linked by."""
    for name, value in leg.response_text():
        if name.lower() == "location":
            return truncate(redact_url(resolve_location(leg.url(), value)), URL_LIMIT)
    return None

"""The per-leg event: the README's key table as a type, built in one place from one input value.

:func:`leg_event` makes the body of a ``cors.blocked`` / ``cors.allowed`` event from a leg's
:class:`~corstrace._facts.LegFacts` alone; :class:`Events` remembers bodies by their facts, and
:func:`finish` adds the keys that differ from leg to leg (``exchange_id``, ``duration_ms``). Sinks receive the
finished event and never change it.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from corstrace import _cause
from corstrace._escape import escape_all, escape_control
from corstrace._facts import LegFacts, Texts, judge, texts_of
from corstrace._guard import Guard
from corstrace._limits import EXCEPTION_TEXT_LIMIT, HEADER_VALUE_LIMIT, MAX_HEADERS, ORIGIN_LIMIT, URL_LIMIT, truncate
from corstrace._redact import Redactor, redact_url, scrub
from corstrace.engine import Verdict, needs_preflight

MAX_EVENTS = 256
# Facts larger than this (in header bytes) are never remembered: 256 of them stay under ~4 MB.
MAX_FACTS_BYTES = 16 * 1024


def _size(facts: LegFacts) -> int:
    headers = facts.request_headers + facts.response_headers
    return sum([len(name) + len(value) for name, value in headers]) + len(facts.target.path) + len(facts.target.query)


class WarningField(TypedDict):
    code: str
    message: str


class CredentialedField(TypedDict):
    verdict: str
    reason: str | None
    browser_message: str | None
    browser_message_xhr: str | None
    firefox_message: str | None
    firefox_console: list[str]
    fix: str | None


class FrameField(TypedDict):
    file: str
    line: int | None
    function: str
    code: str
    library: bool


class ExceptionField(TypedDict):
    type: str
    message: str
    where: str | None
    traceback: str
    frames: list[FrameField]


class CachedPreflightField(TypedDict):
    exchange_id: str
    seconds: int


class _ServerSide(TypedDict, total=False):
    # Present when the app's CORS layer refused: its reason in its own vocabulary, and near-misses.
    server_reason: str
    server_details: list[str]


class LegEvent(_ServerSide):
    """The keys of ``cors.blocked`` / ``cors.allowed`` and of the inspector's ``leg`` records (README table)."""

    verdict: Literal["allowed", "blocked"]
    reason: str | None
    browser_message: str | None
    browser_message_xhr: str | None
    firefox_message: str | None
    firefox_console: list[str]
    initiator: str
    credentials: Literal["include", "omit", "unknown"]
    if_credentialed: CredentialedField | None
    warnings: list[WarningField]
    explanation: str
    fix: str | None
    # The fix was replayed through the real CORS layer and the whole exchange passed (CONTRACT.md).
    fix_verified: bool
    fix_code: str | None  # the copyable code of the fix: what "Copy fix" copies
    preflight: bool
    origin: str | None
    url: str
    method: str
    requested_method: str | None
    requested_headers: list[str]
    failed_parameter: str | None
    decisive_headers: list[str]
    preflight_cache_seconds: int | None
    path: str
    client: str | None
    request_headers: list[list[str]]
    response_headers: list[list[str]]
    status: int
    outcome: str
    layer: str | None
    exception: ExceptionField | None
    healed: bool
    redirected_from: str | None
    preflight_cached: CachedPreflightField | None
    websocket: bool
    exchange_id: str | None
    duration_ms: float


_HEALED_WARNING: WarningField = {
    "code": "healed",
    "message": "heal_errors=True added CORS headers to this 500 so the page can read it; without it the browser "
    "reports a CORS error.",
}


def leg_event(facts: LegFacts, redactor: Redactor, guard: Guard, verdict: Verdict | None = None) -> LegEvent:
    """The event of the leg ``facts`` describe, but its per-leg keys (``exchange_id`` None, no duration).

    ``verdict``, when passed, is ``judge(facts, ...)``; a cause that fails to build is left out (see _explained).
    """
    texts = texts_of(facts)
    verdict = verdict if verdict is not None else judge(facts, texts)
    cause = _explained(facts, texts, verdict, guard)
    wording = _cause.combine(verdict, cause)
    event: LegEvent = {
        "verdict": verdict.verdict,
        "reason": verdict.reason,
        "browser_message": verdict.browser_message,
        "browser_message_xhr": verdict.browser_message_xhr,
        "firefox_message": verdict.firefox_message,
        "firefox_console": list(verdict.firefox_console),
        "initiator": verdict.initiator,
        "credentials": verdict.credentials,
        "if_credentialed": _credentialed(verdict, cause),
        "warnings": _warnings(verdict, facts),
        "explanation": wording.explanation,
        "fix": wording.fix,
        "fix_verified": wording.fix_verified,
        "fix_code": wording.fix_code,
        "preflight": verdict.preflight,
        "origin": truncate(facts.origin, ORIGIN_LIMIT),
        "url": texts.url,
        "method": facts.method,
        "requested_method": verdict.requested_method,
        "requested_headers": list(verdict.requested_headers[:MAX_HEADERS]),
        "failed_parameter": verdict.failed_parameter,
        "decisive_headers": list(verdict.decisive_headers),
        "preflight_cache_seconds": verdict.preflight_cache_seconds,
        "path": truncate(redact_url(facts.path), URL_LIMIT),
        "client": facts.client,
        "request_headers": redactor.headers(texts.request, max_headers=MAX_HEADERS, value_limit=HEADER_VALUE_LIMIT),
        "response_headers": redactor.headers(texts.response, max_headers=MAX_HEADERS, value_limit=HEADER_VALUE_LIMIT),
        "status": facts.status if facts.status is not None else 500,
        "outcome": facts.outcome,
        "layer": cause.layer if cause is not None else None,
        "exception": facts.crash.as_dict() if facts.crash is not None else None,  # type: ignore[typeddict-item]
        "healed": facts.healed,
        "redirected_from": facts.hop.from_url if facts.hop is not None else None,
        "preflight_cached": _cached_preflight(facts, texts),
        "websocket": False,
        "exchange_id": None,
        "duration_ms": 0.0,
    }
    secrets = redactor.secrets(texts.request, facts.target.url()) if facts.crash is not None else ()
    return _safe(_with_server_side(event, cause), secrets)


def _explained(facts: LegFacts, texts: Texts, verdict: Verdict, guard: Guard) -> _cause.ServerCause | None:
    """The server-side cause, or None when there is none or it failed to build (reported through ``guard``)."""
    with guard:
        return _cause.explain(facts, texts, verdict)
    return None  # pragma: no cover - reached only when the guard swallowed an error


def _with_server_side(event: LegEvent, cause: _cause.ServerCause | None) -> LegEvent:
    """``event`` with the CORS layer's refusal in its own vocabulary, when it refused."""
    if cause is not None and cause.reason is not None:
        event["server_reason"] = cause.reason
        event["server_details"] = list(cause.details)
    return event


# Every string of an event is at most this long (header values have their own, smaller, bound).
_TEXT_LIMIT = EXCEPTION_TEXT_LIMIT


def _safe(event: LegEvent, secrets: tuple[str, ...]) -> LegEvent:
    """``event`` fit for any place it goes: app-derived text scrubbed of the request's own secrets (an exception
    quoting its Authorization), every string cut to a bound, control characters escaped (a terminal must not
    run an escape sequence from a stranger's request)."""
    if secrets:
        crash = event["exception"]
        if crash is not None:
            event["exception"] = {**crash, "message": scrub(crash["message"], secrets),
                                  "traceback": scrub(crash["traceback"], secrets)}  # fmt: skip
        event["explanation"] = scrub(event["explanation"], secrets)
        if event["fix"] is not None:
            event["fix"] = scrub(event["fix"], secrets)
    bounded: LegEvent = escape_all(_bounded(event))
    crash, shown = event["exception"], bounded["exception"]
    if crash is not None and shown is not None:
        # A traceback is lines: its newlines stay (every other newline from traffic is shown as \x0a, so a
        # request cannot forge a log line).
        bounded["exception"] = {**shown, "traceback": escape_control(crash["traceback"], keep_newlines=True)}
    return bounded


def _bounded(value: Any) -> Any:
    """``value`` with every string longer than the text limit cut (a reflected 0.5 MB Origin in a message)."""
    if isinstance(value, str):
        return truncate(value, _TEXT_LIMIT) if len(value) > _TEXT_LIMIT else value
    if isinstance(value, dict):
        return {key: _bounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_bounded(item) for item in value]
    return value


def _cached_preflight(facts: LegFacts, texts: Texts) -> CachedPreflightField | None:
    """The cached preflight a request that needed one came without (see ``LegFacts.cached_preflight``)."""
    if facts.cached_preflight is None or not needs_preflight(facts.method, texts.request):
        return None
    exchange_id, seconds = facts.cached_preflight
    return {"exchange_id": exchange_id, "seconds": seconds}


def _credentialed(verdict: Verdict, cause: _cause.ServerCause | None) -> CredentialedField | None:
    outcome = verdict.if_credentialed
    if outcome is None:
        return None
    fix = cause.credentialed_fix if cause is not None and cause.credentialed_fix is not None else outcome.fix
    return {
        "verdict": outcome.verdict,
        "reason": outcome.reason,
        "browser_message": outcome.browser_message,
        "browser_message_xhr": outcome.browser_message_xhr,
        "firefox_message": outcome.firefox_message,
        "firefox_console": list(outcome.firefox_console),
        "fix": fix,
    }


def _warnings(verdict: Verdict, facts: LegFacts) -> list[WarningField]:
    warnings: list[WarningField] = [{"code": caveat.code, "message": caveat.message} for caveat in verdict.warnings]
    if facts.healed:
        warnings.append(_HEALED_WARNING)
    return warnings


def finish(body: LegEvent, exchange_id: str, duration_ms: float) -> LegEvent:
    """The finished event: ``body`` (never changed: it may be remembered) with this leg's own keys."""
    event = body.copy()
    event["exchange_id"] = exchange_id
    event["duration_ms"] = duration_ms
    return event


class Common:
    """Scratch space shared by every event copied from one body: a sink may keep its rendering of the body here.

    The inspector keeps the JSON of the keys records share, so a repeated leg costs a small encoding.
    """

    __slots__ = ("json",)

    def __init__(self) -> None:
        self.json: str | None = None


class Events:
    """Event bodies remembered by the facts they were built from: a repeated leg's event is a copy."""

    __slots__ = ("_bodies", "_guard", "_redactor")

    def __init__(self, redactor: Redactor, guard: Guard) -> None:
        self._redactor = redactor
        self._guard = guard
        self._bodies: dict[LegFacts, tuple[LegEvent, Common]] = {}

    def body(self, facts: LegFacts, verdict: Verdict | None = None) -> tuple[LegEvent, Common]:
        """The body of the event of ``facts`` (never to be changed: it is shared), and its :class:`Common`."""
        known = self._bodies.get(facts)
        if known is None:
            known = (leg_event(facts, self._redactor, self._guard, verdict), Common())
            # Memory is bounded in bytes: facts carrying huge headers (a flood of 0.5 MB Origins) are not kept.
            if _size(facts) <= MAX_FACTS_BYTES:
                if len(self._bodies) >= MAX_EVENTS:
                    self._bodies.clear()
                self._bodies[facts] = known
        return known

    def __len__(self) -> int:
        return len(self._bodies)


def aborted_event(facts: LegFacts, redactor: Redactor, exchange_id: str, duration_ms: float) -> dict[str, Any]:
    """``cors.aborted``: the client left, or the request was cancelled, before any response."""
    texts = texts_of(facts)
    event = {
        "origin": truncate(facts.origin, ORIGIN_LIMIT),
        "method": facts.method,
        "url": texts.url,
        "path": truncate(redact_url(facts.path), URL_LIMIT),
        "preflight": facts.preflight,
        "duration_ms": duration_ms,
        "request_headers": redactor.headers(texts.request, max_headers=MAX_HEADERS, value_limit=HEADER_VALUE_LIMIT),
        "exchange_id": exchange_id,
        "outcome": facts.outcome,
        "status": None,
    }
    escaped: dict[str, Any] = escape_all(event)
    return escaped


def _websocket_warnings(facts: LegFacts, accepted: bool) -> list[WarningField]:
    settings = facts.stack.settings if facts.stack is not None else None
    if not accepted or settings is None or settings.cors.is_allowed_origin(facts.origin):
        return []
    return [
        {
            "code": "websocket_origin_unchecked",
            "message": f"The handshake from '{truncate(facts.origin, ORIGIN_LIMIT)}' was accepted although that "
            "origin is not in allow_origins: any website can open this WebSocket with your users' cookies "
            "(cross-site WebSocket hijacking).",
        }
    ]


def websocket_event(
    facts: LegFacts, redactor: Redactor, accepted: bool, exchange_id: str, duration_ms: float
) -> dict[str, Any]:
    """``cors.websocket``: browsers apply no CORS to WebSockets, so say whether the app checked the Origin."""
    texts = texts_of(facts)
    warnings = _websocket_warnings(facts, accepted)
    verb = "accepted" if accepted else "refused"
    cookie = any(name.lower() == "cookie" for name, _ in texts.request)
    origin = truncate(facts.origin, ORIGIN_LIMIT)
    event = {
        "verdict": "allowed",
        "reason": None,
        "browser_message": None,
        "firefox_message": None,
        "explanation": f"WebSocket handshake from '{origin}' {verb} by the app. Browsers apply no CORS to "
        "WebSockets: they send Origin and connect whatever the server answers, so the server must check "
        "Origin itself.",
        "fix": 'if websocket.headers.get("origin") not in ALLOWED_ORIGINS: await websocket.close(code=1008)'
        if warnings
        else None,
        "warnings": warnings,
        "credentials": "include" if cookie else "unknown",
        "if_credentialed": None,
        "preflight": False,
        "exchange_id": exchange_id,
        "origin": origin,
        "method": "GET",
        "requested_method": None,
        "requested_headers": [],
        "url": texts.url,
        "path": truncate(redact_url(facts.path), URL_LIMIT),
        "client": facts.client,
        "status": facts.status,
        "layer": None,
        "exception": None,
        "duration_ms": duration_ms,
        "request_headers": redactor.headers(texts.request, max_headers=MAX_HEADERS, value_limit=HEADER_VALUE_LIMIT),
        "response_headers": [],
        "decisive_headers": ["origin"],
        "healed": False,
        "websocket": True,
        "outcome": "completed",
    }
    escaped: dict[str, Any] = escape_all(event)
    return escaped

"""The server-side cause: what only the server knows about why the browser will decide as it does.

The engine explains a leg from the browser's side, from the headers alone. This module adds what the app's
own stack says: the crash behind a "CORS error", the layer that answered before the CORS layer could, the
CORS setting that refused. It reads the leg's facts (decoded, never redacted: redaction is for display and
never changes a conclusion) and the app's :class:`~corstrace._config.Stack`, never the event.

:func:`combine` is the one rule for how a cause and the engine's wording make the event's ``explanation``
and ``fix``: the cause leads, in a sentence, then the browser's mechanics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from corstrace import _config, _layers
from corstrace._facts import LegFacts, Texts
from corstrace.engine import Verdict

_CREDENTIAL_REASONS = ("InvalidAllowCredentials", "PreflightInvalidAllowCredentials")
# The Fix keeps tracing: corstrace must stay outermost to see what the browser receives.
_OUTERMOST_CORS = (
    "app = CORSTraceMiddleware(CORSMiddleware(app, ...)) (CORSMiddleware around the whole app, corstrace around "
    "it), or pass heal_errors=True to CORSTraceMiddleware in development"
)


@dataclass(frozen=True, slots=True)
class ServerCause:
    """Why the server answered as it did, in its own terms."""

    layer: str | None = None  # the layer that produced the response (the event's `layer`)
    text: str | None = None  # the cause, leading the explanation
    # True when the engine's explanation says the same from the browser's side: ``text`` stands alone.
    replaces: bool = False
    fix: str | None = None  # replaces the engine's header-level fix
    credentialed_fix: str | None = None  # the fix for ``if_credentialed``
    reason: str | None = None  # the CORS layer's refusal in its own vocabulary (`server_reason`)
    details: tuple[str, ...] = ()  # near-misses (`server_details`)


def combine(verdict: Verdict, cause: ServerCause | None) -> tuple[str, str | None]:
    """The event's explanation and fix: the cause first, then the engine's explanation."""
    if cause is None or cause.text is None:
        explanation = verdict.explanation
    elif cause.replaces:
        explanation = cause.text
    else:
        explanation = f"{cause.text} {verdict.explanation}"
    return explanation, cause.fix if cause is not None and cause.fix is not None else verdict.fix


def explain(facts: LegFacts, texts: Texts, verdict: Verdict) -> ServerCause | None:
    """The server-side cause of ``verdict``, when the stack tells one."""
    if facts.crash is not None:
        return _crash_cause(facts, verdict)
    stack = facts.stack
    if stack is not None and stack.topology.layer is not None:
        # Another framework's CORS layer, or one corstrace cannot read: it explains itself (corstrace._layers).
        return _from_layer(_layers.explain(stack, facts, texts, verdict))
    if stack is None or stack.settings is None or stack.topology.placement != "wraps":
        return None
    answered_by_cors = _answered_by_cors(texts, verdict.preflight)
    if not answered_by_cors:
        return _bypass_cause(facts, stack.topology, verdict)
    return _settings_cause(facts, texts, verdict, stack.settings)


def _from_layer(cause: _layers.Cause | None) -> ServerCause | None:
    """A layer's cause as a ServerCause: the fields both have (a layer may know more, e.g. `fix_verified`)."""
    if cause is None:
        return None
    known = {item.name for item in dataclasses.fields(ServerCause)}
    return ServerCause(
        **{item.name: getattr(cause, item.name) for item in dataclasses.fields(cause) if item.name in known}
    )


def _crash_cause(facts: LegFacts, verdict: Verdict) -> ServerCause:
    crash = facts.crash
    assert crash is not None
    starlette = facts.stack is not None and facts.stack.starlette
    where = f" at {crash.where}" if crash.where else ""
    what = f"{crash.type}({crash.message!r}){where}"
    layer = "ServerErrorMiddleware" if starlette else None
    text = None
    if facts.status is None:
        if facts.healed:
            text = (
                f"The app raised {what}. heal_errors=True sent the 500 with CORS headers, so the page sees the real "
                "500."
            )
        elif starlette:
            text = (
                f"The app raised {what} before any response started. Starlette's outer ServerErrorMiddleware "
                "answers with a 500 that never passes through CORSMiddleware, so it has no CORS headers: the page "
                f"never sees the 500, the browser reports {verdict.reason} instead."
            )
        else:
            text = (
                f"The app raised {what} before any response started, so the server answered a 500 of its own, "
                f"without CORS headers: the page never sees the 500, the browser reports {verdict.reason} instead."
            )
    fix = f"Fix the {crash.type} raised{where}."
    if facts.stack is not None and facts.stack.settings is not None:
        fix += f" To let the page read such 500s, make CORSMiddleware wrap the whole app: {_OUTERMOST_CORS}."
    return ServerCause(layer=layer, text=text, replaces=True, fix=fix)


def _answered_by_cors(texts: Texts, preflight: bool) -> bool:
    """Whether Starlette's CORSMiddleware produced (or passed through) this response, from its headers."""
    names = {name.lower() for name, _ in texts.response}
    if preflight:
        return "access-control-allow-methods" in names and "access-control-max-age" in names
    vary = " ".join(value.lower() for name, value in texts.response if name.lower() == "vary")
    return "origin" in vary or "access-control-allow-origin" in names


def _bypass_cause(facts: LegFacts, topology: _config.Topology, verdict: Verdict) -> ServerCause:
    layer = " or ".join(topology.between) if topology.between else "a layer outside CORSMiddleware"
    if verdict.verdict != "blocked":
        return ServerCause(layer=layer)
    return ServerCause(
        layer=layer,
        text=f"{layer} answered {facts.status} before CORSMiddleware ran, so the response has no CORS headers.",
        fix=f"Make CORSMiddleware outermost: call app.add_middleware(CORSMiddleware, ...) after adding {layer}"
        + (", and let OPTIONS preflights through unauthenticated." if verdict.preflight else "."),
    )


def _settings_cause(facts: LegFacts, texts: Texts, verdict: Verdict, settings: _config.Settings) -> ServerCause:
    refusal: _config.ServerCause | None
    if verdict.preflight:
        requested = [h.strip().lower() for h in verdict.requested_headers]
        private = any(n.lower() == "access-control-request-private-network" for n, _ in texts.request)
        refusal = _config.preflight_cause(settings, facts.origin, verdict.requested_method or "", requested, private)
    else:
        refusal = _config.origin_cause(settings, facts.origin)
    credentials_fix = settings.credentials_fix
    fix = credentials_fix if verdict.reason in _CREDENTIAL_REASONS else None
    credentialed = verdict.if_credentialed
    credentialed_fix = (
        credentials_fix if credentialed is not None and credentialed.reason in _CREDENTIAL_REASONS else None
    )
    if refusal is None:
        return ServerCause(layer="CORSMiddleware", fix=fix, credentialed_fix=credentialed_fix)
    text = None
    if verdict.verdict == "blocked":
        text = f"CORSMiddleware: {refusal.summary}."
        if refusal.details:
            text += " " + "; ".join(refusal.details) + "."
        if verdict.reason == "PreflightInvalidStatus" and facts.status == 400:
            text += (
                " Starlette answers a failed preflight with 400 'Disallowed CORS "
                + ", ".join(refusal.failures)
                + "', which is why Chrome only says 'It does not have HTTP ok status'."
            )
        fix = fix or refusal.fix
    return ServerCause(
        layer="CORSMiddleware",
        text=text,
        fix=fix,
        credentialed_fix=credentialed_fix,
        reason=refusal.summary,
        details=refusal.details,
    )

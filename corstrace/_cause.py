"""The server-side cause: what only the server knows about why the browser will decide as it does.

The engine explains a leg from the browser's side, from the headers alone. This module adds what the app's
own stack says: the crash behind a "CORS error", the layer that answered before the CORS layer could, the
CORS setting that refused. It reads the leg's facts (decoded, never redacted: redaction is for display and
never changes a conclusion) and the app's :class:`~corstrace._config.Stack`, never the event.

:func:`combine` is the one rule for how a cause and the engine's wording make the event's ``explanation``
and ``fix``: the cause leads, in a sentence, then the browser's mechanics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from corstrace import _config, _fix
from corstrace._facts import LegFacts, Texts
from corstrace.engine import Verdict

_CREDENTIAL_REASONS = ("InvalidAllowCredentials", "PreflightInvalidAllowCredentials")
_WILDCARD_REASONS = ("WildcardOriginNotAllowed", "PreflightWildcardOriginNotAllowed")
_NOT_READ = (
    " Not verified: corstrace cannot read this app's CORS layer, so it could not replay the exchange with the change."
)


@dataclass(frozen=True, slots=True)
class ServerCause:
    """Why the server answered as it did, in its own terms."""

    layer: str | None = None  # the layer that produced the response (the event's `layer`)
    text: str | None = None  # the cause, leading the explanation
    # True when the engine's explanation says the same from the browser's side: ``text`` stands alone.
    replaces: bool = False
    fix: str | None = None  # replaces the engine's header-level fix
    fix_code: str | None = None  # what "Copy fix" copies (`fix_code`)
    fix_verified: bool = False  # ``fix`` was replayed through the real CORS layer: the whole exchange passes
    credentialed_fix: str | None = None  # the fix for a request with credentials (the event's `if_credentialed`)
    reason: str | None = None  # the CORS layer's refusal in its own vocabulary (`server_reason`)
    details: tuple[str, ...] = ()  # near-misses (`server_details`)


class Wording(NamedTuple):
    """The event's explanation and fix, from the cause and the engine's verdict."""

    explanation: str
    fix: str | None
    fix_code: str | None
    fix_verified: bool


def combine(verdict: Verdict, cause: ServerCause | None) -> Wording:
    """The event's explanation and fix: the server-side cause in a sentence first, then the browser's mechanics."""
    if cause is None or cause.text is None:
        explanation = verdict.explanation
    elif cause.replaces:
        explanation = cause.text
    else:
        explanation = f"{cause.text} {verdict.explanation}"
    if cause is not None and cause.fix is not None:
        return Wording(explanation, cause.fix, cause.fix_code, cause.fix_verified)
    fix = verdict.fix
    if fix is not None and verdict.verdict == "blocked":
        # The engine's header-level fix, from the browser's side only: say that nothing proved it.
        fix += _NOT_READ if cause is None else " Not verified."
    return Wording(explanation, fix, None, False)


def explain(facts: LegFacts, texts: Texts, verdict: Verdict) -> ServerCause | None:
    """The server-side cause of ``verdict``, when the stack tells one."""
    if facts.crash is not None:
        return _crash_cause(facts, verdict)
    stack = facts.stack
    if stack is None or stack.settings is None or stack.topology.placement != "wraps":
        return None
    answered_by_cors = _answered_by_cors(texts, verdict.preflight)
    if not answered_by_cors:
        return _bypass_cause(facts, texts, stack, verdict)
    return _settings_cause(facts, texts, verdict, stack.settings)


def _crash_cause(facts: LegFacts, verdict: Verdict) -> ServerCause:
    crash = facts.crash
    assert crash is not None
    starlette = facts.stack is not None and facts.stack.starlette
    where = f" at {crash.where}" if crash.where else ""
    what = f"{crash.type}({crash.message!r}){where}"
    layer = "ServerErrorMiddleware" if starlette else None
    fix = f"Fix the {crash.type} raised{where}."
    if facts.status is not None or facts.healed:
        text = None
        if facts.healed:
            text = (
                f"The app raised {what}. heal_errors=True sent the 500 with CORS headers, so the page sees the real "
                "500."
            )
        return ServerCause(layer=layer, text=text, replaces=True, fix=fix)
    if starlette:
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
    settings = facts.stack.settings if facts.stack is not None else None
    if settings is None:
        return ServerCause(layer=layer, text=text, replaces=True, fix=fix)
    code = settings.wrapping()
    fix += (
        " To let the page read such 500s and keep tracing them, make CORSMiddleware wrap the whole app and "
        "corstrace wrap it: remove app.add_middleware(CORSMiddleware, ...) and app.add_middleware(CORSTraceMiddleware"
        f"), then, after the app is complete, {code} (keep your CORSTraceMiddleware options). Or, in development, "
        "pass heal_errors=True to CORSTraceMiddleware. Not verified: corstrace cannot replay a crash."
    )
    return ServerCause(layer=layer, text=text, replaces=True, fix=fix, fix_code=code)


def _answered_by_cors(texts: Texts, preflight: bool) -> bool:
    """Whether Starlette's CORSMiddleware produced (or passed through) this response, from its headers."""
    names = {name.lower() for name, _ in texts.response}
    if preflight:
        return "access-control-allow-methods" in names and "access-control-max-age" in names
    vary = " ".join(value.lower() for name, value in texts.response if name.lower() == "vary")
    return "origin" in vary or "access-control-allow-origin" in names


def _bypass_cause(facts: LegFacts, texts: Texts, stack: _config.Stack, verdict: Verdict) -> ServerCause:
    topology = stack.topology
    layer = " or ".join(topology.between) if topology.between else "a layer outside CORSMiddleware"
    if verdict.verdict != "blocked" or stack.settings is None:
        return ServerCause(layer=layer)
    code = _fix.outermost(stack.settings, facts, texts, verdict)
    after = f"after adding {layer}" if topology.between else "after every other add_middleware call"
    fix = (
        f"Make CORSMiddleware outermost, so it answers preflights itself and adds its headers to {layer}'s "
        f"responses: call {code} {after} (and app.add_middleware(CORSTraceMiddleware) last). Not verified: "
        f"corstrace cannot replay {layer}."
    )
    return ServerCause(
        layer=layer,
        text=f"{layer} answered {facts.status} before CORSMiddleware ran, so the response has no CORS headers.",
        fix=fix,
        fix_code=f"{code}  # {after}",
    )


def _settings_cause(facts: LegFacts, texts: Texts, verdict: Verdict, settings: _config.Settings) -> ServerCause:
    refusal: _config.ServerCause | None
    if verdict.preflight:
        requested = [h.strip().lower() for h in verdict.requested_headers]
        private = any(n.lower() == "access-control-request-private-network" for n, _ in texts.request)
        refusal = _config.preflight_cause(settings, facts.origin, verdict.requested_method or "", requested, private)
    else:
        refusal = _config.origin_cause(settings, facts.origin)
    proposal = _fix.propose(settings, facts, texts, verdict)
    fix, credentialed = proposal.fix, proposal.credentialed
    text = _refusal_text(facts, verdict, settings, refusal) if verdict.verdict == "blocked" else None
    return ServerCause(
        layer="CORSMiddleware",
        text=text,
        fix=fix.text if fix is not None else None,
        fix_code=fix.code if fix is not None else None,
        fix_verified=fix is not None and fix.verified,
        credentialed_fix=credentialed.text if credentialed is not None else None,
        reason=refusal.summary if refusal is not None else None,
        details=refusal.details if refusal is not None else (),
    )


def _refusal_text(
    facts: LegFacts, verdict: Verdict, settings: _config.Settings, refusal: _config.ServerCause | None
) -> str | None:
    """The server-side cause of a blocked leg, in one sentence (near-misses after it)."""
    if refusal is None:
        if verdict.reason in _CREDENTIAL_REASONS:
            return (
                f"CORSMiddleware has allow_credentials={settings.shown('allow_credentials')}, so it never sends "
                "`Access-Control-Allow-Credentials: true`, which a request with credentials needs."
            )
        if verdict.reason in _WILDCARD_REASONS:
            return (
                f"CORSMiddleware has allow_origins={settings.shown('allow_origins')} without allow_credentials, so "
                "it answers `Access-Control-Allow-Origin: *`, which the browser refuses for a request with "
                "credentials."
            )
        return None
    what = "refused the preflight" if verdict.preflight else "does not allow this origin"
    text = f"CORSMiddleware {what}: {refusal.summary}."
    if refusal.details:
        text += " " + "; ".join(refusal.details) + "."
    if verdict.reason == "PreflightInvalidStatus" and facts.status == 400:
        text += (
            " It answers a refused preflight with 400 'Disallowed CORS "
            + ", ".join(refusal.failures)
            + "', which is why Chrome only says 'It does not have HTTP ok status'."
        )
    return text

"""How ``check`` and ``explain`` present an exchange: readable text (coloured on a terminal) or JSON.

The JSON uses the field names of corstrace's log events (``verdict``, ``reason``,
``browser_message``, ``request_headers``...), so one consumer can read both. Header values that
are secrets (cookies, tokens) are redacted in both forms, like the middleware's events.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from corstrace import _term
from corstrace._check import Exchange, Leg
from corstrace._redact import Redactor, redact_url

_REDACTOR = Redactor()
# The headers worth showing per leg in the text form; the JSON has them all.
_SHOWN_REQUEST = (
    "origin",
    "access-control-request-method",
    "access-control-request-headers",
    "cookie",
    "authorization",
)
_SHOWN_RESPONSE_PREFIX = "access-control-"
_SHOWN_RESPONSE = ("vary", "location")


def colour_for(stream: TextIO) -> bool:
    return _term.wants_colour(stream)


def leg_fields(leg: Leg) -> dict[str, Any]:
    """One leg as the log events describe it: the verdict's fields plus status, URL and (redacted) headers."""
    fields = leg.verdict.as_dict()
    fields.update(
        leg=leg.kind,
        hop=leg.hop,
        url=redact_url(leg.verdict.url),
        status=leg.status,
        redirected_from=redact_url(leg.redirected_from) if leg.redirected_from else None,
        location=redact_url(leg.location) if leg.location else None,
        request_headers=_REDACTOR.headers(leg.request_headers),
        response_headers=_REDACTOR.headers(leg.response_headers),
    )
    return fields


def exchange_fields(exchange: Exchange) -> dict[str, Any]:
    """The deciding leg's fields at the top level, every leg under ``legs``, and the notes."""
    fields = leg_fields(exchange.deciding)
    fields["legs"] = [leg_fields(leg) for leg in exchange.legs]
    fields["notes"] = list(exchange.notes)
    return fields


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def _label(text: str, colour: bool) -> str:
    return _term.paint(text, "bold", enabled=colour)


def _leg_line(index: int, leg: Leg, colour: bool) -> list[str]:
    verdict = leg.verdict
    blocked = verdict.verdict == "blocked"
    state = _term.paint(verdict.verdict, "red" if blocked else "green", enabled=colour)
    if blocked and verdict.reason:
        state += f" ({verdict.reason})"
    status = "?" if leg.status is None else str(leg.status)
    kind = "preflight" if leg.kind == "preflight" else ("redirect" if leg.location else "actual")
    lines = [f"  {index}. {kind:<9} {verdict.method} {redact_url(verdict.url)} -> {status}  {state}"]
    for name, value in _REDACTOR.headers(leg.request_headers):
        if name.lower() in _SHOWN_REQUEST:
            lines.append(_term.paint(f"       > {name}: {value}", "dim", enabled=colour))
    shown = [
        (name, value)
        for name, value in _REDACTOR.headers(leg.response_headers)
        if name.lower().startswith(_SHOWN_RESPONSE_PREFIX) or name.lower() in _SHOWN_RESPONSE
    ]
    if not shown and leg.status is not None:
        lines.append(_term.paint("       < (no CORS headers)", "dim", enabled=colour))
    for name, value in shown:
        lines.append(_term.paint(f"       < {name}: {value}", "dim", enabled=colour))
    return lines


def _section(title: str, body: str, colour: bool) -> list[str]:
    return [_label(title, colour), *(f"  {line}" for line in body.splitlines())]


def render_exchange(exchange: Exchange, *, colour: bool, headline: str | None = None) -> str:
    """The text report: verdict line, each leg, the browser's message, why, the fix and the warnings."""
    deciding = exchange.deciding.verdict
    blocked = not exchange.allowed
    word = _term.paint("BLOCKED" if blocked else "ALLOWED", "bold", "red" if blocked else "green", enabled=colour)
    mode = "credentials: 'include'" if exchange.credentials else "no credentials"
    title = headline or f"{exchange.method} {redact_url(exchange.url)} from origin {exchange.origin} ({mode})"
    lines = [f"{word}  {title}"]
    if blocked and deciding.reason:
        lines.append(f"{_label('reason', colour)}   {deciding.reason}")
    lines.append("")
    for index, leg in enumerate(exchange.legs, 1):
        lines.extend(_leg_line(index, leg, colour))
    lines.append("")
    for note in exchange.notes:
        lines.append(_term.paint(f"note: {note}", "yellow", enabled=colour))
    if exchange.notes:
        lines.append("")
    if deciding.browser_message:
        lines += _section("Browser console (Chromium):", deciding.browser_message, colour)
    if deciding.firefox_message:
        lines += _section("Firefox:", deciding.firefox_message, colour)
    lines += _section("Why:", deciding.explanation, colour)
    if deciding.fix:
        lines += _section("Fix:", deciding.fix, colour)
    # A followed redirect's own headers are never readable by the page: warning about exposing them is noise.
    warnings = [
        caveat
        for leg in exchange.legs
        for caveat in leg.verdict.warnings
        if not (leg.location and caveat.code == "header_not_exposed")
    ]
    if warnings:
        lines.append(_label("Warnings:", colour))
        seen: set[str] = set()
        for caveat in warnings:
            if caveat.message not in seen:
                seen.add(caveat.message)
                lines.append(_term.paint(f"  - {caveat.message}", "yellow", enabled=colour))
    credentialed = deciding.if_credentialed
    if credentialed is not None:
        outcome = credentialed.verdict + (f" ({credentialed.reason})" if credentialed.reason else "")
        lines.append(_label("With credentials: 'include':", colour) + f" {outcome}")
        if credentialed.browser_message:
            lines.append(f"  {credentialed.browser_message}")
        if credentialed.fix:
            lines.append(f"  Fix: {credentialed.fix}")
    return "\n".join(lines).rstrip("\n")

"""How ``check`` and ``explain`` present an exchange: readable text (coloured on a terminal) or JSON.

The JSON uses the field names of corstrace's log events (``verdict``, ``reason``,
``browser_message``, ``request_headers``...), so one consumer can read both. Header values that
are secrets (cookies, tokens) are redacted in both forms, like the middleware's events, and so are
secret query values wherever a URL is quoted (the browser's messages quote the URL).

Everything shown comes from someone else's traffic, so nothing reaches the terminal raw: control
characters (C0, DEL, C1) and invisible formatting characters (bidi overrides) are shown as visible
escapes (``\\x1b``, ``\\u202e``) in the text, and as ``\\uXXXX`` in the JSON; a command meant to be
pasted into a shell quotes every word (:func:`shell_command`).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Sequence
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


# --- text that is safe where it goes ------------------------------------------------------------


def _escape_char(char: str) -> str:
    code = ord(char)
    if char in "\t\n\r":
        return {"\t": "\\t", "\n": "\\n", "\r": "\\r"}[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def visible(text: str) -> str:
    """``text`` fit for a terminal: every non-printable character (controls, bidi overrides) as a visible escape.

    Newlines too: one value from traffic must not start a line that looks like corstrace's own.
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape_char(char) for char in text)


def _json_escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # JSON writes an astral character as its UTF-16 surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def shell_word(word: str) -> str:
    """One argument for a POSIX shell, which pasted runs as exactly ``word`` and nothing else.

    Printable text is single-quoted (:func:`shlex.quote`). Text with control or invisible characters uses
    ``$'...'`` (bash, zsh, ksh; POSIX.1-2024 sh) with every such character, the quote and ``!`` (history
    expansion) written as escapes, so the command shows what it sends and no raw control reaches the
    terminal. Characters below U+0100 are written as the byte ``\\xHH``: header values hold one byte per
    character, and ``corstrace check`` reads an undecodable argv byte back as that byte.
    """
    if word.isprintable():
        return shlex.quote(word)
    out = []
    for char in word:
        if char == "\\":
            out.append("\\\\")
        elif char in "'!" or not char.isprintable():
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else _escape_char(char))
        else:
            out.append(char)
    return "$'" + "".join(out) + "'"


def shell_command(argv: Sequence[str]) -> str:
    """``argv`` as one line to paste into a shell (see :func:`shell_word`)."""
    return " ".join(shell_word(word) for word in argv)


def _scrubber(urls: Iterable[str | None]) -> list[tuple[str, str]]:
    """(URL as sent, URL with its secret query values redacted) for each URL that has some, longest first."""
    pairs = {url: redact_url(url) for url in urls if url}
    return sorted(((raw, safe) for raw, safe in pairs.items() if raw != safe), key=lambda pair: -len(pair[0]))


def _scrub(text: str | None, pairs: list[tuple[str, str]]) -> str | None:
    if text is None:
        return None
    for raw, safe in pairs:
        text = text.replace(raw, safe)
    return text


def _exchange_urls(exchange: Exchange) -> list[str | None]:
    urls: list[str | None] = [exchange.url]
    for leg in exchange.legs:
        urls += [leg.verdict.url, leg.redirected_from, leg.location]
    return urls


_TEXT_FIELDS = ("browser_message", "firefox_message", "explanation", "fix")


def leg_fields(leg: Leg, scrub: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """One leg as the log events describe it: the verdict's fields plus status, URL and (redacted) headers."""
    pairs = _scrubber([leg.verdict.url, leg.redirected_from, leg.location]) if scrub is None else scrub
    fields = leg.verdict.as_dict()
    for key in _TEXT_FIELDS:
        fields[key] = _scrub(fields[key], pairs)
    credentialed = fields.get("if_credentialed")
    if credentialed:
        for key in _TEXT_FIELDS:
            if key in credentialed:
                credentialed[key] = _scrub(credentialed[key], pairs)
    for warning in fields.get("warnings", ()):
        warning["message"] = _scrub(warning["message"], pairs)
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
    pairs = _scrubber(_exchange_urls(exchange))
    fields = leg_fields(exchange.deciding, pairs)
    fields["legs"] = [leg_fields(leg, pairs) for leg in exchange.legs]
    fields["notes"] = [_scrub(note, pairs) for note in exchange.notes]
    return fields


def to_json(data: Any) -> str:
    """``data`` as indented JSON whose strings hold no raw control or invisible character (``\\uXXXX`` instead)."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    if text.isprintable():
        return text
    # json escapes C0 controls itself; DEL, C1 and formatting characters it leaves raw. Outside strings the
    # text is ASCII with newlines, so every other non-printable character is inside a string.
    return "".join(char if char.isprintable() or char == "\n" else _json_escape(char) for char in text)


def _label(text: str, colour: bool) -> str:
    return _term.paint(text, "bold", enabled=colour)


def _paint(text: str | None, *styles: str, colour: bool) -> str:
    """Text from traffic, escaped, then coloured: the escaping never touches corstrace's own colour codes."""
    return _term.paint(visible(text or ""), *styles, enabled=colour)


def _leg_line(index: int, leg: Leg, colour: bool) -> list[str]:
    verdict = leg.verdict
    blocked = verdict.verdict == "blocked"
    state = _paint(verdict.verdict, "red" if blocked else "green", colour=colour)
    if blocked and verdict.reason:
        state += f" ({visible(verdict.reason)})"
    status = "?" if leg.status is None else str(leg.status)
    kind = "preflight" if leg.kind == "preflight" else ("redirect" if leg.location else "actual")
    target = visible(f"{verdict.method} {redact_url(verdict.url)}")
    lines = [f"  {index}. {kind:<9} {target} -> {status}  {state}"]
    for name, value in _REDACTOR.headers(leg.request_headers):
        if name.lower() in _SHOWN_REQUEST:
            lines.append(_paint(f"       > {name}: {value}", "dim", colour=colour))
    shown = [
        (name, value)
        for name, value in _REDACTOR.headers(leg.response_headers)
        if name.lower().startswith(_SHOWN_RESPONSE_PREFIX) or name.lower() in _SHOWN_RESPONSE
    ]
    if not shown and leg.status is not None:
        lines.append(_term.paint("       < (no CORS headers)", "dim", enabled=colour))
    for name, value in shown:
        if name.lower() == "location":
            value = redact_url(value)
        lines.append(_paint(f"       < {name}: {value}", "dim", colour=colour))
    return lines


def _section(title: str, body: str | None, colour: bool) -> list[str]:
    return [_label(title, colour), *(f"  {visible(line)}" for line in (body or "").splitlines())]


def render_exchange(exchange: Exchange, *, colour: bool, headline: str | None = None) -> str:
    """The text report: verdict line, each leg, the browser's message, why, the fix and the warnings.

    ``headline`` (already made terminal-safe by the caller) replaces the default title.
    """
    pairs = _scrubber(_exchange_urls(exchange))
    deciding = exchange.deciding.verdict
    blocked = not exchange.allowed
    word = _term.paint("BLOCKED" if blocked else "ALLOWED", "bold", "red" if blocked else "green", enabled=colour)
    mode = "credentials: 'include'" if exchange.credentials else "no credentials"
    title = headline or visible(f"{exchange.method} {redact_url(exchange.url)} from origin {exchange.origin} ({mode})")
    lines = [f"{word}  {title}"]
    if blocked and deciding.reason:
        lines.append(f"{_label('reason', colour)}   {visible(deciding.reason)}")
    lines.append("")
    for index, leg in enumerate(exchange.legs, 1):
        lines.extend(_leg_line(index, leg, colour))
    lines.append("")
    for note in exchange.notes:
        lines.append(_paint(f"note: {_scrub(note, pairs)}", "yellow", colour=colour))
    if exchange.notes:
        lines.append("")
    if deciding.browser_message:
        lines += _section("Browser console (Chromium):", _scrub(deciding.browser_message, pairs), colour)
    if deciding.firefox_message:
        lines += _section("Firefox:", _scrub(deciding.firefox_message, pairs), colour)
    lines += _section("Why:", _scrub(deciding.explanation, pairs), colour)
    if deciding.fix:
        lines += _section("Fix:", _scrub(deciding.fix, pairs), colour)
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
                lines.append(_paint(f"  - {_scrub(caveat.message, pairs)}", "yellow", colour=colour))
    credentialed = deciding.if_credentialed
    if credentialed is not None:
        outcome = credentialed.verdict + (f" ({credentialed.reason})" if credentialed.reason else "")
        lines.append(_label("With credentials: 'include':", colour) + f" {visible(outcome)}")
        if credentialed.browser_message:
            lines.append(f"  {visible(_scrub(credentialed.browser_message, pairs) or '')}")
        if credentialed.fix:
            lines.append(f"  Fix: {visible(_scrub(credentialed.fix, pairs) or '')}")
    return "\n".join(lines).rstrip("\n")

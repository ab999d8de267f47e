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
from corstrace._fetch import REDIRECT_STATUSES
from corstrace._header_fix import HeaderFix, LegChange
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


def _scrub_texts(fields: dict[str, Any], pairs: list[tuple[str, str]]) -> None:
    """Scrub every message-like field in place: the text ones and each line of ``firefox_console``."""
    for key in _TEXT_FIELDS:
        if key in fields:
            fields[key] = _scrub(fields[key], pairs)
    if fields.get("firefox_console"):
        fields["firefox_console"] = [_scrub(line, pairs) for line in fields["firefox_console"]]


def _initiator(leg: Leg, initiator: str | None) -> tuple[str | None, str | None]:
    """The leg's ``initiator`` and ``browser_message_xhr``: the page API ``check`` played, else the engine's view.

    The engine adds both to its verdicts (read with getattr: older engines have neither).
    """
    if initiator is None:
        return getattr(leg.verdict, "initiator", None), getattr(leg.verdict, "browser_message_xhr", None)
    return initiator, leg.browser_message_xhr


def leg_fields(leg: Leg, scrub: list[tuple[str, str]] | None = None, initiator: str | None = None) -> dict[str, Any]:
    """One leg as the log events describe it: the verdict's fields plus status, URL and (redacted) headers."""
    pairs = _scrubber([leg.verdict.url, leg.redirected_from, leg.location]) if scrub is None else scrub
    fields = leg.verdict.as_dict()
    fields["initiator"], xhr = _initiator(leg, initiator)
    fields["browser_message_xhr"] = _scrub(xhr, pairs)
    _scrub_texts(fields, pairs)
    credentialed = fields.get("if_credentialed")
    if credentialed:
        _scrub_texts(credentialed, pairs)
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


def exchange_fields(exchange: Exchange, fix: HeaderFix | None = None) -> dict[str, Any]:
    """The deciding leg's fields at the top level, every leg under ``legs``, and the notes.

    With ``fix`` (``check``'s header-level fix for the whole exchange), ``fix`` is its text, ``fix_code`` its
    header lines, ``fix_verified`` whether the replay proved it and ``fix_legs`` the change per leg; the
    engine's fix for each single leg stays in ``legs``.
    """
    pairs = _scrubber(_exchange_urls(exchange))
    fields = leg_fields(exchange.deciding, pairs, exchange.initiator)
    fields["legs"] = [leg_fields(leg, pairs, exchange.initiator) for leg in exchange.legs]
    fields["notes"] = [_scrub(note, pairs) for note in exchange.notes]
    fields.update(fix_verified=None, fix_code=None, fix_legs=[])
    if exchange.allowed:
        fields["fix"] = None
    elif fix is not None:
        pairs = _scrubber([*_exchange_urls(exchange), *(leg.url for leg in fix.legs)])
        fields.update(
            fix=_scrub("\n".join(fix_lines(fix, exchange, colour=False)), pairs),
            fix_code=_scrub(fix_code(fix), pairs),
            fix_verified=fix.verified,
            fix_legs=[_change_fields(change, pairs) for change in fix.legs],
        )
    return fields


def _change_fields(change: LegChange, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "leg": change.kind,
        "hop": change.hop,
        "method": change.method,
        "url": redact_url(change.url),
        "status": change.status,
        "new_status": change.new_status,
        "set_headers": [[name, _scrub(value, pairs)] for name, value in change.set_headers],
        "remove_headers": list(change.remove_headers),
        "sent": change.sent,
        "passes": change.passes,
    }


def _target(change: LegChange) -> str:
    return f"{change.method} {redact_url(change.url)}"


def fix_code(fix: HeaderFix) -> str:
    """The header lines of the fix, leg by leg: what "copy fix" copies."""
    lines: list[str] = []
    for change in fix.legs:
        if not change.changed:
            continue
        status = f": answer {change.new_status}" if change.new_status is not None else ""
        lines.append(f"# {change.kind} {_target(change)}{status}")
        lines += [f"{name}: {value}" for name, value in change.set_headers]
        lines += [f"# and no {name} header" for name in change.remove_headers]
    return visible_lines("\n".join(lines))


def visible_lines(text: str) -> str:
    """:func:`visible` for each line of a text corstrace wrote itself (its newlines are its own)."""
    return "\n".join(visible(line) for line in text.split("\n"))


_SENT_NOTES = {
    "exchange": "",
    "replay": " (sent by check to verify the fix; the browser stops before it)",
    "not_sent": " (not sent: the browser stops before it)",
}


def fix_lines(fix: HeaderFix, exchange: Exchange, *, colour: bool) -> list[str]:
    """The fix section: every leg whose response must change, the proof, and the server's own hint."""
    badge = (
        _term.paint("verified", "green", enabled=colour)
        if fix.verified
        else _term.paint("not verified", "yellow", enabled=colour)
    )
    lines = [
        _label("Fix", colour) + f" ({badge}) — response headers: `corstrace check` cannot read the server's CORS "
        "configuration, so it names what each response must carry (each header line replacing the one sent):"
    ]
    for index, change in enumerate(fix.legs, 1):
        if not change.changed:
            continue
        if change.new_status is not None:
            what = (
                f"answer {change.new_status} (not {change.status})" if change.status else f"answer {change.new_status}"
            )
            what += " and send:" if change.set_headers else ""
        else:
            what = "send:"
        kind = "redirect" if change.kind == "actual" and change.status in REDIRECT_STATUSES else change.kind
        lines.append(visible(f"  {index}. {kind:<9} {_target(change)}{_SENT_NOTES[change.sent]}: {what}"))
        lines += [visible(f"       {name}: {value}") for name, value in change.set_headers]
        lines += [visible(f"       and no {name} header") for name in change.remove_headers]
    if fix.verified:
        lines.append("  Verified: replayed through corstrace's engine with these changes, every leg passes.")
    else:
        lines.append(visible(f"  Not verified: {fix.why_not_verified}."))
    if fix.page_note:
        lines.append(visible(f"  {fix.page_note}"))
    if exchange.server_hint:
        lines.append(
            visible(f"  Starlette's CORSMiddleware answered (its 400 says what it refused): {exchange.server_hint}")
        )
    return lines


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


def _worded_differently(fetch_text: str, xhr_text: str | None) -> bool:
    """Whether XMLHttpRequest's console text says more than fetch's with its first words changed."""
    if not xhr_text:
        return False
    return xhr_text.replace("Access to XMLHttpRequest at ", "Access to fetch at ", 1) != fetch_text


def render_exchange(
    exchange: Exchange, *, colour: bool, headline: str | None = None, fix: HeaderFix | None = None
) -> str:
    """The text report: verdict line, each leg, the browser's message, why, the fix and the warnings.

    ``headline`` (already made terminal-safe by the caller) replaces the default title; ``fix`` (``check``'s
    header-level fix for the whole exchange) replaces the engine's fix for the deciding leg.
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
    _, xhr = _initiator(exchange.deciding, exchange.initiator)
    if deciding.browser_message and _worded_differently(deciding.browser_message, xhr):
        lines += _section("Browser console (Chromium, fetch()):", _scrub(deciding.browser_message, pairs), colour)
        lines += _section("Browser console (Chromium, XMLHttpRequest / axios):", _scrub(xhr, pairs), colour)
    elif deciding.browser_message:
        lines += _section("Browser console (Chromium):", _scrub(deciding.browser_message, pairs), colour)
    if deciding.firefox_message:
        lines += _section("Firefox:", _scrub(deciding.firefox_message, pairs), colour)
    lines += _section("Why:", _scrub(deciding.explanation, pairs), colour)
    if fix is not None and blocked:
        fix_pairs = _scrubber([*_exchange_urls(exchange), *(change.url for change in fix.legs)])
        lines += [_scrub(line, fix_pairs) or "" for line in fix_lines(fix, exchange, colour=colour)]
    elif deciding.fix:
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

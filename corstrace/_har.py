"""``corstrace explain FILE.har``: judge every cross-origin request in a HAR exported from DevTools.

HAR 1.2 as Chrome, Firefox and Playwright write it. What differs between them, and matters here:

- a request the browser blocked has ``response.status`` 0 (Chrome, Firefox) or -1 (Playwright),
  ``_error``/``_failureText`` such as ``net::ERR_FAILED``, and often no response headers at all, and
  its request headers are the "provisional" ones (no ``Origin``);
- Chrome records preflights as separate ``OPTIONS`` entries (``_resourceType: "preflight"``); they
  are paired with the actual request that follows, so a blocked preflight is judged, not guessed;
- the page's origin is the ``Origin`` header, else Chrome's ``_initiator.url``, else the
  ``Referer``, else the page's document entry.

A file that is not a HAR is one clear line on stderr and exit 2; an entry that cannot be judged is
listed as such, with the ``corstrace check`` command that finds out.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO
from urllib.parse import quote

from corstrace import _output, _term
from corstrace._check import Exchange, Leg, normalize_method
from corstrace._fetch import REDIRECT_STATUSES, is_page_settable, is_token, resolve_location
from corstrace._redact import Redactor, redact_url
from corstrace.engine import Headers, Request, Response, evaluate, serialize_origin

ItemState = Literal["allowed", "blocked", "unjudged"]

# Fetch modes whose responses the browser CORS-checks; other cross-origin requests (images,
# classic scripts, navigations) are not CORS and are only counted.
_CORS_RESOURCE_TYPES = frozenset({"fetch", "xhr", "xmlhttprequest", "preflight", "font", "eventsource"})
_XHR_RESOURCE_TYPES = frozenset({"xhr", "xmlhttprequest"})  # Chrome's and Firefox's names
# Chromium's error for a CORS failure; any other net:: error is a network failure, not a CORS verdict.
_CORS_NET_ERROR = "net::ERR_FAILED"
_TAB_NEWLINE = str.maketrans("", "", "\t\n\r")  # the URL parser removes these wherever they are
_REDACTOR = Redactor()


class HarError(Exception):
    """The file is not a readable HAR: one line for the user."""


@dataclass(frozen=True, slots=True)
class _Entry:
    index: int  # position in log.entries, 0-based
    method: str
    url: str
    request_headers: Headers
    status: int  # <= 0 when the browser recorded no response
    response_headers: Headers
    error: str | None  # _error / _failureText
    resource_type: str | None
    initiator_url: str | None
    pageref: str | None
    has_cookies: bool = False  # `request.cookies` lists some (DevTools keeps them off a blocked entry's headers)

    def header(self, name: str) -> str | None:
        for key, value in self.request_headers:
            if key.lower() == name:
                return value
        return None

    def response_header(self, name: str) -> str | None:
        for key, value in self.response_headers:
            if key.lower() == name:
                return value
        return None

    @property
    def is_preflight(self) -> bool:
        return self.resource_type == "preflight" or (
            self.method == "OPTIONS" and self.header("access-control-request-method") is not None
        )

    @property
    def has_response(self) -> bool:
        return self.status > 0

    @property
    def credentialed(self) -> bool:
        """The HAR shows the request was sent with ``credentials: 'include'``.

        Cookies prove it; so does ``Sec-Fetch-Storage-Access``, which Chromium sends only on a
        cross-site request whose credentials mode is ``include``.
        """
        return (
            self.has_cookies or self.header("cookie") is not None or self.header("sec-fetch-storage-access") is not None
        )


@dataclass(frozen=True, slots=True)
class Item:
    """One cross-origin exchange of the HAR: judged (``exchange``) or not (``why_unjudged``)."""

    entries: tuple[int, ...]  # 1-based entry numbers, as a person counts them
    state: ItemState
    method: str
    url: str
    origin: str
    exchange: Exchange | None = None
    why_unjudged: str | None = None
    check_command: str | None = None
    # The HAR shows no credentials mode: the command may need --credentials to reproduce the block.
    credentials_unknown: bool = False


@dataclass(frozen=True, slots=True)
class Report:
    items: tuple[Item, ...]
    skipped_same_origin: int
    skipped_not_cors: int


# --- reading ---------------------------------------------------------------------------------


STDIN = "-"
_STDIN_NAME = "<stdin>"


def load(path: str) -> list[_Entry]:
    """The entries of the HAR at ``path`` (``-``: standard input); raises :class:`HarError` naming what is wrong."""
    name = _STDIN_NAME if path == STDIN else path
    try:
        data = sys.stdin.buffer.read() if path == STDIN else Path(path).read_bytes()
        text = data.decode("utf-8-sig")
    except FileNotFoundError:
        raise HarError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise HarError(f"{name}: is a directory, not a HAR file") from None
    except UnicodeDecodeError as exc:
        raise HarError(f"{name}: not a HAR file (not UTF-8 text: byte {exc.start} is invalid)") from None
    except OSError as exc:
        raise HarError(f"{name}: cannot read it ({exc.strerror or exc})") from None
    return parse(text, name)


def parse(text: str, name: str) -> list[_Entry]:
    """The entries of the HAR ``text`` (read from ``name``, used in messages); raises :class:`HarError`."""
    if not text.strip():
        raise HarError(f"{name}: the file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if _is_cut_short(text, exc):
            line = text.count("\n") + 1
            column = len(text) - text.rfind("\n")
            raise HarError(
                f"{name}: truncated JSON: it ends at line {line} column {column} before the HAR is "
                "complete (was the export or the copy interrupted?)"
            ) from None
        raise HarError(f"{name}: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise HarError(f"{name}: not a HAR file (JSON nested too deeply)") from None
    if not isinstance(data, dict) or not isinstance(data.get("log"), dict):
        raise HarError(f"{name}: not a HAR file: no `log` object at the top level")
    entries = data["log"].get("entries")
    if entries is None:
        raise HarError(f"{name}: not a HAR file: `log.entries` is missing")
    if not isinstance(entries, list):
        raise HarError(f"{name}: not a HAR file: `log.entries` is {_kind(entries)}, not a list")
    documents = _documents(data["log"], entries)
    return [_entry(name, index, raw, documents) for index, raw in enumerate(entries)]


# What may be left at the end of a document cut short in the middle of a token: the start of a literal or of
# a number's sign, fraction or exponent (json reports those at the token, not at the end of the text).
_CUT_TOKENS = ("true", "false", "null", "-", ".", "e+", "e-", "E+", "E-")
_HEX = frozenset("0123456789abcdefABCDEF")


def _is_cut_short(text: str, error: json.JSONDecodeError) -> bool:
    """Whether ``text`` fails only because it stops early (an interrupted export), not because it is not JSON."""
    if text.lstrip()[:1] not in ("{", "["):
        return False
    if error.msg.startswith("Unterminated string"):
        return True  # json only says this when the end of the text comes before the closing quote
    rest = text[error.pos :]
    if not rest.strip():
        return True
    if error.msg.startswith("Invalid \\uXXXX escape"):
        digits = rest.removeprefix("\\").removeprefix("u")
        return len(digits) <= 4 and _HEX.issuperset(digits)  # a \uXXXX escape at the very end of the text
    return any(token.startswith(rest) for token in _CUT_TOKENS)


def _kind(value: Any) -> str:
    return {dict: "an object", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _documents(log: dict[str, Any], entries: list[Any]) -> dict[str, str]:
    """pageref -> the page's URL: Chrome puts it in ``pages[].title``, Playwright only has the document entry."""
    found: dict[str, str] = {}
    for page in log.get("pages") or []:
        if isinstance(page, dict) and isinstance(page.get("id"), str):
            title = page.get("title")
            if isinstance(title, str) and title.startswith(("http://", "https://")):
                found[page["id"]] = title
    for raw in entries:
        if not isinstance(raw, dict) or raw.get("_resourceType") != "document":
            continue
        ref = raw.get("pageref") or raw.get("_frameref")
        request = raw.get("request")
        if isinstance(ref, str) and isinstance(request, dict) and isinstance(request.get("url"), str):
            found.setdefault(ref, request["url"])
    return found


def _headers(value: Any) -> Headers:
    if not isinstance(value, list):
        return ()
    return tuple(
        (item["name"], item["value"])
        for item in value
        if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("value"), str)
    )


def _entry(path: str, index: int, raw: Any, documents: dict[str, str]) -> _Entry:
    where = f"{path}: entry #{index + 1} (log.entries[{index}])"
    if not isinstance(raw, dict):
        raise HarError(f"{where} is {_kind(raw)}, not an object")
    request = raw.get("request")
    if not isinstance(request, dict):
        raise HarError(f"{where} has no `request` object")
    url, method = request.get("url"), request.get("method")
    if not isinstance(url, str) or not url:
        raise HarError(f"{where} has no `request.url`")
    if not isinstance(method, str) or not method:
        raise HarError(f"{where} has no `request.method`")
    found = raw.get("response")
    response: dict[str, Any] = found if isinstance(found, dict) else {}
    status = response.get("status")
    error = response.get("_error") or response.get("_failureText") or raw.get("_error")
    initiator = raw.get("_initiator")
    initiator_url = initiator.get("url") if isinstance(initiator, dict) else None
    ref = raw.get("pageref") or raw.get("_frameref")
    resource_type = raw.get("_resourceType")
    cookies = request.get("cookies")
    return _Entry(
        index=index,
        method=normalize_method(method),
        url=url,
        request_headers=_headers(request.get("headers")),
        status=status if isinstance(status, int) and not isinstance(status, bool) else 0,
        response_headers=_headers(response.get("headers")),
        error=error if isinstance(error, str) and error else None,
        resource_type=resource_type.lower() if isinstance(resource_type, str) else None,
        initiator_url=initiator_url if isinstance(initiator_url, str) else None,
        pageref=documents.get(ref) if isinstance(ref, str) else None,
        has_cookies=isinstance(cookies, list) and bool(cookies),
    )


# --- judging ---------------------------------------------------------------------------------


def _page_origin(entry: _Entry) -> str | None:
    origin = entry.header("origin")
    if origin:
        return origin
    # A preflight's _initiator.url is the actual request's URL, not the page.
    candidates = [None if entry.is_preflight else entry.initiator_url, entry.header("referer"), entry.pageref]
    for candidate in candidates:
        if candidate and serialize_origin(candidate) != "null":
            return serialize_origin(candidate)
    return None


def _is_cors(entry: _Entry) -> bool:
    mode = entry.header("sec-fetch-mode")
    if mode is not None:
        return mode.lower() == "cors"
    if entry.resource_type is not None:
        return entry.resource_type in _CORS_RESOURCE_TYPES
    return entry.header("origin") is not None


def _check_command(entry: _Entry, origin: str) -> str | None:
    """The ``corstrace check`` that reproduces ``entry``, safe to paste; None when the HAR's method is not a method.

    Everything in it comes from the HAR, so everything is quoted (:func:`corstrace._output.shell_command`),
    secrets are placeholders (the header names decide the preflight, their values do not), and what a
    browser could never send (a header name that is not a token, a value with CR, LF or NUL) is left out.
    """
    if not is_token(entry.method):
        return None
    argv = ["corstrace", "check", _command_url(entry.url), "--origin", origin]
    if entry.method != "GET":
        argv += ["--method", entry.method]
    for name, value in entry.request_headers:
        lowered = name.lower()
        if not is_token(name) or any(char in value for char in "\r\n\0"):
            continue
        if is_page_settable(lowered, value) and lowered not in ("accept", "accept-language"):
            argv += ["--header", f"{name}: {_placeholder(name, value)}"]
    if entry.credentialed:
        argv.append("--credentials")
    return _output.shell_command(argv)


def _placeholder(name: str, value: str) -> str:
    """``value``, or a placeholder when it is a secret: ``Bearer <token>`` keeps the scheme, which is not secret."""
    if _REDACTOR.value(name, value) == value:
        return value
    scheme, _, rest = value.strip().partition(" ")
    if name.lower() in ("authorization", "proxy-authorization") and rest and scheme.isalpha() and len(scheme) <= 20:
        return f"{scheme} <token>"
    return "<secret>"


def _command_url(url: str) -> str:
    """The URL to check, as the browser's URL parser would send it: tabs and newlines removed, other controls
    and invisible characters percent-encoded, secret query values redacted."""
    cleaned = redact_url(url.translate(_TAB_NEWLINE))
    if cleaned.isprintable():
        return cleaned
    return "".join(char if char.isprintable() else quote(char, safe="") for char in cleaned)


def _leg(entry: _Entry, origin: str, redirected_from: str | None) -> Leg:
    headers = entry.request_headers
    if entry.header("origin") is None:
        headers = (*headers, ("Origin", origin))
    credentials: Literal["include"] | None = "include" if entry.credentialed and not entry.is_preflight else None
    request = Request(
        entry.method,
        entry.url,
        headers,
        preflight=entry.is_preflight,
        credentials=credentials,
        initiator="XMLHttpRequest" if entry.resource_type in _XHR_RESOURCE_TYPES else "fetch",
        redirected_from=redirected_from,
    )
    verdict = evaluate(request, Response(entry.status, entry.response_headers))
    location = entry.response_header("location")
    followed = (
        resolve_location(entry.url, location)
        if location and entry.status in REDIRECT_STATUSES and verdict.verdict == "allowed"
        else None
    )
    kind: Literal["preflight", "actual"] = "preflight" if entry.is_preflight else "actual"
    return Leg(kind, 0, verdict, entry.status, headers, entry.response_headers, redirected_from, followed)


def judge(entries: list[_Entry]) -> Report:
    """Group the entries into exchanges (preflight + actual, redirect hops) and judge each one."""
    items: list[Item] = []
    same_origin = not_cors = 0
    pending_preflights: dict[tuple[str, str, str], _Entry] = {}  # (origin, url, method) -> preflight entry
    redirects: dict[str, tuple[int, str]] = {}  # location -> (item index, first URL)
    for entry in entries:
        origin = _page_origin(entry)
        if origin is None or origin == serialize_origin(entry.url):
            same_origin += 1
            continue
        if not _is_cors(entry):
            not_cors += 1
            continue
        if entry.is_preflight:
            requested = entry.header("access-control-request-method") or ""
            if not entry.has_response:
                continue  # nothing to judge; the actual entry that follows reports the failure
            pending_preflights[(origin, entry.url, normalize_method(requested))] = entry
            continue
        preflight = pending_preflights.pop((origin, entry.url, entry.method), None)
        chain = redirects.pop(entry.url, None)
        redirected_from = chain[1] if chain else None
        legs: list[Leg] = []
        numbers: list[int] = []
        if preflight is not None:
            legs.append(_leg(preflight, origin, redirected_from))
            numbers.append(preflight.index + 1)
        numbers.append(entry.index + 1)
        if not (legs and legs[0].verdict.verdict == "blocked"):
            if not (entry.has_response or entry.response_headers):
                items.append(_unjudged(entry, origin, tuple(numbers)))
                continue
            legs.append(_leg(entry, origin, redirected_from))
        if chain is not None:
            # A redirect hop: it continues the exchange of the request that was redirected.
            previous = items[chain[0]]
            assert previous.exchange is not None
            merged = Exchange(
                previous.exchange.url,
                previous.exchange.origin,
                previous.exchange.method,
                previous.exchange.credentials,
                (*previous.exchange.legs, *legs),
            )
            items[chain[0]] = _item(merged, (*previous.entries, *numbers))
            item_index = chain[0]
        else:
            exchange = Exchange(entry.url, origin, entry.method, entry.credentialed, tuple(legs), _notes(entry))
            items.append(_item(exchange, tuple(numbers)))
            item_index = len(items) - 1
        location = legs[-1].location
        if location is not None:
            redirects[location] = (item_index, redirected_from or entry.url)
    for (origin, url, method), preflight in pending_preflights.items():
        # A preflight whose actual request is not in the HAR: judge it alone.
        leg = _leg(preflight, origin, None)
        items.append(_item(Exchange(url, origin, method, False, (leg,)), (preflight.index + 1,)))
    items.sort(key=lambda item: item.entries[0])
    return Report(tuple(items), same_origin, not_cors)


def _notes(entry: _Entry) -> tuple[str, ...]:
    if entry.has_response or not entry.response_headers:
        return ()
    return (f"The browser failed this request ({entry.error or 'no status'}); the judged headers are the HAR's.",)


def _item(exchange: Exchange, numbers: tuple[int, ...]) -> Item:
    state: ItemState = "allowed" if exchange.allowed else "blocked"
    return Item(numbers, state, exchange.method, exchange.url, exchange.origin, exchange)


def _unjudged(entry: _Entry, origin: str, numbers: tuple[int, ...]) -> Item:
    command = _check_command(entry, origin)
    if entry.error is None or entry.error == _CORS_NET_ERROR:
        why = f"blocked by the browser ({entry.error or 'no response'}); the HAR has no response headers to judge " + (
            "— run `corstrace check` to see why"
            if command
            else f"— and its method {entry.method!r} is not an HTTP method, so no `corstrace check` can replay it"
        )
        state: ItemState = "blocked"
    else:
        why = f"failed with {entry.error}: a network error, not a CORS verdict; the HAR has no response to judge"
        state = "unjudged"
    return Item(numbers, state, entry.method, entry.url, origin, None, why, command, not entry.credentialed)


# --- output ----------------------------------------------------------------------------------


def _summary(report: Report) -> dict[str, Any]:
    reasons: Counter[str] = Counter()
    for item in report.items:
        if item.state == "blocked":
            reason = item.exchange.deciding.verdict.reason if item.exchange else None
            reasons[reason or "blocked by the browser, no response in the HAR"] += 1
    return {
        "cross_origin": len(report.items),
        "allowed": sum(item.state == "allowed" for item in report.items),
        "blocked": sum(item.state == "blocked" for item in report.items),
        "unjudged": sum(item.state == "unjudged" for item in report.items),
        "by_reason": dict(reasons.most_common()),
        "skipped_same_origin": report.skipped_same_origin,
        "skipped_not_cors": report.skipped_not_cors,
    }


def _item_fields(item: Item) -> dict[str, Any]:
    base: dict[str, Any] = {"entries": list(item.entries), "state": item.state}
    if item.exchange is not None:
        return {**base, **_output.exchange_fields(item.exchange)}
    return {
        **base,
        "verdict": "blocked" if item.state == "blocked" else None,
        "reason": None,
        "method": item.method,
        "url": redact_url(item.url),
        "origin": item.origin,
        "explanation": item.why_unjudged,
        "check_command": item.check_command,
    }


def report_json(path: str, report: Report) -> dict[str, Any]:
    return {"file": path, "items": [_item_fields(item) for item in report.items], "summary": _summary(report)}


def _numbers(item: Item) -> str:
    return "#" + ", #".join(str(number) for number in item.entries)


def render(report: Report, *, colour: bool) -> str:
    blocks: list[str] = []
    for item in report.items:
        title = _output.visible(f"{item.method} {redact_url(item.url)} from origin {item.origin}") + (
            f"  (entry {_numbers(item)})"
        )
        if item.exchange is not None:
            blocks.append(_output.render_exchange(item.exchange, colour=colour, headline=title))
            continue
        word = "BLOCKED" if item.state == "blocked" else "NOT JUDGED"
        painted = _term.paint(word, "bold", "red" if item.state == "blocked" else "yellow", enabled=colour)
        why = _output.visible(item.why_unjudged or "")
        lines = [f"{painted}  {title}", f"  {why}:" if item.state == "blocked" and item.check_command else f"  {why}"]
        if item.check_command:
            lines.append(f"    {item.check_command}")
            if item.credentials_unknown:
                lines.append(
                    "  (add --credentials if the page sends credentials: `credentials: 'include'` or "
                    "`withCredentials`; the HAR does not say)"
                )
        blocks.append("\n".join(lines))
    summary = _summary(report)
    lines = [_term.paint("Summary", "bold", enabled=colour)]
    lines.append(
        f"  {summary['cross_origin']} cross-origin request(s): {summary['allowed']} allowed, "
        f"{summary['blocked']} blocked" + (f", {summary['unjudged']} not judged" if summary["unjudged"] else "")
    )
    for reason, count in summary["by_reason"].items():
        lines.append(f"    {count} × {_output.visible(reason)}")
    skipped = summary["skipped_same_origin"] + summary["skipped_not_cors"]
    if skipped:
        lines.append(
            f"  skipped {summary['skipped_same_origin']} same-origin and {summary['skipped_not_cors']} "
            "non-CORS (navigation, image, script...) request(s)"
        )
    blocks.append("\n".join(lines))
    separator = "\n" + _term.paint("─" * 60, "dim", enabled=colour) + "\n"
    return separator.join(blocks)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``explain`` subcommand's arguments."""
    parser.add_argument("har", metavar="FILE.har", help="a HAR file exported from DevTools (Network > Save all as HAR)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (the log events' field names)")


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """``corstrace explain``: 0 when nothing was blocked, 1 when something was, 2 for an unreadable file."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        report = judge(load(args.har))
    except HarError as exc:
        print(f"corstrace explain: {_output.visible(str(exc))}", file=err)
        return 2
    if args.json:
        print(_output.to_json(report_json(args.har, report)), file=out)
    else:
        print(render(report, colour=_output.colour_for(out)), file=out)
    return 1 if any(item.state == "blocked" for item in report.items) else 0

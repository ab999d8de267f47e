"""``corstrace check`` as a command: its arguments, the network under it, and what it prints.

The exchange itself (which legs the browser sends, and how each is judged) is :mod:`corstrace._check`,
shared with :mod:`corstrace.testing`; this module only puts it on the wire and presents it.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from typing import TextIO
from urllib.parse import urlsplit

from corstrace import __version__, _output
from corstrace._check import (
    DEFAULT_TIMEOUT,
    FETCH_OR_XHR,
    CheckError,
    Exchange,
    PageApi,
    Patch,
    Send,
    normalize_method,
    run_exchange,
)
from corstrace._header_fix import Recorder, header_fix
from corstrace.engine import Headers, serialize_origin

_TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Headers a page cannot set and `check` computes itself; accepting them from --header would fake the exchange.
_COMPUTED_HEADERS = frozenset({"origin", "access-control-request-method", "access-control-request-headers"})

# --initiator: the page API, as Chromium 156 sends its request (tests/test_cli_browser.py compares them).
_IMAGE_ACCEPT = "image/jxl,image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
PAGE_APIS: dict[str, PageApi] = {
    "fetch": PageApi("fetch", "fetch", "empty", "*/*"),
    "xhr": PageApi("XMLHttpRequest", "XMLHttpRequest", "empty", "*/*"),
    "script": PageApi("script", "script", "script", "*/*"),  # <script crossorigin>
    "image": PageApi("image", "image", "image", _IMAGE_ACCEPT),  # <img crossorigin>
    "font": PageApi("font", "font", "font", "*/*"),  # @font-face: always CORS
    "eventsource": PageApi(
        "resource", "resource", "empty", "text/event-stream", (("Pragma", "no-cache"), ("Cache-Control", "no-cache"))
    ),
    # navigator.sendBeacon: no-cors for a string body (text/plain), CORS with a preflight for e.g. a JSON Blob.
    "beacon": PageApi("resource", "resource", "empty", "*/*", cors_only_when_preflighted=True),
}
# Page APIs that send a plain GET and let the page set no header (the element or API decides everything).
_GET_ONLY = {"script": "a <script>", "image": "an <img>", "font": "a font (@font-face)", "eventsource": "EventSource"}
_BEACON_BODY_TYPE = ("Content-Type", "text/plain;charset=UTF-8")  # sendBeacon(url, "a string")


def parse_url(text: str) -> str:
    """An argparse type: an absolute http(s) URL; a URL without its scheme gets a "did you mean" hint."""
    try:
        parts = urlsplit(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a URL: {text!r}") from None
    if parts.scheme in ("http", "https") and parts.hostname:
        return text
    guess = _with_scheme(text)
    hint = f"; did you mean {guess!r}?" if guess else ""
    raise argparse.ArgumentTypeError(f"not an http:// or https:// URL: {text!r}{hint}")


def _with_scheme(text: str) -> str | None:
    """``text`` with the scheme it most likely lacks: http for local and development hosts, https elsewhere."""
    if "://" in text:
        return None  # it has a scheme, just not http(s)
    rest = text.removeprefix("//")
    try:
        host = urlsplit("//" + rest).hostname
    except ValueError:
        return None
    if not host:
        return None
    return f"{'http' if _is_development_host(host) else 'https'}://{rest}"


def _is_development_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost") or "." not in host:
        return True  # loopback names and single-label names (`api`, a container's name) are not on the web
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_origin(text: str) -> str:
    """An argparse type: a serialized origin (``scheme://host[:port]``, or ``null``), exactly as a browser sends it."""
    if text == "null":
        return text
    serialized = serialize_origin(text)
    if serialized == text and urlsplit(text).scheme in ("http", "https"):
        return text
    hint = f"; did you mean {serialized!r}?" if serialized != "null" else ""
    raise argparse.ArgumentTypeError(
        f"not an origin: {text!r} (an origin is scheme://host[:port] with no path, no trailing slash "
        f"and no default port, as the browser sends it){hint}"
    )


def parse_header(text: str) -> tuple[str, str]:
    """An argparse type: ``Name: value``, with a value fetch() can send (Latin-1, one byte per character)."""
    name, colon, value = text.partition(":")
    name = name.strip()
    if not colon or not name or name.strip(_TOKEN_CHARS):
        raise argparse.ArgumentTypeError(f"not a header (expected 'Name: value'): {text!r}")
    if name.lower() in _COMPUTED_HEADERS:
        raise argparse.ArgumentTypeError(
            f"{name} is computed by corstrace as the browser computes it; use --origin/--method instead"
        )
    value = argv_bytes(value.strip(" \t"))
    if any(char in value for char in "\r\n\0"):
        raise argparse.ArgumentTypeError(f"a header value cannot contain CR, LF or NUL: {text!r}")
    beyond = next((char for char in value if ord(char) > 0xFF), None)
    if beyond is not None:
        # Chromium 156: "Failed to read the 'headers' property from 'RequestInit': String contains non
        # ISO-8859-1 code point." Header values are byte strings; nothing is sent.
        raise argparse.ArgumentTypeError(
            f"the {name} value has {beyond!r} (U+{ord(beyond):04X}), a non ISO-8859-1 code point: fetch() "
            "throws a TypeError for it and sends nothing. Percent-encode it (encodeURIComponent) or send it in "
            "the body"
        )
    return name, value


def argv_bytes(text: str) -> str:
    """``text`` with the bytes Python could not decode from argv (surrogate escapes) back as those bytes.

    Header values hold one character per byte, so ``$'\\xe9'`` typed in bash is sent as the byte 0xE9.
    """
    if text.isascii() or not any("\udc80" <= char <= "\udcff" for char in text):
        return text
    return "".join(chr(ord(char) - 0xDC00) if "\udc80" <= char <= "\udcff" else char for char in text)


def parse_method(text: str) -> str:
    """An argparse type: an HTTP method (a token), normalized as Fetch does."""
    if not text or text.strip(_TOKEN_CHARS):
        raise argparse.ArgumentTypeError(f"not an HTTP method: {text!r}")
    return normalize_method(text)


def parse_timeout(text: str) -> float:
    """An argparse type: a positive number of seconds."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"the timeout must be a positive number of seconds: {text!r}")
    return seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``check`` subcommand's arguments."""
    parser.add_argument("url", type=parse_url, metavar="URL", help="the URL the page fetches")
    parser.add_argument(
        "--origin", type=parse_origin, required=True, help="the page's origin, e.g. http://localhost:3000"
    )
    parser.add_argument(
        "--method", "-X", type=parse_method, default=None, help="the fetch() method (default: GET; POST for a beacon)"
    )
    parser.add_argument(
        "--header",
        "-H",
        type=parse_header,
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a header the page sets (repeatable)",
    )
    parser.add_argument(
        "--credentials",
        action="store_true",
        help="the page uses credentials: 'include' (withCredentials); a Cookie header implies it",
    )
    parser.add_argument(
        "--timeout",
        type=parse_timeout,
        default=DEFAULT_TIMEOUT,
        help="seconds the whole exchange may take, every leg and redirect included (default: %(default)g)",
    )
    parser.add_argument(
        "--initiator",
        choices=list(PAGE_APIS),
        default=None,
        help=(
            "the page API that makes the request, for the headers Chromium adds and the wording of its console "
            "message: fetch, xhr (XMLHttpRequest, axios), script/image (with the crossorigin attribute), font, "
            "eventsource, beacon (navigator.sendBeacon). Default: fetch or xhr, which send the same request "
            "(both messages are shown)"
        ),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object (the log events' field names)")


# --- running it ------------------------------------------------------------------------------


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """``corstrace check``: 0 when the browser allows the request, 1 when it blocks it, 2 on errors."""
    from corstrace import _wire  # httpx and httpcore: only paid for by `check`

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        api, method, headers, credentials = _request_of(args)
    except ValueError as exc:
        print(f"corstrace check: {exc}", file=err)
        return 2
    own_agent = any(name.lower() == "user-agent" for name, _ in headers)
    deadline = _wire.Deadline(args.timeout)

    def play(send: Send, patch: Patch | None = None) -> Exchange:
        return run_exchange(
            send,
            args.url,
            origin=args.origin,
            method=method,
            headers=headers,
            credentials=credentials,
            patch=patch,
            api=api,
        )

    try:
        with _wire.client(deadline, None if own_agent else _user_agent()) as client:
            recorder = Recorder(_wire.wire_sender(client, deadline))
            exchange = play(recorder)
            fix = None if exchange.allowed else header_fix(play, recorder)
    except CheckError as exc:
        print(f"corstrace check: {_output.visible(str(exc))}", file=err)
        return 2
    if args.json:
        print(_output.to_json(_output.exchange_fields(exchange, fix)), file=out)
    else:
        print(_output.render_exchange(exchange, colour=_output.colour_for(out), fix=fix), file=out)
    return 0 if exchange.allowed else 1


def _request_of(args: argparse.Namespace) -> tuple[PageApi, str, Headers, bool]:
    """The page API, method, headers and credentials the arguments describe; ValueError for what that API
    cannot send (a <script> with a PUT is no exchange a browser makes)."""
    name = args.initiator
    api = FETCH_OR_XHR if name is None else PAGE_APIS[name]
    headers: Headers = tuple(args.header)
    method = args.method or ("POST" if name == "beacon" else "GET")
    credentials = bool(args.credentials) or any(key.lower() == "cookie" for key, _ in headers)
    set_by_page = [key for key, _ in headers if key.lower() not in ("cookie", "user-agent")]
    if name in _GET_ONLY:
        what = _GET_ONLY[name]
        if method != "GET":
            raise ValueError(f"--initiator {name}: {what} sends only GET, not {method}")
        if set_by_page:
            raise ValueError(f"--initiator {name}: {what} cannot set request headers ({', '.join(set_by_page)})")
    if name == "font" and credentials:
        raise ValueError(
            "--initiator font: fonts are always fetched without credentials (credentials mode same-origin): "
            "drop --credentials and the Cookie header"
        )
    if name == "beacon":
        if method != "POST":
            raise ValueError(f"--initiator beacon: navigator.sendBeacon() sends only POST, not {method}")
        others = [key for key in set_by_page if key.lower() != "content-type"]
        if others:
            raise ValueError(
                f"--initiator beacon: sendBeacon() can set only Content-Type (a Blob body's type), not "
                f"{', '.join(others)}"
            )
        if not any(key.lower() == "content-type" for key, _ in headers):
            headers = (*headers, _BEACON_BODY_TYPE)
        credentials = True  # a beacon always includes credentials
    return api, method, headers, credentials


def _user_agent() -> str:
    return f"corstrace/{__version__} (CORS check; https://pypi.org/project/corstrace/)"

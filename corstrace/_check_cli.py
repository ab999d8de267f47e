"""``corstrace check`` as a command: its arguments, the network under it, and what it prints.

The exchange itself (which legs the browser sends, and how each is judged) is :mod:`corstrace._check`,
shared with :mod:`corstrace.testing`; this module only puts it on the wire and presents it.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import socket
import ssl
import sys
from typing import Any, TextIO
from urllib.parse import urlsplit

from corstrace import __version__, _output
from corstrace._check import DEFAULT_TIMEOUT, Answer, CheckError, Send, client_sender, normalize_method, run_exchange
from corstrace.engine import Headers, serialize_origin

_TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Headers a page cannot set and `check` computes itself; accepting them from --header would fake the exchange.
_COMPUTED_HEADERS = frozenset({"origin", "access-control-request-method", "access-control-request-headers"})


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
    """An argparse type: ``Name: value``."""
    name, colon, value = text.partition(":")
    name = name.strip()
    if not colon or not name or name.strip(_TOKEN_CHARS):
        raise argparse.ArgumentTypeError(f"not a header (expected 'Name: value'): {text!r}")
    if name.lower() in _COMPUTED_HEADERS:
        raise argparse.ArgumentTypeError(
            f"{name} is computed by corstrace as the browser computes it; use --origin/--method instead"
        )
    value = value.strip(" \t")
    if any(char in value for char in "\r\n\0"):
        raise argparse.ArgumentTypeError(f"a header value cannot contain CR, LF or NUL: {text!r}")
    return name, value


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
        "--method", "-X", type=parse_method, default="GET", help="the fetch() method (default: %(default)s)"
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
        help="seconds to wait for each answer (default: %(default)g)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object (the log events' field names)")


# --- the network side ------------------------------------------------------------------------


def _network_reason(exc: BaseException) -> str:
    """A short human reason for a transport error, from the OS error underneath when there is one."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, socket.gaierror):
            return "the host name does not resolve"
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"TLS certificate rejected ({seen.verify_message})"
        if isinstance(seen, ssl.SSLError):
            return f"TLS error ({seen.reason or seen})"
        if isinstance(seen, OSError) and seen.errno is not None:
            if seen.errno == errno.ECONNREFUSED:
                return "connection refused"
            return (seen.strerror or str(seen)).lower()
        seen = seen.__cause__ or seen.__context__
    text = str(exc).lower()
    if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return "the host name does not resolve"
    if "connection refused" in text:
        return "connection refused"
    if "certificate" in text or "ssl" in text:
        return f"TLS error ({exc})"
    return str(exc) or type(exc).__name__


def network_sender(client: Any, timeout: float) -> Send:
    """``client_sender`` with httpx's transport errors turned into one-line :class:`CheckError` messages."""
    import httpx

    inner = client_sender(client, keep_jar=False)

    def send(method: str, url: str, headers: Headers, with_cookies: bool) -> Answer:
        parts = urlsplit(url)
        where = f"{parts.scheme}://{parts.netloc}"
        try:
            return inner(method, url, headers, with_cookies)
        except httpx.TimeoutException:
            raise CheckError(
                f"{where} did not answer {method} {url} within {timeout:g} s (raise it with --timeout)"
            ) from None
        except httpx.RequestError as exc:
            raise CheckError(f"cannot reach {where}: {_network_reason(exc)}") from None

    return send


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """``corstrace check``: 0 when the browser allows the request, 1 when it blocks it, 2 on errors."""
    import httpx

    out = stdout or sys.stdout
    err = stderr or sys.stderr
    headers: Headers = tuple(args.header)
    credentials = bool(args.credentials) or any(name.lower() == "cookie" for name, _ in headers)
    user_agent = () if any(n.lower() == "user-agent" for n, _ in headers) else (("User-Agent", _user_agent()),)
    try:
        with httpx.Client(timeout=args.timeout, follow_redirects=False, headers=dict(user_agent)) as client:
            exchange = run_exchange(
                network_sender(client, args.timeout),
                args.url,
                origin=args.origin,
                method=args.method,
                headers=headers,
                credentials=credentials,
            )
    except CheckError as exc:
        print(f"corstrace check: {exc}", file=err)
        return 2
    if args.json:
        print(_output.to_json(_output.exchange_fields(exchange)), file=out)
    else:
        print(_output.render_exchange(exchange, colour=_output.colour_for(out)), file=out)
    return 0 if exchange.allowed else 1


def _user_agent() -> str:
    return f"corstrace/{__version__} (CORS check; https://pypi.org/project/corstrace/)"

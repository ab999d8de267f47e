"""Fetch-standard primitives, the way Chromium implements them.

Total functions over attacker-controlled strings: none of them raises and none uses a regex, so
no input can make them backtrack. Header values are ``str`` holding one character per received
byte (ASGI bytes decoded as latin-1), so ``len(value)`` is the byte length the standard counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urljoin

# RFC 9110 tchar. `str.strip(chars)` with this set empties a string iff every character is a tchar:
# one pass in C, no per-character Python loop.
TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# HttpUtil::IsLWS: Chromium trims only space and tab from header values and list items.
LWS = " \t"
# Fetch "HTTP whitespace", used by the MIME type parser.
HTTP_WHITESPACE = " \t\n\r"

SAFELISTED_METHODS = frozenset({"GET", "HEAD", "POST"})
# net::HttpResponseHeaders::IsRedirect: only these codes are redirects (a 300 or 304 is just a status). A
# response is followed as a redirect only when it also carries a Location.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# Fetch "forbidden request-header" names plus `sec-`/`proxy-` prefixes (checked separately).
FORBIDDEN_REQUEST_HEADERS = frozenset(
    {
        "accept-charset",
        "accept-encoding",
        "access-control-request-headers",
        "access-control-request-method",
        "access-control-request-private-network",
        "connection",
        "content-length",
        "cookie",
        "cookie2",
        "date",
        "dnt",
        "expect",
        "host",
        "keep-alive",
        "origin",
        "referer",
        "set-cookie",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "via",
    }
)
# Headers the browser itself puts on the wire that a page cannot set (or that Chromium adds below
# the CORS layer). They never appear in Access-Control-Request-Headers, so they must not count
# when inferring what a page sent from what the server received.
BROWSER_ADDED_REQUEST_HEADERS = frozenset({"user-agent", "priority", "x-client-data"})
# X-HTTP-Method-Override and friends are forbidden only when they carry a forbidden method.
_METHOD_OVERRIDE_HEADERS = frozenset({"x-http-method", "x-http-method-override", "x-method-override"})
_FORBIDDEN_METHODS = frozenset({"CONNECT", "TRACE", "TRACK"})

# Chromium's IsCorsSafelistedHeader name set: the Fetch list plus client hints and Save-Data.
# Each has a value rule; Chromium 156 preflights e.g. `Save-Data: yes`, `ECT: 5g`, `RTT: abc` (checked in the browser).
_NUMERIC_CLIENT_HINTS = frozenset({"device-memory", "dpr", "width", "viewport-width", "downlink"})
_ECT_VALUES = frozenset({"slow-2g", "2g", "3g", "4g"})
_SAFELISTED_MIME_ESSENCES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})

# CORS-unsafe request-header bytes: C0 controls except HT, `"():<>?@[\]{}` and DEL.
_UNSAFE_BYTES = frozenset([chr(c) for c in range(0x20) if c != 0x09] + list('"():<>?@[\\]{}') + ["\x7f"])
# Accept-Language / Content-Language: 0-9 A-Z a-z, space, `*,-.;=`.
_LANGUAGE_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz *,-.;="
_DIGITS = "0123456789"
_VALUE_LIMIT = 128  # per safelisted header value, in bytes
_TOTAL_LIMIT = 1024  # summed safelisted values, in bytes
_INT64_MAX = 2**63 - 1

# The port a URL's origin omits, per scheme (the URL standard's special schemes with a port).
DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443", "ftp": "21"}
_SPECIAL_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp", "file"})
_SCHEME_START = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SCHEME_CHARS = _SCHEME_START + "0123456789+-."
# WHATWG "forbidden domain code point" (after the space/comma checks that come earlier).
_FORBIDDEN_HOST_CHARS = frozenset([chr(c) for c in range(0x21)] + list("#%/:<>?@[\\]^|") + ["\x7f"])
_URL_STRIP = "".join(chr(c) for c in range(0x21))  # GURL trims C0 controls and space at both ends
_TAB_NEWLINE_DELETE = str.maketrans("", "", "\t\n\r")


def is_redirect(status: int, location: str | None) -> bool:
    """True when a response with ``status`` and this ``Location`` is a redirect the browser follows."""
    return status in REDIRECT_STATUSES and bool(location)


# Request-body headers Fetch removes when a redirect turns the request into a GET ("HTTP-redirect fetch").
BODY_HEADERS = frozenset({"content-encoding", "content-language", "content-location", "content-type"})


def redirect_becomes_get(status: int, method: str) -> bool:
    """Whether following a ``status`` redirect turns ``method`` into GET (and drops the body and BODY_HEADERS):
    301/302 after a POST, 303 after anything but GET or HEAD."""
    return (status in (301, 302) and method == "POST") or (status == 303 and method not in ("GET", "HEAD"))


def default_port(scheme: str) -> int | None:
    """The port an origin with ``scheme`` omits, as a number (None for a scheme without one)."""
    port = DEFAULT_PORTS.get(scheme.lower())
    return int(port) if port is not None else None


def is_token(value: str) -> bool:
    """True when ``value`` is a non-empty RFC 9110 token."""
    return bool(value) and not value.strip(TOKEN_CHARS)


def split_list(value: str) -> list[str]:
    """Split a `#rule` list like HttpUtil::ValuesIterator: on commas, trimming LWS, skipping empty items."""
    items = []
    for raw in value.split(","):
        item = raw.strip(LWS)
        if item:
            items.append(item)
    return items


def has_unsafe_byte(value: str) -> bool:
    """True when ``value`` holds a CORS-unsafe request-header byte."""
    return not _UNSAFE_BYTES.isdisjoint(value)


def escape_hint(value: str) -> str:
    """Escape a hint the way Chromium 156 prints it: non-printable and non-ASCII characters as ``\\uXXXX``."""
    if value.isascii() and value.isprintable():
        return value
    return "".join(c if " " <= c < "\x7f" else f"\\u{ord(c):04X}" for c in value)


def mime_essence(value: str) -> str | None:
    """The lower-cased essence of a MIME type per Fetch "parse a MIME type", or None when it does not parse."""
    value = value.strip(HTTP_WHITESPACE)
    slash = value.find("/")
    if slash <= 0:
        return None
    type_ = value[:slash]
    rest = value[slash + 1 :]
    semicolon = rest.find(";")
    subtype = (rest if semicolon < 0 else rest[:semicolon]).rstrip(HTTP_WHITESPACE)
    if not is_token(type_) or not is_token(subtype):
        return None
    return f"{type_}/{subtype}".lower()


def _is_simple_range(value: str) -> bool:
    # Fetch "parse a single range header value" without whitespace, and the range must have a start.
    equals = value.find("=")
    if equals < 0 or value[:equals].lower() != "bytes":
        return False
    start, dash, end = value[equals + 1 :].partition("-")
    if not dash or not start or start.strip(_DIGITS) or end.strip(_DIGITS):
        return False
    # Chromium parses the numbers as int64; longer digit strings fail rather than overflow.
    if len(start) > 19 or len(end) > 19 or int(start) > _INT64_MAX or (end and int(end) > _INT64_MAX):
        return False
    return not end or int(start) <= int(end)


def _is_number(value: str) -> bool:
    whole, _, fraction = value.partition(".")
    return bool(whole or fraction) and not whole.strip(_DIGITS) and not fraction.strip(_DIGITS)


def is_cors_safelisted_request_header(name: str, value: str) -> bool:
    """Chromium's IsCorsSafelistedHeader: may a page send ``name: value`` without a preflight?"""
    if len(value) > _VALUE_LIMIT:
        return False
    name = name.lower()
    if name == "accept":
        return not has_unsafe_byte(value)
    if name in ("accept-language", "content-language"):
        return not value.strip(_LANGUAGE_CHARS)
    if name == "content-type":
        return not has_unsafe_byte(value) and mime_essence(value) in _SAFELISTED_MIME_ESSENCES
    if name == "range":
        return _is_simple_range(value)
    if name in _NUMERIC_CLIENT_HINTS:
        return _is_number(value)
    if name == "rtt":
        return bool(value) and not value.strip(_DIGITS)
    if name == "ect":
        return value.lower() in _ECT_VALUES
    if name == "save-data":
        return value.lower() == "on"
    return False


def is_page_settable(name: str, value: str) -> bool:
    """False for forbidden request headers and the ones the browser adds itself (they never need a preflight)."""
    if name in FORBIDDEN_REQUEST_HEADERS or name in BROWSER_ADDED_REQUEST_HEADERS:
        return False
    if name.startswith(("sec-", "proxy-")):
        return False
    if name in _METHOD_OVERRIDE_HEADERS:
        return not any(item.strip(LWS).upper() in _FORBIDDEN_METHODS for item in value.split(","))
    return True


def cors_unsafe_request_header_names(headers: Iterable[tuple[str, str]]) -> list[str]:
    """What Chromium would send in Access-Control-Request-Headers for a page that set ``headers``.

    Sorted, lower-cased and de-duplicated. Forbidden headers and the ones the browser adds itself
    (``host``, ``connection``, ``content-length``, ``cookie``, ``origin``, ``referer``,
    ``accept-encoding``, ``user-agent``, ``priority``, every ``sec-*`` such as ``sec-fetch-*`` and
    ``sec-ch-ua*``, every ``proxy-*``) are left out: a page cannot set them, so they never need a
    preflight. When the safelisted values add up to more than 1024 bytes they all count as unsafe.
    """
    unsafe: set[str] = set()
    safelisted: set[str] = set()
    total = 0
    for raw_name, value in headers:
        name = raw_name.lower()
        if not is_page_settable(name, value):
            continue
        if is_cors_safelisted_request_header(name, value):
            safelisted.add(name)
            total += len(value)
        else:
            unsafe.add(name)
    if total > _TOTAL_LIMIT:
        unsafe |= safelisted
    return sorted(unsafe)


def needs_preflight(method: str, headers: Iterable[tuple[str, str]]) -> bool:
    """Would a page's ``fetch(url, {method, headers})`` to another origin be preflighted?"""
    return method not in SAFELISTED_METHODS or bool(cors_unsafe_request_header_names(headers))


def serialize_origin(url: str) -> str:
    """The ASCII serialization of ``url``'s origin (``scheme://host[:port]``), ``null`` for opaque origins."""
    url = url.strip(_URL_STRIP).translate(_TAB_NEWLINE_DELETE)
    colon = url.find(":")
    if colon <= 0:
        return "null"
    scheme = url[:colon].lower()
    if scheme not in DEFAULT_PORTS:
        return "null"  # file:, data:, about:, blob: without inner URL… all opaque
    authority = _authority(url[colon + 1 :])
    host, port = _split_host_port(authority.rpartition("@")[2])
    if not host or host.strip(_SCHEME_CHARS + "[]:_~!$&'()*,;=%") or (port and port.strip(_DIGITS)):
        return "null"
    host = host.lower()
    port = port.lstrip("0") or ("0" if port else "")
    if port and port != DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}:{port}"
    return f"{scheme}://{host}"


def _authority(after_scheme: str) -> str:
    rest = after_scheme.lstrip("/\\")
    end = len(rest)
    for stop in "/\\?#":
        index = rest.find(stop)
        if 0 <= index < end:
            end = index
    return rest[:end]


def _split_host_port(hostport: str) -> tuple[str, str]:
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            return "", ""
        host, tail = hostport[: close + 1], hostport[close + 1 :]
        return host, tail[1:] if tail.startswith(":") else ("" if not tail else "x")
    host, _, port = hostport.partition(":")
    return host, port


def is_valid_url(value: str) -> bool:
    """Approximates ``GURL(value).is_valid()`` for an Access-Control-Allow-Origin value."""
    value = value.strip(_URL_STRIP).translate(_TAB_NEWLINE_DELETE)
    colon = value.find(":")
    if colon <= 0 or value[0] not in _SCHEME_START or value[:colon].strip(_SCHEME_CHARS):
        return False
    scheme = value[:colon].lower()
    if scheme not in _SPECIAL_SCHEMES:
        return True  # "foo:bar" is a valid non-special URL
    if scheme == "file":
        return True
    host, port = _split_host_port(_authority(value[colon + 1 :]).rpartition("@")[2])
    if not host:
        return False
    if port and (port.strip(_DIGITS) or len(port) > 5 or int(port) > 65535):
        return False
    if host.startswith("["):
        return host.endswith("]") and not host[1:-1].strip("0123456789abcdefABCDEF:.")
    if "%" in host:
        decoded = _percent_decode(host)
        if decoded is None:
            return False
        host = decoded
    if not _FORBIDDEN_HOST_CHARS.isdisjoint(host):
        return False
    if not host.isascii():
        # GURL reads the bytes as UTF-8 and applies IDNA; anything that fails either step is invalid.
        try:
            host = host.encode("latin-1").decode("utf-8").encode("idna").decode("ascii")
        except (UnicodeError, ValueError):
            return False
    return _valid_if_ipv4(host)


def _percent_decode(host: str) -> str | None:
    """%XX-decode a host (bytes read as Latin-1); None when an escape is malformed, which GURL rejects."""
    parts = host.split("%")
    out = [parts[0]]
    for part in parts[1:]:
        escape = part[:2]
        if len(escape) < 2 or escape.strip("0123456789abcdefABCDEF"):
            return None
        out.append(chr(int(escape, 16)) + part[2:])
    return "".join(out)


def _ipv4_number(part: str) -> int | None:
    if part[:2] in ("0x", "0X"):
        digits, base = part[2:], 16
        if digits.strip("0123456789abcdefABCDEF"):
            return None
    elif len(part) > 1 and part.startswith("0"):
        digits, base = part[1:], 8
        if digits.strip("01234567"):
            return None
    else:
        digits, base = part, 10
        if not digits or digits.strip(_DIGITS):
            return None
    return int(digits, base) if digits else 0


def _valid_if_ipv4(host: str) -> bool:
    """WHATWG "ends in a number": such a host must be a valid IPv4 address (GURL agrees: 1.2.3.4.5 is invalid)."""
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    last = labels[-1]
    if not (last and not last.strip(_DIGITS)) and not (last[:2] in ("0x", "0X") and _ipv4_number(last) is not None):
        return True  # a domain name
    if len(labels) > 4 or len(host) > 64:
        return False
    numbers = [_ipv4_number(label) for label in labels]
    if any(number is None for number in numbers):
        return False
    values = [number for number in numbers if number is not None]
    if any(value > 255 for value in values[:-1]):
        return False
    return values[-1] < 1 << (8 * (5 - len(values)))


def location_has_credentials(location: str) -> bool:
    """True when a redirect ``Location`` (absolute or scheme-relative) carries a username or password."""
    location = location.strip(_URL_STRIP).translate(_TAB_NEWLINE_DELETE)
    if location.startswith(("//", "\\\\")):
        after = location
    else:
        colon = location.find(":")
        if colon <= 0 or location[:colon].strip(_SCHEME_CHARS) or location[0] not in _SCHEME_START:
            return False  # a path-relative Location inherits the (credential-free) request URL's authority
        after = location[colon + 1 :]
        if location[:colon].lower() not in _SPECIAL_SCHEMES and not after.startswith("//"):
            return False
    userinfo, at, _ = _authority(after).rpartition("@")
    return bool(at) and userinfo not in ("", ":")


def parse_max_age(value: str | None) -> int:
    """Chromium's preflight cache lifetime in seconds for an Access-Control-Max-Age value."""
    if value is None:
        return 5
    digits = value[1:] if value[:1] in "+-" and value[:1] else value
    if not digits or digits.strip(_DIGITS) or len(digits) > 19 or int(digits) > _INT64_MAX:
        return 5  # base::StringToInt64 fails: unparsable and overflowing values both fall back to 5 s
    seconds = -int(digits) if value.startswith("-") else int(digits)
    return max(0, min(seconds, 7200))


def max_age_seconds(value: str | None) -> int | None:
    """The delta-seconds an Access-Control-Max-Age value asks for, or None when it is absent or not a number."""
    if value is None or not value or value.strip(_DIGITS):
        return None
    return int(value) if len(value) <= 30 else 10**30


def resolve_location(base: str, location: str) -> str:
    """``location`` resolved against ``base`` the way the browser does it (path-relative Locations are common)."""
    try:
        return urljoin(base, location.strip())
    except ValueError:
        return location

"""Who may see the inspector: loopback clients, loopback Host names, no proxy in between, the token.

The inspector shows real users' request headers, and it is a CORS tool, so it must not fall to the
attacks it explains (see webpack-dev-server CVE-2018-14732, Vite CVE-2025-24010, mitmweb
CVE-2018-14505): the client address stops remote users, the ``Host`` allow-list stops DNS
rebinding, the proxy markers and HTTP/1.0 stop a local reverse proxy from relaying remote traffic,
the token stops other local programs and pages, and the ``Origin`` check stops cross-site WebSocket
hijacking.

The token never travels in a URL the server sees or in a cookie (cookies ignore the port, so any other
local server would receive it): the page gets it in the URL *fragment*, keeps it in ``sessionStorage``
(per origin: scheme, host and port) and presents it in the WebSocket handshake as a subprotocol,
``corstrace.auth.<hex of its UTF-8>``, next to ``corstrace.v1``, the one the server selects.

Every check is a plain function of the ASGI scope, so another listener (a collector for several
workers) can apply the same rules.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Mapping

from starlette.types import Scope

# Headers only a proxy, load balancer or CDN adds; a browser talking to loopback sends none of them.
PROXY_HEADERS = (
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
    "via",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-server",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "cf-connecting-ip",
    "true-client-ip",
    "x-client-ip",
    "x-original-forwarded-for",
    "x-cluster-client-ip",
    "fastly-client-ip",
)

# The subprotocol the page asks for and the server selects, and the prefix of the one carrying the token.
PROTOCOL = "corstrace.v1"
AUTH_PROTOCOL_PREFIX = "corstrace.auth."
_MAX_PROTOCOLS = 16

# Added to every inspector response, refusals included. No Access-Control-* header, ever.
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("cross-origin-resource-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
)


def headers_of(scope: Scope) -> dict[str, str]:
    """The request headers as a dict of lower-case names; a repeated header keeps its first value."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        headers.setdefault(raw_name.decode("latin-1").lower(), raw_value.decode("latin-1"))
    return headers


def header_count(scope: Scope, name: bytes) -> int:
    """How many times the header ``name`` (lower-case) occurs in the request."""
    return sum(1 for raw_name, _ in scope.get("headers", ()) if raw_name.lower() == name)


def is_loopback_address(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback; False for names and anything else."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def host_name(host_header: str) -> str | None:
    """The name part of a ``Host`` header (brackets kept off IPv6), or None when it is malformed."""
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return None
        name, rest = host[1:end], host[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:]
    else:
        name, _, port = host.partition(":")
    if port and not port.isdigit():
        return None
    return name or None


def is_loopback_host(host_header: str) -> bool:
    """True when ``Host`` names this machine: ``localhost``, ``*.localhost``, ``127.x.x.x`` or ``[::1]``, any port."""
    name = host_name(host_header)
    if name is None:
        return False
    if name == "localhost" or name.endswith(".localhost"):
        return True
    # Only literal addresses: a DNS name resolving to 127.0.0.1 is exactly what DNS rebinding uses.
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback


def proxy_marker(headers: Mapping[str, str]) -> str | None:
    """The first header in ``headers`` that only a proxy adds, or None."""
    for name in PROXY_HEADERS:
        if name in headers:
            return name
    return None


def refusal(scope: Scope, headers: Mapping[str, str]) -> str | None:
    """Why this request may not see the inspector, or None when it may (the token is checked separately).

    A proxy that adds no header, speaks HTTP/1.1 and connects from loopback cannot be told from a browser:
    then only the token protects the inspector (the README says to turn it off behind any proxy).
    """
    client = scope.get("client")
    if not client or not is_loopback_address(str(client[0])):
        return "The corstrace inspector is only served to loopback clients."
    marker = proxy_marker(headers)
    if marker is not None:
        return f"The corstrace inspector is not served through a proxy (the request carries `{marker}`)."
    if scope["type"] == "http" and scope.get("http_version") in ("1.0", "0.9"):
        # Browsers always speak HTTP/1.1 or newer; nginx's default proxy_pass speaks HTTP/1.0 upstream.
        return (
            "The corstrace inspector is not served over HTTP/1.0: browsers use HTTP/1.1 or newer, "
            "and HTTP/1.0 is what a reverse proxy (nginx's default proxy_pass) sends."
        )
    if header_count(scope, b"host") > 1:
        return "The corstrace inspector refuses a request with more than one Host header."
    host = headers.get("host")
    if host is None or not is_loopback_host(host):
        return "The corstrace inspector is only served under a loopback Host (localhost, 127.0.0.1, [::1])."
    return None


def is_own_origin(origin: str | None, host_header: str | None, scheme: str) -> bool:
    """True when a WebSocket handshake's ``Origin`` is the inspector's own page origin (blocks CSWSH)."""
    if origin is None or host_header is None:
        return False
    http_scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    return origin.strip().lower() == f"{http_scheme}://{host_header.strip().lower()}"


def offered_protocols(scope: Scope) -> list[str]:
    """The subprotocols a WebSocket handshake offers (bounded): the scope's ``subprotocols`` and every
    ``Sec-WebSocket-Protocol`` header (some servers, uvicorn's wsproto one, list only the former)."""
    offered: list[str] = [str(protocol) for protocol in scope.get("subprotocols") or ()]
    for raw_name, raw_value in scope.get("headers", ()):
        if raw_name.lower() == b"sec-websocket-protocol":
            offered.extend(part.strip() for part in raw_value.decode("latin-1").split(",") if part.strip())
    return offered[:_MAX_PROTOCOLS]


def auth_protocol(token: str) -> str:
    """The subprotocol that presents ``token`` (what the page computes in JavaScript)."""
    return AUTH_PROTOCOL_PREFIX + token.encode().hex()


def presents_token(protocols: list[str], token: str) -> bool:
    """True when one of the offered ``protocols`` carries ``token`` (constant-time comparison)."""
    expected = token.encode()
    found = False
    for protocol in protocols:
        if not protocol.startswith(AUTH_PROTOCOL_PREFIX):
            continue
        try:
            candidate = bytes.fromhex(protocol[len(AUTH_PROTOCOL_PREFIX) :])
        except ValueError:
            continue
        found |= secrets.compare_digest(candidate, expected)
    return found

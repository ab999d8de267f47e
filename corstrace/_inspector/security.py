"""Who may see the inspector: loopback clients, loopback Host names, no proxy in between.

The inspector shows real users' request headers, and it is a CORS tool, so it must not fall to the
attacks it explains (see webpack-dev-server CVE-2018-14732, Vite CVE-2025-24010, mitmweb
CVE-2018-14505): the client address stops remote users, the ``Host`` allow-list stops DNS
rebinding, the proxy headers stop a local reverse proxy from relaying remote traffic, the token
stops other local pages, and the ``Origin`` check stops cross-site WebSocket hijacking.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from starlette.types import Scope

PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")

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


def refusal(scope: Scope, headers: Mapping[str, str]) -> str | None:
    """Why this request may not see the inspector, or None when it may (the token is checked separately)."""
    client = scope.get("client")
    if not client or not is_loopback_address(str(client[0])):
        return "The corstrace inspector is only served to loopback clients."
    for name in PROXY_HEADERS:
        if name in headers:
            return f"The corstrace inspector is not served through a proxy (the request carries `{name}`)."
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

"""Secrets never leave corstrace: header values and URL query values are redacted at capture time."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[redacted]"
_MAX_PLAIN_NAMES = 1024

# Header names whose values are secrets in practice; the value is replaced, the name (and so the
# fact that a credentialed request happened) is kept, because CORS debugging needs it.
DEFAULT_SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "x-auth-token",
        "x-csrf-token",
        "x-xsrf-token",
        "x-amz-security-token",
    }
)
_SENSITIVE_PARTS = ("token", "secret", "password", "passwd", "api-key", "apikey", "session")
_SENSITIVE_QUERY = ("token", "secret", "password", "passwd", "key", "signature", "sig", "auth", "code", "session")


class Redactor:
    """Replaces secret values; the configured extra names are matched case-insensitively."""

    __slots__ = ("_names", "_plain")

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self._names = DEFAULT_SENSITIVE_HEADERS | {name.strip().lower() for name in extra}
        # Names seen and found not sensitive (most of them): the substring scan runs once per name.
        self._plain: set[str] = set()

    def is_sensitive(self, name: str) -> bool:
        lowered = name.lower()
        return lowered in self._names or any(part in lowered for part in _SENSITIVE_PARTS)

    def value(self, name: str, value: str) -> str:
        if not self.is_sensitive(name):
            return value
        if name.lower() in ("authorization", "proxy-authorization"):
            # The scheme ("Bearer", "Basic") is useful and not secret.
            scheme, _, rest = value.strip().partition(" ")
            return f"{scheme} {REDACTED}" if rest and scheme.isalpha() and len(scheme) <= 20 else REDACTED
        return REDACTED

    def headers(self, pairs: Iterable[tuple[str, str]]) -> list[list[str]]:
        plain = self._plain
        out: list[list[str]] = []
        for name, value in pairs:
            if name in plain:
                out.append([name, value])
                continue
            out.append([name, self.value(name, value)])
            # Bounded: a client sending random header names must not grow it without limit.
            if len(plain) < _MAX_PLAIN_NAMES and not self.is_sensitive(name):
                plain.add(name)
        return out


def redact_url(url: str) -> str:
    """``url`` with the values of secret-looking query parameters replaced."""
    if "?" not in url:
        return url
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return url.split("?", 1)[0] + "?" + REDACTED
    if not any(_secret_param(key) for key, _ in query):
        return url
    cleaned = [(key, REDACTED if _secret_param(key) else value) for key, value in query]
    return urlunsplit(parts._replace(query=urlencode(cleaned, safe="[]")))


def _secret_param(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in _SENSITIVE_QUERY)

"""Secrets never leave corstrace: header values, URL parts and app-derived text are redacted at capture time.

The rule, per header (the name is always kept, and so the fact that a credentialed request happened):

0. The configured extra names (``redact_headers=``): the whole value, always, whatever the name.
1. Values CORS debugging needs are kept exactly, whatever they look like: ``Origin``, ``Host``, ``Vary``,
   ``Content-Type``, ``Access-Control-*``, ``Sec-Fetch-*``, and a list of standard headers known to carry no
   secret (``Accept``, ``User-Agent``, ``Cache-Control``, ``WWW-Authenticate``, ``traceparent`` …).
2. URL-valued headers (``Referer``, ``Location``, ``Content-Location``, ``Link``, ``Refresh`` …) keep their
   URLs, redacted with :func:`redact_url`. ``Origin`` is not one of them: an origin holds no secret.
3. Known secret carriers are redacted by name: ``Authorization`` (the ``Bearer``/``Basic`` scheme is kept),
   ``Cookie``, ``Set-Cookie`` (the cookie's name and attributes are kept: ``SameSite``/``Secure`` decide
   credentialed CORS), ``Sec-WebSocket-Protocol`` bearer tokens, a list of names (``X-API-Key``, ``DPoP`` …)
   and name families (a ``key``, ``auth…``, ``token``, ``secret``, ``signature``, ``credential``, ``csrf`` …
   word in the name; ``author``/``authority`` are not).
4. Any other header keeps its value unless the value is secret-shaped (a JWT, a long random-looking string, a
   known token prefix, ``Bearer …``); URLs inside it are redacted. ``Redactor(strict=True)`` redacts every
   value of this group instead (the inverted rule).

URLs (:func:`redact_url`): scheme, host and port are never changed; userinfo becomes ``redacted@``; the values
of secret-named query, fragment and matrix (``;token=``) parameters, secret-shaped values under any name,
and token-like path segments (JWTs, long random-looking segments, the segment after ``/reset/``,
``/token/`` …) become ``[redacted]``; nested URLs in parameter values are redacted too. Everything else is
kept byte for byte (UUIDs, numbers, slugs and asset hashes are ids, not capabilities), it never raises on a
malformed URL, and ``redact_url(redact_url(u)) == redact_url(u)`` (two layers may redact the same URL).

Public helpers:

- ``Redactor(extra=(), *, strict=False)``: ``.headers(pairs, *, max_headers=None, value_limit=None)`` returns
  redacted ``[name, value]`` lists (optionally capped and truncated, see :mod:`corstrace._limits`);
  ``.value(name, value)`` one value; ``.is_sensitive(name)`` whether a name's value is always redacted;
  ``.secrets(headers, url=None)`` the secret values the request carries, for :func:`scrub`.
- :func:`redact_url` (one URL), :func:`redact_text` (URLs, JWTs, ``Bearer x``, ``password=x`` and long
  random-looking strings inside free text), :func:`looks_secret` (is this value secret-shaped),
  :func:`scrub` (a request's own secrets and secret shapes out of app-derived text: exception messages,
  tracebacks, explanations).

Order when text is also bounded and shown: redact/scrub first, then truncate (a cut secret is no longer
recognisable), then escape control characters (:mod:`corstrace._escape`) where it reaches a terminal.
"""

from __future__ import annotations

import base64
import binascii
import re
import sys
from collections.abc import Iterable, Sequence
from urllib.parse import quote, unquote, unquote_plus

from corstrace._limits import truncation_marker

__all__ = [
    "DEFAULT_SENSITIVE_HEADERS",
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "Redactor",
    "looks_secret",
    "redact_text",
    "redact_url",
    "scrub",
]

REDACTED = "[redacted]"
# What userinfo becomes: still a valid URL (``[`` is not allowed there, urlsplit() would raise), and it
# shows that the URL carried credentials, which is itself a CORS failure for a redirect.
_REDACTED_USERINFO = "redacted"
# Shorter values are not scrubbed out of text: replacing "1" or "en" everywhere would destroy the text and
# protect nothing.
MIN_SECRET_LENGTH = 6
_MAX_SECRETS = 64
_MAX_MEMO = 1024
_MAX_MEMO_KEY = 128
_MAX_MEMO_URLS = 256
_MAX_MEMO_URL = 1024
# How deep nested URLs (a redirect_uri holding a URL holding a URL) are followed.
_MAX_DEPTH = 3

# Header names whose values are secrets in practice; the value is replaced, the name is kept.
DEFAULT_SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "authentication",
        "authentication-info",
        "proxy-authentication-info",
        "cookie",
        "cookie2",
        "set-cookie",
        "set-cookie2",
        "x-api-key",
        "api-key",
        "apikey",
        "x-auth",
        "x-auth-key",
        "x-auth-token",
        "x-access-key",
        "x-access-token",
        "x-csrf",
        "x-csrf-token",
        "x-csrftoken",
        "x-xsrf",
        "x-xsrf-token",
        "csrf-token",
        "x-amz-security-token",
        "ocp-apim-subscription-key",
        "dpop",
        "x-goog-api-key",
        "x-functions-key",
        "private-token",
        "x-vault-token",
    }
)

# Values kept exactly: CORS needs them (the verdict, the inspector, the fix), or they are standard headers
# that carry no secret and that debugging an exchange needs.
_CORS_CRITICAL = frozenset({"origin", "host", ":authority", "vary", "content-type"})
_CORS_CRITICAL_PREFIXES = ("access-control-", "sec-fetch-")
_HARMLESS = _CORS_CRITICAL | frozenset(
    {
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ch",
        "accept-patch",
        "accept-post",
        "accept-ranges",
        "age",
        "allow",
        "alt-svc",
        "cache-control",
        "clear-site-data",
        "connection",
        "content-disposition",
        "content-encoding",
        "content-language",
        "content-length",
        "content-range",
        "content-security-policy",
        "content-security-policy-report-only",
        "date",
        "device-memory",
        "downlink",
        "dnt",
        "dpr",
        "early-data",
        "ect",
        "etag",
        "expect",
        "expires",
        "forwarded",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "keep-alive",
        "last-modified",
        "max-forwards",
        "nel",
        "origin-agent-cluster",
        "permissions-policy",
        "pragma",
        "priority",
        "proxy-authenticate",
        "purpose",
        "range",
        "referrer-policy",
        "request-id",
        "retry-after",
        "rtt",
        "save-data",
        "sec-gpc",
        "sec-purpose",
        # A handshake nonce and its hash: public by design, not credentials.
        "sec-websocket-key",
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "sec-websocket-version",
        "sentry-trace",
        "server",
        "server-timing",
        "service-worker-allowed",
        "strict-transport-security",
        "te",
        "timing-allow-origin",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "upgrade-insecure-requests",
        "user-agent",
        "via",
        "viewport-width",
        "width",
        # The challenge says which scheme and realm a 401 wants: debugging an authenticated preflight needs it.
        "www-authenticate",
        "x-amzn-trace-id",
        "x-cloud-trace-context",
        "x-content-type-options",
        "x-correlation-id",
        "x-dns-prefetch-control",
        "x-frame-options",
        "x-permitted-cross-domain-policies",
        "x-powered-by",
        "x-real-ip",
        "x-request-id",
        "x-requested-with",
        "x-xss-protection",
    }
)
_HARMLESS_PREFIXES = (*_CORS_CRITICAL_PREFIXES, "sec-ch-", "cross-origin-", "x-forwarded-", "x-ratelimit-", "ratelimit")

# Words that make a header or parameter name secret (the name is split on ``-``, ``_``, ``.`` and camelCase).
_SECRET_WORDS = frozenset(
    {
        "apikey",
        "assertion",
        "auth",
        "bearer",
        "code",
        "cookie",
        "credential",
        "credentials",
        "csrf",
        "dpop",
        "hmac",
        "jwt",
        "key",
        "otp",
        "pass",
        "passcode",
        "passphrase",
        "passwd",
        "password",
        "pin",
        "private",
        "pwd",
        "saml",
        "secret",
        "session",
        "sid",
        "sig",
        "signature",
        "ticket",
        "token",
        "xsrf",
    }
)
# Parts that make a word secret wherever they sit in it ("accesstoken", "jsessionid", "phpsessid").
_SECRET_PARTS = (
    "token",
    "secret",
    "passw",
    "apikey",
    "session",
    "sessid",
    "signature",
    "credential",
    "csrf",
    "xsrf",
    "jwt",
    "auth",
)
# Words that hold a secret part but no secret.
_NOT_SECRET_WORDS = frozenset({"author", "authors", "authority", "monkey", "turkey", "hockey", "jockey", "whiskey"})
# Standard OAuth/OIDC parameters that name a secret but hold none: kept, they explain the flow.
_PLAIN_PARAMS = frozenset(
    {"token_type", "token_type_hint", "response_type", "grant_type", "code_challenge_method", "expires_in", "scope"}
)
# A header named "x-country-code" or "x-pin-…" is not a credential; in a URL, ?code= (OAuth) and ?pin= are.
_QUERY_ONLY_WORDS = frozenset({"code", "pin"})

_KNOWN_SCHEMES = frozenset(
    {
        "basic",
        "bearer",
        "digest",
        "dpop",
        "hoba",
        "mutual",
        "negotiate",
        "ntlm",
        "oauth",
        "token",
        "apikey",
        "key",
        "sharedkey",
        "ssws",
        "hawk",
        "mac",
        "aws4-hmac-sha256",
        "googlelogin",
    }
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,29}\Z")

# Set-Cookie attributes whose values are kept (they decide whether a credentialed cross-origin request
# carries the cookie); an unknown attribute's value is redacted.
_COOKIE_ATTRIBUTES = frozenset(
    {"path", "domain", "expires", "max-age", "samesite", "secure", "httponly", "partitioned", "priority", "version"}
)

# Sec-WebSocket-Protocol items that announce a token in the next item ("access_token, eyJ…") or after a
# separator in the same item ("base64url.bearer.authorization.k8s.io.<token>").
_WS_MARKERS = frozenset({"access_token", "access-token", "token", "bearer", "authorization", "auth", "jwt"})
_WS_INLINE = re.compile(r"(?i)^(.*?(?:bearer|token|jwt|auth[a-z]*|secret)[._:\s=-])(.+)$")

# Path segments after which the next one is a capability ("/reset/<token>", "/invite/<token>").
_MARKER_SEGMENTS = frozenset(
    {
        "access",
        "activate",
        "activation",
        "apikey",
        "api-key",
        "auth",
        "confirm",
        "confirmation",
        "invitation",
        "invitations",
        "invite",
        "invites",
        "key",
        "keys",
        "login",
        "magic",
        "oauth",
        "otp",
        "password",
        "recover",
        "recovery",
        "reset",
        "secret",
        "secrets",
        "session",
        "sessions",
        "share",
        "shared",
        "ticket",
        "token",
        "tokens",
        "unsubscribe",
        "verify",
        "verification",
    }
)

# As sent, without a lower() per segment on the fast path.
_MARKER_SEGMENTS_ANY_CASE = frozenset(
    variant for word in _MARKER_SEGMENTS for variant in (word, word.capitalize(), word.upper())
)

_KEEP, _URL, _LINK, _REFRESH, _AUTH, _COOKIE, _SET_COOKIE, _WS_PROTOCOL, _SECRET, _OTHER = range(10)
_SENSITIVE_KINDS = (_AUTH, _COOKIE, _SET_COOKIE, _SECRET)
_SPECIAL_KINDS = {
    "authorization": _AUTH,
    "proxy-authorization": _AUTH,
    "cookie": _COOKIE,
    "cookie2": _COOKIE,
    "set-cookie": _SET_COOKIE,
    "set-cookie2": _SET_COOKIE,
    "sec-websocket-protocol": _WS_PROTOCOL,
    "referer": _URL,
    "location": _URL,
    "content-location": _URL,
    "x-original-url": _URL,
    "x-rewrite-url": _URL,
    "x-forwarded-uri": _URL,
    "x-original-uri": _URL,
    "sourcemap": _URL,
    "x-sourcemap": _URL,
    "link": _LINK,
    "refresh": _REFRESH,
}

# Secret shapes. A JWT/JWE starts with the base64url of '{"'; long random-looking runs of token characters;
# well-known token prefixes that are short or regular enough to slip past the randomness test.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*)*")
_RUN = re.compile(r"[A-Za-z0-9_+/=~-]{16,}")
_PREFIXED = re.compile(
    r"(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}|glpat-[\w-]{20,}|xox[abeprs]-[\w-]{10,}"
    r"|[sr]k_(?:live|test)_\w{10,}|sk-[\w-]{20,}|AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}|AIza[\w-]{30,})"
)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_HEX = frozenset("0123456789abcdefABCDEF")
_SEPARATORS = re.compile(r"[-_~.]")
_PLAIN_PIECE = re.compile(r"(?:[A-Z]?[a-z]*|[A-Z]*|[0-9]*)\Z")
# The 50 most frequent letter pairs of English text.
_COMMON_BIGRAMS = frozenset(
    "th he in er an re on at en nd ti es or te of ed is it al ar st to nt ng se ha as ou io le ve co me de hi ri ro "
    "ic ne ea ra ce li ch ll be ma si om ur".split()
)
_DIGITS = frozenset("0123456789")
_HEADER_WORDS = re.compile(r"[-_.\s]+")
_WORD_SPLIT = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")

_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s<>\"'`]+")
_PREFIX_HINTS = ("gh", "github_pat_", "glpat-", "xox", "k_live_", "k_test_", "sk-", "AKIA", "ASIA", "AIza")
_SCHEME_HINTS = tuple(sorted(_KNOWN_SCHEMES - {"key", "mac"}))
_NAME_HINTS = (
    "pass",
    "pwd",
    "token",
    "secret",
    "key",
    "auth",
    "sig",
    "session",
    "sid",
    "cookie",
    "csrf",
    "xsrf",
    "jwt",
    "otp",
    "ticket",
    "credential",
    "bearer",
    "saml",
    "hmac",
    "pin",
    "private",
    "dpop",
    "assertion",
    "sessid",
)
# A token cut after fewer characters than this may not be recognised by its shape any more.
_MAX_STRADDLE = 32
_TOKEN_CHAR = re.compile(r"[A-Za-z0-9_+~-]")
_TRAILING_RUN = re.compile(r"[A-Za-z0-9_+~-]+\Z")
_LINK_TARGET = re.compile(r"<([^>]*)>")
_REFRESH_URL = re.compile(r"(?i)(url\s*=\s*['\"]?)([^'\"]*)")
_SCHEME_IN_TEXT = re.compile(
    r"(?i)\b(" + "|".join(sorted(_KNOWN_SCHEMES - {"key", "mac", "token"})) + r"|token)(\s+)([A-Za-z0-9._~+/=:-]{6,})"
)
# ``password=x``, ``token = 'x'`` and JSON's ``"api_key": "x"`` (a bare ``Key: x`` is too often prose).
_PAIR_IN_TEXT = re.compile(
    r"(?:\b([A-Za-z][A-Za-z0-9_.-]{1,40})(\s*=\s*)|\"([A-Za-z][A-Za-z0-9_.-]{1,40})(\"\s*:\s*))"
    r"(['\"]?)(\[redacted\]|[^\s'\"&,;)}\]]{4,})"
)

_Found = list[str] | None


class Redactor:
    """Replaces secret values; the configured extra names are matched case-insensitively.

    Args:
        extra: More header names whose values are always redacted, whole, whatever the name (even one CORS
            needs: verdicts are decided from the raw headers, only what is shown loses the value).
        strict: Redact the value of every header that is neither known harmless, URL-valued nor handled by
            name (the inverted rule), instead of only the secret-shaped ones.
    """

    __slots__ = ("_extra", "_kinds", "_plain", "_strict", "_urls")

    def __init__(self, extra: Iterable[str] = (), *, strict: bool = False) -> None:
        # Any name, even Vary or Origin: the user asked, and verdicts and causes are decided from the raw
        # headers, never from these redacted copies (tests/test_pipeline.py holds the pipeline to that).
        self._extra = frozenset(name.strip().lower() for name in extra)
        self._strict = strict
        # Kind by name as sent (no lower() on the fast path); bounded, so random names cannot grow it.
        self._kinds: dict[str, int] = {}
        # The names of _kinds whose values are kept as they are: the fast path's one lookup.
        self._plain: set[str] = set()
        # Redacted URL-valued headers by value: a page's Referer repeats on every request it makes. Bounded
        # in entries and in the size of each (~256 KB at most).
        self._urls: dict[str, str] = {}

    def is_sensitive(self, name: str) -> bool:
        """Whether ``name``'s value is redacted whatever it holds."""
        return self._kind(name) in _SENSITIVE_KINDS

    def value(self, name: str, value: str) -> str:
        """``value`` as it may be shown for a header called ``name``."""
        return self._value(self._kind(name), value, None)

    def headers(
        self,
        pairs: Iterable[tuple[str, str]],
        *,
        max_headers: int | None = None,
        value_limit: int | None = None,
    ) -> list[list[str]]:
        """The pairs as ``[name, value]`` lists, values redacted.

        With ``max_headers``, the pairs past that many are dropped and one ``["…", "[truncated N more
        headers]"]`` pair says so. With ``value_limit``, a longer name or value is cut to that many characters
        before it is redacted (so a huge value costs no more than a small one) and carries a visible
        ``…[truncated N bytes]`` marker.
        """
        if max_headers is None and value_limit is None:
            return self._redacted(pairs)
        items = pairs if isinstance(pairs, (list, tuple)) else list(pairs)
        extra = 0
        if max_headers is not None and len(items) > max_headers:
            extra = len(items) - max_headers
            items = items[:max_headers]
        limit = value_limit if value_limit is not None else sys.maxsize
        # Names in _plain are at most _MAX_MEMO_KEY long: under a limit at least that long, their length
        # needs no check.
        plain = self._plain if limit >= _MAX_MEMO_KEY else set()
        out: list[list[str]] = []
        for name, value in items:
            if len(value) > limit:
                out.append(self._cut(name, value, limit))
            elif name in plain:
                out.append([name, value])
            elif len(name) > limit:
                out.append(self._cut(name, value, limit))
            else:
                out.append([name, self._value(self._kind(name), value, None)])
        if extra:
            out.append(["…", f"[truncated {extra} more headers]"])
        return out

    def _redacted(self, pairs: Iterable[tuple[str, str]]) -> list[list[str]]:
        """The path every event takes: most names are known harmless, one set lookup each."""
        plain = self._plain
        out: list[list[str]] = []
        for name, value in pairs:
            if name in plain:
                out.append([name, value])
            else:
                out.append([name, self._value(self._kind(name), value, None)])
        return out

    def secrets(self, headers: Iterable[tuple[str, str]], url: str | None = None) -> tuple[str, ...]:
        """The secret values in a request's ``headers`` (and ``url``), for :func:`scrub`.

        Every value this redactor would hide, and the parts an app is likely to quote: the credentials after
        ``Bearer``/``Basic`` (and a Basic pair decoded), each cookie value, secret query values decoded.
        Only values of at least :data:`MIN_SECRET_LENGTH` characters, longest first, at most 64.
        """
        found: list[str] = []
        for name, value in headers:
            kind = self._kind(name)
            if kind != _KEEP:
                self._value(kind, value, found)
        if url:
            _redact_url(url, found, 0)
        return _secret_list(found)

    # --- internals ------------------------------------------------------------------------------

    def _kind(self, name: str) -> int:
        kind = self._kinds.get(name)
        if kind is None:
            kind = self._classify(name.strip().lower())
            if len(self._kinds) < _MAX_MEMO and len(name) <= _MAX_MEMO_KEY:
                self._kinds[name] = kind
                if kind == _KEEP:
                    self._plain.add(name)
        return kind

    def _classify(self, lowered: str) -> int:
        # The user's names first: redact_headers=["Referer"] means the whole value, not its URL's secrets.
        if lowered in self._extra:
            return _SECRET
        special = _SPECIAL_KINDS.get(lowered)
        if special is not None:
            return special
        if lowered in _HARMLESS or lowered.startswith(_HARMLESS_PREFIXES):
            return _KEEP
        if lowered in DEFAULT_SENSITIVE_HEADERS or _secret_name(lowered, header=True):
            return _SECRET
        return _OTHER

    def _value(self, kind: int, value: str, found: _Found) -> str:
        if kind == _KEEP or not value:
            return value
        if kind == _OTHER:
            return _redact_other(value, found, self._strict)
        if kind == _URL:
            if found is not None:
                return _redact_url(value, found, 0)
            shown = self._urls.get(value)
            if shown is None:
                shown = _redact_url(value, None, 0)
                if len(value) <= _MAX_MEMO_URL:
                    if len(self._urls) >= _MAX_MEMO_URLS:
                        self._urls.clear()
                    self._urls[value] = shown
            return shown
        if kind == _LINK:
            if "<" in value:
                return _LINK_TARGET.sub(lambda m: f"<{_redact_url(m.group(1), found, 0)}>", value)
            return _URL_IN_TEXT.sub(lambda m: _redact_url(m.group(), found, 0), value)
        if kind == _REFRESH:
            if _REFRESH_URL.search(value):
                return _REFRESH_URL.sub(lambda m: m.group(1) + _redact_url(m.group(2), found, 0), value)
            # "5; https://…" without "url=": browsers accept it too.
            return _URL_IN_TEXT.sub(lambda m: _redact_url(m.group(), found, 0), value)
        if kind == _AUTH:
            return _redact_credentials(value, found, any_scheme=True)
        if kind == _COOKIE:
            _cookie_secrets(value, found)
            return REDACTED
        if kind == _SET_COOKIE:
            return _redact_set_cookie(value, found)
        if kind == _WS_PROTOCOL:
            return _redact_ws_protocols(value, found)
        return _redact_credentials(value, found, any_scheme=False)

    def _cut(self, name: str, value: str, limit: int) -> list[str]:
        """A pair with an over-long name or value: redact the part kept, then mark what was cut."""
        shown_name = name
        if len(name) > limit:
            shown_name = name[:limit] + truncation_marker(name[limit:])
        kind = self._kind(name[:limit])
        if len(value) <= limit:
            return [shown_name, self._value(kind, value, None)]
        keep = limit
        if _TOKEN_CHAR.match(value, limit):
            # A token straddles the cut: a short start of it might no longer look like a secret, so it goes
            # with the rest. A longer one is kept: it is recognised (or redacted by name) like any value.
            run = _TRAILING_RUN.search(value, max(0, limit - _MAX_STRADDLE), limit)
            if run is not None and run.start() > limit - _MAX_STRADDLE:
                keep = run.start()
        head = self._value(kind, value[:keep], None)
        return [shown_name, head + truncation_marker(value[keep:])]


def looks_secret(value: str) -> bool:
    """Whether ``value`` holds something secret-shaped: a JWT, a known token prefix, a long random-looking run."""
    if len(value) < 16:
        return False
    if "eyJ" in value and _JWT.search(value):
        return True
    if _PREFIXED.search(value):
        return True
    return any(_random_run(run) for run in _RUN.findall(value))


def redact_url(url: str) -> str:
    """``url`` with its secrets replaced: userinfo, secret parameters, secret-shaped values, token segments.

    Scheme, host and port are never changed (CORS compares origins), nor anything that holds no secret.
    """
    if "?" in url or "#" in url or "@" in url or ";" in url or "eyJ" in url:
        return _redact_url(url, None, 0)
    # Most URLs: only the path could hold a secret, and a look at its segments (past "scheme://host")
    # rules that out for less than redacting would cost.
    segments = url.split("/")
    if _segments_need_work(segments, 3 if url.find("://") > 0 else 0):
        return _redact_url(url, None, 0)
    return url
    return _redact_url(url, None, 0)


def redact_text(text: str) -> str:
    """Free text (an exception message, a traceback) with secret shapes replaced.

    URLs inside it are redacted with :func:`redact_url`; JWTs, known token prefixes, ``Bearer <x>``/``Basic
    <x>``, ``password=<x>``-style pairs with a secret name and long random-looking strings become
    ``[redacted]``.
    """
    if not text:
        return text
    # Each pass runs only when a cheap substring check says it could match: most exception text has nothing.
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda m: _redact_url(m.group(), None, 0), text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    if any(prefix in text for prefix in _PREFIX_HINTS):
        text = _PREFIXED.sub(REDACTED, text)
    lowered = text.lower()
    if any(scheme in lowered for scheme in _SCHEME_HINTS):
        text = _SCHEME_IN_TEXT.sub(_scheme_in_text, text)
    if ("=" in text or '":' in text) and any(word in lowered for word in _NAME_HINTS):
        text = _PAIR_IN_TEXT.sub(_pair_in_text, text)
    for word in text.split():
        if len(word) >= 16:
            for run in _RUN.findall(word):
                if _random_run(run):
                    text = text.replace(run, REDACTED)
    return text


def scrub(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` (derived from the app: an exception message, a traceback) without the request's secrets.

    Each of ``secrets`` (from :meth:`Redactor.secrets`, longest first) is replaced by ``[redacted]`` wherever
    it occurs, then :func:`redact_text` removes what is secret-shaped.
    """
    if not text:
        return text
    for secret in secrets:
        if len(secret) >= MIN_SECRET_LENGTH and secret in text:
            text = text.replace(secret, REDACTED)
    return redact_text(text)


# --- names ------------------------------------------------------------------------------------------------

_query_names: dict[str, bool] = {}


def _secret_name(name: str, *, header: bool) -> bool:
    """Whether a header or parameter name announces a secret value (its words, see _SECRET_WORDS)."""
    for word in _HEADER_WORDS.split(name) if header else _WORD_SPLIT.findall(name):
        lowered = word.lower()
        if lowered in _NOT_SECRET_WORDS:
            continue
        if lowered in _SECRET_WORDS:
            if header and lowered in _QUERY_ONLY_WORDS:
                continue
            return True
        if any(part in lowered for part in _SECRET_PARTS):
            return True
        if len(lowered) > 3 and lowered.endswith("key"):
            return True
    return False


def _secret_param(name: str) -> bool:
    """Whether a query/fragment/matrix parameter name announces a secret; memoised, bounded."""
    known = _query_names.get(name)
    if known is None:
        decoded = unquote_plus(name) if ("%" in name or "+" in name) else name
        known = decoded.lower() not in _PLAIN_PARAMS and _secret_name(decoded, header=False)
        if len(_query_names) < _MAX_MEMO and len(name) <= _MAX_MEMO_KEY:
            _query_names[name] = known
    return known


# --- shapes -----------------------------------------------------------------------------------------------


def _random_run(run: str) -> bool:
    """Whether a run of token characters looks random (a token, a key, a hash) rather than words or a path.

    Random strings mix character classes and their letters rarely form common English bigrams (about 7% of
    letter pairs do, against about 45% in words, CamelCase identifiers and slugs). Measured on random
    base62/base64url strings of 20 characters: ~97% recognised; on CamelCase identifiers: ~4% taken for one.
    """
    slashes = run.count("/")
    if slashes and (run.startswith("/") or slashes * 16 > len(run)):
        # A path ("/api/v1/users"), not base64 (which has a "/" once in 64 characters on average).
        return any(_random_run(piece) for piece in run.split("/") if len(piece) >= 16)
    if _UUID.match(run):
        # A resource id far more often than a credential; under a secret name it is redacted anyway.
        return False
    pieces = _SEPARATORS.split(run.strip("="))
    if len(pieces) > 1 and all(_PLAIN_PIECE.match(piece) for piece in pieces):
        # Words and numbers joined by separators: a slug ("blue-shirt-size-xl-2024"), a date, not a token.
        return False
    core = "".join(pieces)
    if len(core) < 16:
        return False
    if all(char in _HEX for char in core):
        # Hex: a hash or a key from 32 digits on; shorter ones are ids (a 24-digit ObjectId) or numbers.
        return len(core) >= 32 and not core.isdigit()
    has_digit = any(char in _DIGITS for char in core)
    has_upper = any(char.isupper() for char in core)
    has_lower = any(char.islower() for char in core)
    if has_digit + has_upper + has_lower < 2:
        return False
    lowered = core.lower()
    pairs = hits = 0
    for first, second in zip(lowered, lowered[1:], strict=False):
        if first.isalpha() and second.isalpha():
            pairs += 1
            hits += first + second in _COMMON_BIGRAMS
    return pairs < 4 or hits < 0.25 * pairs


# --- values -----------------------------------------------------------------------------------------------


def _note(found: _Found, *values: str) -> None:
    if found is not None:
        found.extend(values)


def _redact_other(value: str, found: _Found, strict: bool) -> str:
    """A header neither known harmless nor secret by name: redact what is secret-shaped (or all, if strict)."""
    if strict:
        return _redact_credentials(value, found, any_scheme=False)
    shown = value
    if "://" in value:
        shown = _URL_IN_TEXT.sub(lambda m: _redact_url(m.group(), found, 0), value)
    elif value.startswith("/") and ("?" in value or ";" in value):
        shown = _redact_url(value, found, 0)
    scheme, _, rest = shown.strip().partition(" ")
    if rest and scheme.lower() in _KNOWN_SCHEMES and scheme.lower() not in ("key", "mac", "token"):
        _note(found, value, rest)
        return f"{scheme} {REDACTED}"
    if looks_secret(shown):
        _note(found, value)
        return REDACTED
    return shown


def _redact_credentials(value: str, found: _Found, *, any_scheme: bool) -> str:
    """REDACTED, keeping an authentication scheme ("Bearer", "Basic", "AWS4-HMAC-SHA256") in front."""
    stripped = value.strip()
    scheme, _, rest = stripped.partition(" ")
    rest = rest.strip()
    lowered = scheme.lower()
    if rest and (lowered in _KNOWN_SCHEMES or (any_scheme and _SCHEME.match(scheme) and not looks_secret(scheme))):
        if found is not None:
            # The credentials alone: scrubbing them out of "… Bearer <x> …" leaves "Bearer [redacted]".
            found.append(rest)
            if lowered == "basic":
                found.extend(_basic_parts(rest))
        return f"{scheme} {REDACTED}"
    _note(found, value, stripped)
    return REDACTED


def _basic_parts(encoded: str) -> tuple[str, ...]:
    """The decoded ``user:password`` pair of Basic credentials and the password: an app may quote either."""
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return ()
    _, _, password = decoded.partition(":")
    return (decoded, password)


def _cookie_secrets(value: str, found: _Found) -> None:
    if found is None:
        return
    found.append(value)
    for pair in value.split(";"):
        _, _, cookie_value = pair.partition("=")
        found.append(cookie_value.strip().strip('"'))


def _redact_set_cookie(value: str, found: _Found) -> str:
    """Keep the cookie's name and its attributes (SameSite, Secure … decide CORS); redact its value."""
    first, *attributes = value.split(";")
    name, equals, cookie_value = first.partition("=")
    if not equals or looks_secret(name):
        _note(found, value, first)
        return REDACTED
    _note(found, cookie_value.strip(), cookie_value.strip().strip('"'))
    shown = [f"{name}={REDACTED}" if cookie_value.strip() else first]
    for attribute in attributes:
        key, equals, attribute_value = attribute.partition("=")
        if not equals or key.strip().lower() in _COOKIE_ATTRIBUTES:
            shown.append(attribute)
        else:
            _note(found, attribute_value.strip())
            shown.append(f"{key}={REDACTED}")
    return ";".join(shown)


def _redact_ws_protocols(value: str, found: _Found) -> str:
    """Keep ordinary subprotocols ("graphql-ws"); redact tokens passed as one ("access_token, <jwt>")."""
    shown: list[str] = []
    after_marker = False
    for item in value.split(","):
        token = item.strip()
        if not token:
            shown.append(item)
            continue
        lowered = token.lower()
        if after_marker:
            _note(found, token)
            shown.append(_same_padding(item, token, REDACTED))
            after_marker = False
        elif lowered in _WS_MARKERS:
            shown.append(item)
            after_marker = True
        elif (match := _WS_INLINE.match(token)) is not None and len(match.group(2)) >= 4:
            _note(found, token, match.group(2))
            shown.append(_same_padding(item, token, match.group(1) + REDACTED))
        elif looks_secret(token):
            _note(found, token)
            shown.append(_same_padding(item, token, REDACTED))
        else:
            shown.append(item)
    return ",".join(shown)


def _same_padding(item: str, token: str, replacement: str) -> str:
    return item.replace(token, replacement, 1)


# --- URLs -------------------------------------------------------------------------------------------------


def _redact_url(url: str, found: _Found, depth: int) -> str:
    """The work behind redact_url(): split by hand (urlsplit() raises on a broken IPv6 host), keep the rest."""
    if depth > _MAX_DEPTH:
        return url
    rest, hash_sign, fragment = url.partition("#")
    rest, question, query = rest.partition("?")
    scheme_end = rest.find("://")
    if scheme_end > 0 and rest[:scheme_end].replace("+", "").replace("-", "").replace(".", "").isalnum():
        authority_start = scheme_end + 3
        slash = rest.find("/", authority_start)
        authority_end = len(rest) if slash < 0 else slash
        authority = rest[authority_start:authority_end]
        if "@" in authority:
            userinfo, _, hostport = authority.rpartition("@")
            _note(found, userinfo, unquote(userinfo), unquote(userinfo.partition(":")[2]))
            authority = f"{_REDACTED_USERINFO}@{hostport}"
        head = rest[:authority_start] + authority
        path = rest[authority_end:]
    elif rest.startswith("//"):
        # A scheme-relative URL: the authority is everything to the next slash, as above.
        slash = rest.find("/", 2)
        authority = rest[2:] if slash < 0 else rest[2:slash]
        if "@" in authority:
            userinfo, _, hostport = authority.rpartition("@")
            _note(found, userinfo)
            authority = f"{_REDACTED_USERINFO}@{hostport}"
        head = "//" + authority
        path = "" if slash < 0 else rest[slash:]
    else:
        head, path = "", rest
    shown = head + _redact_path(path, found)
    if question:
        shown += "?" + _redact_params(query, found, depth)
    if hash_sign:
        shown += "#" + _redact_fragment(fragment, found, depth)
    return shown


def _segments_need_work(segments: list[str], start: int) -> bool:
    """Whether any path segment from ``start`` on could be redacted (see _redact_path); usually False."""
    after_marker = False
    for segment in segments[start:]:
        size = len(segment)
        if size >= 16 or (after_marker and size >= 8):
            return True
        after_marker = segment in _MARKER_SEGMENTS_ANY_CASE
    return False


def _redact_path(path: str, found: _Found) -> str:
    if not path:
        return path
    segments = path.split("/")
    if found is None and ";" not in path and "eyJ" not in path and not _segments_need_work(segments, 0):
        return path
    after_marker = False
    for index, segment in enumerate(segments):
        if not segment:
            continue
        name, semicolon, params = segment.partition(";")
        decoded = unquote(name) if "%" in name else name
        shown = name
        if after_marker and len(decoded) >= 8 and (len(decoded) >= 16 or any(c in _DIGITS for c in decoded)):
            shown = REDACTED
        elif looks_secret(decoded):
            shown = REDACTED
        if shown is REDACTED:
            _note(found, name, decoded)
        after_marker = decoded.lower() in _MARKER_SEGMENTS
        if semicolon:
            shown += ";" + _redact_params(params, found, _MAX_DEPTH, separator=";")
        segments[index] = shown
    return "/".join(segments)


def _redact_params(query: str, found: _Found, depth: int, separator: str = "&") -> str:
    """``a=1&token=x`` with secret values replaced; pieces are rewritten only when they change."""
    pieces = query.split(separator)
    for index, piece in enumerate(pieces):
        if not piece:
            continue
        name, equals, value = piece.partition("=")
        if not equals:
            if looks_secret(unquote_plus(name)):
                _note(found, name, unquote_plus(name))
                pieces[index] = REDACTED
            continue
        if not value:
            continue
        decoded = unquote_plus(value) if ("%" in value or "+" in value) else value
        if value == REDACTED or decoded == REDACTED:
            continue
        if _secret_param(name):
            _note(found, value, decoded)
            pieces[index] = f"{name}={REDACTED}"
        elif depth < _MAX_DEPTH and ("://" in decoded or decoded.startswith("/")):
            # A URL in a parameter (?next=, ?redirect_uri=): redacted as one, so its harmless parts stay.
            nested = _redact_url(decoded, found, depth + 1)
            if looks_secret(nested):
                # Not a URL after all (or one whose secret the split missed): the whole value goes.
                _note(found, value, decoded)
                pieces[index] = f"{name}={REDACTED}"
            elif nested != decoded:
                pieces[index] = f"{name}={quote(nested, safe='/:[]@!$()*,')}"
        elif looks_secret(decoded):
            _note(found, value, decoded)
            pieces[index] = f"{name}={REDACTED}"
    return separator.join(pieces)


def _redact_fragment(fragment: str, found: _Found, depth: int) -> str:
    """``#access_token=…`` (OAuth implicit flow), ``#/reset/<token>`` (hash routing) or a plain anchor."""
    if not fragment:
        return fragment
    if fragment.startswith(("/", "!/")):
        return _redact_url(fragment, found, depth + 1)
    if "=" in fragment:
        return _redact_params(fragment, found, depth)
    if looks_secret(unquote(fragment)):
        _note(found, fragment)
        return REDACTED
    return fragment


# --- text -------------------------------------------------------------------------------------------------


def _scheme_in_text(match: re.Match[str]) -> str:
    return f"{match.group(1)}{match.group(2)}{REDACTED}"


def _pair_in_text(match: re.Match[str]) -> str:
    bare, bare_separator, quoted, quoted_separator, quote_char, value = match.groups()
    name = bare or quoted
    # Header rules, not URL ones: in prose and source lines "status_code=400" is no OAuth code.
    if value == REDACTED or not _secret_name(name, header=True):
        return match.group()
    head = f"{bare}{bare_separator}" if bare else f'"{quoted}{quoted_separator}'
    return f"{head}{quote_char}{REDACTED}"


def _secret_list(found: list[str]) -> tuple[str, ...]:
    """Distinct secrets worth scrubbing, with their escaped forms, longest first (so parts never split one)."""
    seen: set[str] = set()
    for value in found:
        if len(value) < MIN_SECRET_LENGTH or value == REDACTED:
            continue
        seen.add(value)
        quoted = quote(value, safe="")
        if quoted != value:
            seen.add(quoted)
        escaped = repr(value)[1:-1]
        if escaped != value:
            seen.add(escaped)
    return tuple(sorted(seen, key=lambda s: (-len(s), s))[:_MAX_SECRETS])

"""The verdict engine: what Chromium does with one leg of a cross-origin exchange.

Pure functions, no I/O. Input is what the server saw (:class:`Request`) and what it answered
(:class:`Response`, or ``None`` when an exception escaped before a response started). Output is
one immutable :class:`Verdict` carrying the browser's decision, Chromium's ``Network.CorsError``
name and console message, Firefox's wording, warnings, an explanation and a fix.

Everything else in corstrace (structlog events, the inspector, the CLI) only presents it.

Also exported for the CLI and the middleware: :func:`needs_preflight`,
:func:`cors_unsafe_request_header_names`, :func:`serialize_origin` and
:func:`is_cors_safelisted_request_header` (implemented in ``corstrace._fetch``).

Where Chromium 156 (Debian 156.0.8078.108, checked by tests/test_engine_browser.py) and the Fetch
standard part ways, the verdict follows Chromium and a :class:`Caveat` says so:

* ``Access-Control-Allow-Headers: *`` covers ``Authorization`` (the CorsNonWildcardRequestHeadersSupport
  feature is off by default), code ``authorization_covered_by_wildcard``.
* Methods are compared case-sensitively; ``Save-Data``, ``RTT``, ``ECT``, ``Downlink`` and the numeric
  client hints are safelisted request headers with value rules of their own.
* Console hints escape non-printable and non-ASCII bytes as ``\\uXXXX`` (each byte read as Latin-1), and
  RedirectContainsCredentials quotes an empty location.
* When a preflight misses several headers Chromium names one of them in its internal order; the verdict
  names the first in ``Access-Control-Request-Headers`` order and lists them all (``several_headers_disallowed``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from corstrace._fetch import (
    LWS,
    REDIRECT_STATUSES,
    SAFELISTED_METHODS,
    cors_unsafe_request_header_names,
    escape_hint,
    is_cors_safelisted_request_header,
    is_token,
    is_valid_url,
    location_has_credentials,
    max_age_seconds,
    needs_preflight,
    parse_max_age,
    serialize_origin,
    split_list,
)
from corstrace._messages import FIREFOX_AUTHORIZATION_WARNING, chromium_message, firefox_message

Credentials = Literal["include", "omit", "unknown"]
VerdictName = Literal["allowed", "blocked"]
Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Request:
    """What the server saw of one request leg.

    ``headers`` are ``(name, value)`` pairs as received (ASGI bytes decoded as latin-1, duplicates
    kept, order kept). ``preflight=None`` means "decide like CORSMiddleware": OPTIONS with both
    ``Origin`` and ``Access-Control-Request-Method``. ``credentials=None`` means "infer": a
    ``Cookie`` header on a cross-origin request proves ``include``, otherwise it is ``unknown``.
    """

    method: str
    url: str
    headers: Headers = ()
    preflight: bool | None = None
    credentials: Credentials | None = None
    # Chromium names the API in its message: "Access to fetch at ..." or "Access to XMLHttpRequest at ...".
    initiator: Literal["fetch", "XMLHttpRequest"] = "fetch"
    # Set when this leg is a hop after a redirect; Chromium then says "(redirected from '...')".
    redirected_from: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """What the server answered: the status and headers of ``http.response.start``."""

    status: int
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class Caveat:
    """A warning: something that does not block this request but will bite."""

    code: str  # stable machine id, e.g. "header_not_exposed", "missing_vary_origin"
    message: str  # one sentence for a human


@dataclass(frozen=True, slots=True)
class Outcome:
    """A verdict for one credentials mode (used for ``Verdict.if_credentialed``)."""

    verdict: VerdictName
    reason: str | None
    browser_message: str | None
    firefox_message: str | None
    fix: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The browser's decision on one request leg (preflight or actual)."""

    verdict: VerdictName
    # Chrome DevTools `Network.CorsError` name (e.g. "PreflightMissingAllowOriginHeader"); None when allowed.
    reason: str | None
    browser_message: str | None  # Chromium's console text, exactly; None when allowed
    firefox_message: str | None  # Firefox's console text; None when allowed
    credentials: Credentials
    # When credentials are unknown and `include` would change the outcome: what the browser does then.
    if_credentialed: Outcome | None
    warnings: tuple[Caveat, ...]
    explanation: str
    fix: str | None
    preflight: bool
    origin: str | None
    url: str
    method: str
    requested_method: str | None = None  # Access-Control-Request-Method on a preflight
    requested_headers: tuple[str, ...] = ()  # Access-Control-Request-Headers, lower-cased, in order
    # Chromium's `failed_parameter`: the ACAO/ACAC value, method or header name quoted in the message ("" for
    # RedirectContainsCredentials, as Chromium 156 prints it). For unparsable ACAM/ACAH: the first item that is
    # not a token (Chromium keeps none; Firefox quotes it).
    failed_parameter: str | None = None
    # Lower-cased names of the request/response headers that decided the verdict (the inspector highlights them).
    decisive_headers: tuple[str, ...] = ()
    # Seconds Chromium caches this preflight's result (None for actual requests).
    preflight_cache_seconds: int | None = None
    # Structured details behind some warnings; "unexposed_headers": response header names the page cannot read.
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The verdict as plain JSON-ready data (the keys the structlog events use)."""
        credentialed = self.if_credentialed
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "browser_message": self.browser_message,
            "firefox_message": self.firefox_message,
            "credentials": self.credentials,
            "if_credentialed": None
            if credentialed is None
            else {
                "verdict": credentialed.verdict,
                "reason": credentialed.reason,
                "browser_message": credentialed.browser_message,
                "firefox_message": credentialed.firefox_message,
                "fix": credentialed.fix,
            },
            "warnings": [{"code": caveat.code, "message": caveat.message} for caveat in self.warnings],
            "explanation": self.explanation,
            "fix": self.fix,
            "preflight": self.preflight,
            "origin": self.origin,
            "url": self.url,
            "method": self.method,
            "requested_method": self.requested_method,
            "requested_headers": list(self.requested_headers),
            "failed_parameter": self.failed_parameter,
            "decisive_headers": list(self.decisive_headers),
            "preflight_cache_seconds": self.preflight_cache_seconds,
        }


__all__ = [
    "DECISIVE_REQUEST_HEADERS",
    "DECISIVE_RESPONSE_HEADERS",
    "Caveat",
    "Credentials",
    "Headers",
    "Outcome",
    "Request",
    "Response",
    "Verdict",
    "VerdictName",
    "cors_unsafe_request_header_names",
    "evaluate",
    "is_cors_safelisted_request_header",
    "needs_preflight",
    "serialize_origin",
]

# What Starlette's ServerErrorMiddleware sends when an exception escapes before a response started.
_SERVER_ERROR_RESPONSE = Response(500, (("content-length", "21"), ("content-type", "text/plain; charset=utf-8")))
# Response headers a CORS-filtered response always exposes, and the ones it never exposes.
_SAFELISTED_RESPONSE_HEADERS = frozenset(
    {"cache-control", "content-language", "content-length", "content-type", "expires", "last-modified", "pragma"}
)
_NEVER_EXPOSED = frozenset({"set-cookie", "set-cookie2"})
# Plumbing a page has no reason to read; warning about them would drown the useful warnings.
_UNINTERESTING_RESPONSE_HEADERS = frozenset(
    {
        "date",
        "server",
        "vary",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-encoding",
        "alt-svc",
        "strict-transport-security",
        "x-content-type-options",
        "x-frame-options",
        "x-xss-protection",
        "content-security-policy",
        "referrer-policy",
        "permissions-policy",
        "cross-origin-opener-policy",
        "cross-origin-embedder-policy",
        "cross-origin-resource-policy",
        "timing-allow-origin",
        "report-to",
        "nel",
        "accept-ranges",
    }
)
_BROWSER_CAPS = (("WebKit", 600), ("Chromium", 7200), ("Firefox", 86400))

_ACAO_AND_ORIGIN = ("access-control-allow-origin", "origin")
# The request and response headers that decide a leg's verdict, reason and requested method: the judges below
# see only these (`_Exchange.decisive`, `_request_headers`), so a rule that reads another header finds nothing
# until its name is listed here. Callers that remember decisions key them on exactly these headers (with the
# method, the status and the request URL's origin), so a new rule can never be served a stale decision.
# Names are lower-case; the wording of explanations and warnings may read any header.
DECISIVE_REQUEST_HEADERS = frozenset(
    {"origin", "cookie", "sec-fetch-mode", "access-control-request-method", "access-control-request-headers"}
)
DECISIVE_RESPONSE_HEADERS = frozenset(
    {
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "location",
    }
)


def _fold(headers: Headers) -> tuple[dict[str, str], int]:
    """Headers as Chromium's GetNormalizedHeader sees them: lower-case names, LWS-trimmed values joined with ", ".

    Also returns how many Access-Control-Allow-Origin lines there were (Firefox words that case differently).
    """
    folded: dict[str, str] = {}
    acao_lines = 0
    for name, value in headers:
        key = name.lower()
        if key == "access-control-allow-origin":
            acao_lines += 1
        value = value.strip(LWS)
        previous = folded.get(key)
        folded[key] = value if previous is None else f"{previous}, {value}"
    return folded, acao_lines


class _Exchange(NamedTuple):
    """One leg, parsed once; both credentials modes are judged from it."""

    request: Request
    preflight: bool
    origin: str
    method: str  # the actual request's method: Access-Control-Request-Method on a preflight
    requested_headers: tuple[str, ...]
    status: int
    response: dict[str, str]  # every response header, folded: for explanations and warnings
    decisive: dict[str, str]  # only DECISIVE_RESPONSE_HEADERS: what the judges may read
    acao_lines: int
    exception: bool  # no response started: the judged 500 is the server-error layer's


class _Finding(NamedTuple):
    reason: str | None
    hint: str | None = None
    # Every requested header the preflight did not allow (Chromium names one of them).
    missing: tuple[str, ...] = ()
    lenient: bool = False  # passed only because Chromium lets `*` cover Authorization


def _check_access(exchange: _Exchange, include: bool) -> _Finding:
    # cors.cc CheckAccess, in Chromium's order.
    acao = exchange.decisive.get("access-control-allow-origin")
    if acao == "*":
        return _Finding("WildcardOriginNotAllowed") if include else _Finding(None)
    if acao is None:
        return _Finding("MissingAllowOriginHeader")
    if acao != exchange.origin:
        if " " in acao or "," in acao:
            return _Finding("MultipleAllowOriginValues", acao)
        if acao != "null" and not is_valid_url(acao):
            return _Finding("InvalidAllowOriginValue", acao)
        return _Finding("AllowOriginMismatch", acao)
    if include:
        acac = exchange.decisive.get("access-control-allow-credentials")
        if acac != "true":
            return _Finding("InvalidAllowCredentials", acac or "")
    return _Finding(None)


def _first_invalid_token(value: str | None) -> str | None:
    if value is None:
        return None
    for item in split_list(value):
        if not is_token(item):
            return item
    return None


def _judge_preflight(exchange: _Exchange, include: bool) -> _Finding:
    response = exchange.decisive
    if exchange.status in REDIRECT_STATUSES and response.get("location"):
        return _Finding("PreflightDisallowedRedirect")
    access = _check_access(exchange, include)
    if access.reason is not None:
        return _Finding("Preflight" + access.reason, access.hint)
    if not 200 <= exchange.status <= 299:
        return _Finding("PreflightInvalidStatus")
    acam = response.get("access-control-allow-methods")
    acah = response.get("access-control-allow-headers")
    bad = _first_invalid_token(acam)
    if bad is not None:
        return _Finding("InvalidAllowMethodsPreflightResponse", bad)
    bad = _first_invalid_token(acah)
    if bad is not None:
        return _Finding("InvalidAllowHeadersPreflightResponse", bad)
    methods = split_list(acam) if acam else []
    method = exchange.method
    if not (method in methods or (not include and "*" in methods) or method.upper() in SAFELISTED_METHODS):
        return _Finding("MethodDisallowedByPreflightResponse", method)
    allowed = {item.lower() for item in split_list(acah)} if acah else set()
    if not include and "*" in allowed:
        # Chromium 156 ships CorsNonWildcardRequestHeadersSupport disabled: `*` covers Authorization too.
        lenient = "authorization" in exchange.requested_headers and "authorization" not in allowed
        return _Finding(None, lenient=lenient)
    missing = tuple(name for name in exchange.requested_headers if name not in allowed)
    if missing:
        return _Finding("HeaderDisallowedByPreflightResponse", missing[0], missing)
    return _Finding(None)


def _judge_actual(exchange: _Exchange, include: bool) -> _Finding:
    access = _check_access(exchange, include)
    if access.reason is not None:
        return access
    location = exchange.decisive.get("location")
    if exchange.status in REDIRECT_STATUSES and location and location_has_credentials(location):
        # Chromium 156 leaves the hint empty: the message reads "Redirect location ''".
        return _Finding("RedirectContainsCredentials", "")
    return _Finding(None)


def _url_origin(url: str) -> str:
    """serialize_origin(url), memoised on the part before the path: a server sees few distinct hosts."""
    scheme_end = url.find("://")
    path_start = url.find("/", scheme_end + 3) if scheme_end >= 0 else -1
    return _serialize_prefix(url if path_start < 0 else url[:path_start])


@functools.lru_cache(maxsize=256)
def _serialize_prefix(prefix: str) -> str:
    return serialize_origin(prefix)


def _path(url: str) -> str:
    after_scheme = url.find("://")
    start = url.find("/", after_scheme + 3) if after_scheme >= 0 else url.find("/")
    if start < 0:
        return "/"
    end = len(url)
    for stop in "?#":
        index = url.find(stop, start)
        if 0 <= index < end:
            end = index
    return url[start:end] or "/"


def _not_cors(request: Request, origin: str | None, explanation: str, credentials: Credentials) -> Verdict:
    return Verdict(
        verdict="allowed",
        reason=None,
        browser_message=None,
        firefox_message=None,
        credentials=credentials,
        if_credentialed=None,
        warnings=(),
        explanation=explanation,
        fix=None,
        preflight=False,
        origin=origin,
        url=request.url,
        method=request.method,
        decisive_headers=("origin",) if origin is not None else (),
    )


def evaluate(request: Request, response: Response | None) -> Verdict:
    """Predict what Chromium does with ``request`` answered by ``response``.

    ``response=None`` means no response started because an exception escaped: the outer
    server-error layer then sends a 500 without CORS headers, and that is what is judged.
    Never raises, whatever the input.
    """
    try:
        return _evaluate(request, response)
    except Exception as exc:  # pragma: no cover - a last guard: a bug here must never break the host app
        return _not_cors(
            request if isinstance(request, Request) else Request("?", "?"),
            None,
            f"corstrace could not judge this exchange ({type(exc).__name__}); no verdict was formed.",
            "unknown",
        )


def _request_headers(headers: Headers) -> dict[str, str]:
    """The few request headers the engine reads, folded like `_fold` (browsers send a dozen others)."""
    folded: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key in DECISIVE_REQUEST_HEADERS:
            value = value.strip(LWS)
            previous = folded.get(key)
            folded[key] = value if previous is None else f"{previous}, {value}"
    return folded


def _evaluate(request: Request, response: Response | None) -> Verdict:
    folded = _request_headers(request.headers)
    origin = folded.get("origin")
    preflight = request.preflight
    if preflight is None:
        preflight = request.method == "OPTIONS" and origin is not None and "access-control-request-method" in folded
    credentials: Credentials
    if request.credentials is not None:
        credentials = request.credentials
    elif not preflight and "cookie" in folded:
        credentials = "include"
    else:
        credentials = "unknown"
    if origin is None:
        return _not_cors(
            request,
            None,
            "The request has no `Origin` header, so no browser page made it cross-origin and CORS does not apply.",
            credentials,
        )
    if origin == _url_origin(request.url):
        return _not_cors(
            request,
            origin,
            f"`Origin: {_show(origin)}` is the request URL's own origin: a same-origin request, so CORS does not "
            "apply.",
            credentials,
        )
    mode = folded.get("sec-fetch-mode")
    if mode is not None and mode != "cors" and not preflight:
        return _not_cors(
            request,
            origin,
            f"`Sec-Fetch-Mode: {_show(mode)}` says the browser made this request without CORS (a navigation, a form "
            "submission or a no-cors subresource), so it applies no CORS check to the response.",
            credentials,
        )
    exception = response is None
    answered = _SERVER_ERROR_RESPONSE if response is None else response
    response_headers, acao_lines = _fold(answered.headers)
    if preflight:
        method = folded.get("access-control-request-method", "")
        requested_headers = tuple(
            dict.fromkeys(item.lower() for item in split_list(folded.get("access-control-request-headers", "")))
        )
    else:
        method, requested_headers = request.method, ()
    status = answered.status if isinstance(answered.status, int) else 0
    judged = {name: value for name, value in response_headers.items() if name in DECISIVE_RESPONSE_HEADERS}
    exchange = _Exchange(
        request, preflight, origin, method, requested_headers, status, response_headers, judged,
        acao_lines, exception,
    )  # fmt: skip
    judge = _judge_preflight if preflight else _judge_actual
    finding = judge(exchange, credentials == "include")
    if_credentialed = None
    if credentials == "unknown":
        credentialed = judge(exchange, True)
        if credentialed.reason != finding.reason:
            if_credentialed = Outcome(
                verdict="blocked" if credentialed.reason else "allowed",
                reason=credentialed.reason,
                browser_message=_chromium(exchange, credentialed),
                firefox_message=_firefox(exchange, credentialed),
                fix=_describe(exchange, credentialed, True)[1],
            )
    explanation, fix, decisive = _describe(exchange, finding, credentials == "include")
    if preflight and finding.reason:
        # The server log shows an OPTIONS and nothing after it; say why the actual request never comes.
        explanation += f" The browser stops here: it never sends the actual `{_show(method)}` request."
    caveats, hidden = _caveats(exchange, finding, credentials)
    if if_credentialed is not None:
        # Never a silent guess: say which mode the verdict assumes and what the other one does.
        explanation += (
            " The server cannot tell whether the page sends credentials; this verdict is for a request without "
            "them. With `credentials: 'include'` (or `withCredentials`) "
            + (
                f"the browser blocks it ({if_credentialed.reason}): see `if_credentialed`."
                if if_credentialed.reason
                else "it passes."
            )
        )
    return Verdict(
        verdict="blocked" if finding.reason else "allowed",
        reason=finding.reason,
        browser_message=_chromium(exchange, finding),
        firefox_message=_firefox(exchange, finding),
        credentials=credentials,
        if_credentialed=if_credentialed,
        warnings=tuple(caveats),
        explanation=explanation,
        fix=fix,
        preflight=preflight,
        origin=origin,
        url=request.url,
        method=request.method,
        requested_method=method if preflight else None,
        requested_headers=requested_headers,
        failed_parameter=finding.hint,
        decisive_headers=decisive,
        preflight_cache_seconds=_cache_seconds(exchange, finding),
        extra={"unexposed_headers": hidden} if hidden else {},
    )


def _cache_seconds(exchange: _Exchange, finding: _Finding) -> int | None:
    if not exchange.preflight:
        return None
    if finding.reason is not None:
        return 0  # a failed preflight is never cached
    return parse_max_age(exchange.response.get("access-control-max-age"))


def _chromium(exchange: _Exchange, finding: _Finding) -> str | None:
    if finding.reason is None:
        return None
    request = exchange.request
    return chromium_message(
        finding.reason,
        url=request.url,
        origin=exchange.origin,
        hint=finding.hint,
        initiator=request.initiator,
        redirected_from=request.redirected_from,
    )


def _firefox(exchange: _Exchange, finding: _Finding) -> str | None:
    if finding.reason is None:
        return None
    return firefox_message(
        finding.reason,
        url=exchange.request.url,
        hint=finding.hint,
        status=exchange.status,
        acao_lines=exchange.acao_lines,
    )


def _target(exchange: _Exchange) -> str:
    return f"`{exchange.request.method} {_path(exchange.request.url)}`"


_SHOW_LIMIT = 200


def _show(value: str | None) -> str:
    """A header value fit for an explanation: escaped like Chromium's hints and cut at 200 characters."""
    if value is None:
        return ""
    if len(value) > _SHOW_LIMIT:
        return escape_hint(value[:_SHOW_LIMIT]) + "…"
    return escape_hint(value)


def _origin_difference(acao: str, origin: str) -> str:
    """Why a single ACAO value is not the request's origin, as precisely as the two strings allow."""
    if acao.rstrip("/") == origin:
        return f"has a trailing slash; the browser compares it byte for byte with `Origin: {_show(origin)}`."
    if acao.lower() == origin.lower():
        return f"differs from `Origin: {_show(origin)}` only in case, and the browser compares byte for byte."
    if acao == "null":
        return (
            "matches only pages with an opaque origin (sandboxed iframes, `file:` and `data:` pages), "
            f"not `Origin: {_show(origin)}`."
        )
    if not is_valid_url(acao):
        return f"is not a valid origin (not a URL), so it can never match `Origin: {_show(origin)}`."
    return (
        f"is not the page's origin `{_show(origin)}`; the browser compares scheme, host and port byte for byte "
        "(default port omitted, no trailing slash)."
    )


def _describe(exchange: _Exchange, finding: _Finding, include: bool) -> tuple[str, str | None, tuple[str, ...]]:
    """Plain-English explanation, the fix, and the headers that decided."""
    reason = finding.reason
    if reason is None:
        return _describe_allowed(exchange, finding), None, _ACAO_AND_ORIGIN
    # Values shown to a human are escaped and cut short: they are attacker-controlled and may be 100 KB.
    origin = _show(exchange.origin)
    response = exchange.response
    raw_acao = response.get("access-control-allow-origin")
    acao = _show(raw_acao)
    target = _target(exchange)
    base = reason.removeprefix("Preflight") if reason and reason.startswith("Preflight") else reason
    leg = "preflight response" if exchange.preflight else "response"
    send_acao = f"Send `Access-Control-Allow-Origin: {origin}`"
    credentials_too = " and `Access-Control-Allow-Credentials: true`" if include else ""
    on_target = f" on the response to {target}."
    if exchange.exception and base == "MissingAllowOriginHeader":
        return (
            "An exception escaped before any response started, so the outer server-error layer answered a 500 "
            "without CORS headers. The page never sees that 500: the browser reports a missing "
            "`Access-Control-Allow-Origin` instead.",
            f"Fix the exception, or make the error response carry `Access-Control-Allow-Origin: {origin}`"
            f"{credentials_too} (CORS headers must also be added to the 500 for {target}).",
            ("access-control-allow-origin", "origin"),
        )
    if base == "MissingAllowOriginHeader":
        status_note = f" (status {exchange.status})" if exchange.status != 200 else ""
        return (
            f"The {leg}{status_note} has no `Access-Control-Allow-Origin` header, so the browser does not let the "
            f"page at `{origin}` read it.",
            send_acao + credentials_too + on_target,
            ("access-control-allow-origin", "origin"),
        )
    if base == "WildcardOriginNotAllowed":
        return (
            f"The {leg} allows every origin with `Access-Control-Allow-Origin: *`, but the request carries "
            "credentials (cookies or HTTP auth), and `*` never works with credentials.",
            f"Replace `Access-Control-Allow-Origin: *` with `Access-Control-Allow-Origin: {origin}` plus "
            f"`Access-Control-Allow-Credentials: true` and `Vary: Origin`" + on_target,
            ("access-control-allow-origin", "origin"),
        )
    if base == "MultipleAllowOriginValues":
        lines = "several `Access-Control-Allow-Origin` lines" if exchange.acao_lines > 1 else "a list"
        return (
            f"The {leg} sends {lines} (`{acao}`), but the header must hold exactly one origin.",
            f"Send a single `Access-Control-Allow-Origin: {origin}` header" + on_target,
            ("access-control-allow-origin", "origin"),
        )
    if base in ("InvalidAllowOriginValue", "AllowOriginMismatch"):
        return (
            f"`Access-Control-Allow-Origin: {acao}` {_origin_difference(raw_acao or '', exchange.origin)}",
            send_acao + on_target,
            ("access-control-allow-origin", "origin"),
        )
    if base == "InvalidAllowCredentials":
        acac = response.get("access-control-allow-credentials")
        found = "is missing" if acac is None else f"is `{_show(acac)}`"
        return (
            f"The request carries credentials and the {leg} names the origin, but "
            f"`Access-Control-Allow-Credentials` {found}; it must be exactly `true` (lower-case).",
            "Send `Access-Control-Allow-Credentials: true`" + on_target,
            ("access-control-allow-credentials", "origin"),
        )
    if reason == "PreflightInvalidStatus":
        hint = ""
        if exchange.status == 400:
            hint = " Starlette's CORSMiddleware answers 400 when it rejects the origin, method or headers."
        elif exchange.status in (401, 403):
            hint = " Preflights never carry credentials, so authentication must let `OPTIONS` through."
        elif exchange.status in (404, 405):
            hint = " No CORS layer answered the preflight, so the router's own answer to `OPTIONS` came back."
        return (
            f"The preflight answered {exchange.status}; a preflight must return a 2xx status, whatever its "
            "headers say." + hint,
            f"Answer `OPTIONS {_path(exchange.request.url)}` with status 200 or 204 (and its CORS headers).",
            ("access-control-allow-origin",),
        )
    if reason == "PreflightDisallowedRedirect":
        location = _show(response.get("location", ""))
        return (
            f"The preflight was answered with a {exchange.status} redirect to `{location}`; browsers never follow "
            "redirects on a preflight.",
            f"Answer `OPTIONS {_path(exchange.request.url)}` directly with 200 or 204, or make the page call the "
            f"final URL (`{location}`), e.g. fix a missing or extra trailing slash.",
            ("location",),
        )
    if reason == "InvalidAllowMethodsPreflightResponse":
        return (
            f"`Access-Control-Allow-Methods: {_show(response.get('access-control-allow-methods'))}` does not parse: "
            f"`{_show(finding.hint)}` is not a method name (a token).",
            f"Send `Access-Control-Allow-Methods: {_show(exchange.method)}` (a comma-separated list of method names)"
            + on_target,
            ("access-control-allow-methods",),
        )
    if reason == "InvalidAllowHeadersPreflightResponse":
        wanted = _show(", ".join(exchange.requested_headers)) or "x-example"
        return (
            f"`Access-Control-Allow-Headers: {_show(response.get('access-control-allow-headers'))}` does not parse: "
            f"`{_show(finding.hint)}` is not a header name (a token).",
            f"Send `Access-Control-Allow-Headers: {wanted}` (a comma-separated list of header names)" + on_target,
            ("access-control-allow-headers",),
        )
    if reason == "MethodDisallowedByPreflightResponse":
        acam = response.get("access-control-allow-methods")
        methods = split_list(acam) if acam else []
        note = ""
        if any(item.upper() == exchange.method.upper() for item in methods):
            note = " Methods are compared case-sensitively: a page's `patch` needs `patch`, not `PATCH`."
        elif include and "*" in methods:
            note = " With credentials, `*` is a literal method name, not a wildcard."
        listed = (
            f"answered `Access-Control-Allow-Methods: {_show(acam)}`"
            if acam is not None
            else "has no `Access-Control-Allow-Methods` header"
        )
        return (
            f"The page wants to send `{_show(exchange.method)}`, but the preflight response {listed}.{note}",
            f"Send `Access-Control-Allow-Methods: {_show(', '.join([*methods, exchange.method]))}`" + on_target,
            ("access-control-allow-methods", "access-control-request-method"),
        )
    if reason == "HeaderDisallowedByPreflightResponse":
        acah = response.get("access-control-allow-headers")
        allowed = split_list(acah) if acah else []
        note = " With credentials, `*` is a literal header name, not a wildcard." if include and "*" in allowed else ""
        missing = _show(", ".join(f"`{name}`" for name in finding.missing))
        listed = (
            f"answered `Access-Control-Allow-Headers: {_show(acah)}`"
            if acah is not None
            else "has no `Access-Control-Allow-Headers` header"
        )
        value = ", ".join(dict.fromkeys([*(item for item in allowed if item != "*"), *exchange.requested_headers]))
        return (
            f"The page sends the header(s) {missing}, but the preflight response {listed}.{note}",
            f"Send `Access-Control-Allow-Headers: {_show(value)}`" + on_target,
            ("access-control-allow-headers", "access-control-request-headers"),
        )
    if reason == "RedirectContainsCredentials":
        location = _show(response.get("location", ""))
        return (
            f"The response redirects to `{location}`, which carries a username or password; browsers refuse to "
            "follow such a redirect for a cross-origin request.",
            "Remove the `user:password@` part from the `Location` header" + on_target,
            ("location",),
        )
    return "The browser rejected the response.", None, ()  # pragma: no cover - every reason is handled above


def _describe_allowed(exchange: _Exchange, finding: _Finding) -> str:
    raw_acao = exchange.response.get("access-control-allow-origin")
    acao = _show(raw_acao)
    matched = "allows any origin" if raw_acao == "*" else f"matches the page's origin `{_show(exchange.origin)}`"
    if exchange.preflight:
        allowed = f"method `{_show(exchange.method)}`"
        if exchange.requested_headers:
            allowed += " and header(s) " + _show(", ".join(f"`{name}`" for name in exchange.requested_headers))
        return (
            f"The preflight answered {exchange.status} and `Access-Control-Allow-Origin: {acao}` {matched}; it "
            f"allows {allowed}, so the browser goes on to send the actual request."
        )
    location = exchange.response.get("location")
    if exchange.status in REDIRECT_STATUSES and location:
        return (
            f"The {exchange.status} redirect passes the CORS check (`Access-Control-Allow-Origin: {acao}` {matched}), "
            f"so the browser follows it to `{_show(location)}`, which must pass its own check."
        )
    return f"`Access-Control-Allow-Origin: {acao}` {matched}, so the browser lets the page read the response."


def _caveats(exchange: _Exchange, finding: _Finding, credentials: Credentials) -> tuple[list[Caveat], list[str]]:
    """The warnings, and the names of the response headers the page cannot read."""
    hidden: list[str] = []
    caveats: list[Caveat] = []
    response = exchange.response
    acao = response.get("access-control-allow-origin")
    if exchange.preflight:
        _preflight_caveats(exchange, finding, credentials, caveats)
    elif finding.reason is None:
        hidden = _exposure_caveats(exchange, credentials, caveats)
    # Only worth saying when the echo is part of a working (or almost working) answer.
    relevant = finding.reason is None or finding.reason.endswith("InvalidAllowCredentials")
    if relevant and acao is not None and acao == exchange.origin and acao != "null":
        vary = {item.lower() for item in split_list(response.get("vary", ""))}
        if "origin" not in vary and "*" not in vary:
            caveats.append(
                Caveat(
                    "missing_vary_origin",
                    "`Access-Control-Allow-Origin` echoes the request's origin without `Vary: Origin`; a shared "
                    "cache may replay this response to another origin, which then fails. Add `Vary: Origin`.",
                )
            )
    if exchange.status == 304 and not exchange.preflight and finding.reason is not None:
        caveats.append(
            Caveat(
                "revalidation_304",
                "When this 304 answers the browser's own cache revalidation, the browser checks the CORS headers "
                "of the cached response it merges the 304 into, not the 304's; send the CORS headers on 304s too.",
            )
        )
    if acao == "*" and credentials == "unknown":
        caveats.append(
            Caveat(
                "wildcard_origin_with_credentials",
                "`Access-Control-Allow-Origin: *` works only while the page sends no credentials; with "
                "`credentials: 'include'` the browser blocks it (WildcardOriginNotAllowed).",
            )
        )
    return caveats, hidden


def _preflight_caveats(exchange: _Exchange, finding: _Finding, credentials: Credentials, out: list[Caveat]) -> None:
    response = exchange.response
    if finding.lenient:
        out.append(
            Caveat(
                "authorization_covered_by_wildcard",
                "`Access-Control-Allow-Headers: *` does not cover `Authorization` under the Fetch standard (CORS "
                "non-wildcard request-header name). Chromium 156 lets it through by default (enforced only with "
                "the CorsNonWildcardRequestHeadersSupport feature or enterprise policy), Firefox lets it through "
                "with a deprecation warning; list `authorization` explicitly. Firefox prints: "
                + FIREFOX_AUTHORIZATION_WARNING.format(url=exchange.request.url),
            )
        )
    if len(finding.missing) > 1:
        out.append(
            Caveat(
                "several_headers_disallowed",
                "Several requested headers are not allowed ("
                + ", ".join(f"`{name}`" for name in finding.missing)
                + "); Chromium names only one of them, picked in its internal header order.",
            )
        )
    if finding.reason is None and credentials == "unknown":
        for header, noun in (("access-control-allow-methods", "method"), ("access-control-allow-headers", "header")):
            value = response.get(header)
            if value is not None and "*" in split_list(value):
                out.append(
                    Caveat(
                        f"wildcard_{noun}s_with_credentials",
                        f"`{header.title()}: *` is a wildcard only without credentials; with "
                        f"`credentials: 'include'` it is the literal {noun} name `*`.",
                    )
                )
    raw = response.get("access-control-max-age")
    if raw is None or finding.reason is not None:
        return
    asked = max_age_seconds(raw)
    if asked is None:
        if not raw.lstrip("-").isdigit():
            out.append(
                Caveat(
                    "invalid_max_age",
                    f"`Access-Control-Max-Age: {_show(raw)}` is not a number of seconds; browsers cache the preflight "
                    "for 5 seconds.",
                )
            )
        return
    capped = [f"{browser} {cap} s" for browser, cap in _BROWSER_CAPS if asked > cap]
    if capped:
        out.append(
            Caveat(
                "max_age_capped",
                f"`Access-Control-Max-Age: {_show(raw)}` exceeds browser caps ({', '.join(capped)}); those browsers "
                "re-send the preflight sooner.",
            )
        )


def _exposure_caveats(exchange: _Exchange, credentials: Credentials, out: list[Caveat]) -> list[str]:
    """Warn about response headers the page cannot read; returns their names."""
    response = exchange.response
    aceh = response.get("access-control-expose-headers")
    exposed = {item.lower() for item in split_list(aceh)} if aceh else set()
    wildcard = "*" in exposed
    if wildcard and credentials != "omit":
        out.append(
            Caveat(
                "expose_wildcard_with_credentials",
                "`Access-Control-Expose-Headers: *` exposes every header only without credentials; with "
                "credentials it is the literal name `*` and exposes nothing. List the header names.",
            )
        )
    if wildcard and credentials != "include":
        return []  # the verdict is for an uncredentialed request, which `*` exposes everything to
    hidden = [
        name
        for name in response
        if name not in exposed
        and name not in _SAFELISTED_RESPONSE_HEADERS
        and name not in _UNINTERESTING_RESPONSE_HEADERS
        and name not in _NEVER_EXPOSED
        and not name.startswith("access-control-")
    ]
    if hidden:
        names = _show(", ".join(f"`{name}`" for name in hidden))
        out.append(
            Caveat(
                "header_not_exposed",
                f"The page cannot read {names}: not listed in `Access-Control-Expose-Headers`. "
                f"Send `Access-Control-Expose-Headers: {_show(', '.join(sorted(exposed - {'*'} | set(hidden))))}`.",
            )
        )
    return hidden

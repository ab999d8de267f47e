"""The verdict engine: what Chromium and Firefox do with one leg of a cross-origin exchange.

Pure functions, no I/O. Input is what the server saw (:class:`Request`) and what it answered
(:class:`Response`, or ``None`` when an exception escaped before a response started). Output is
one immutable :class:`Verdict` carrying the browser's decision, Chromium's ``Network.CorsError``
name and console message (for the page API that made the request), every line Firefox prints,
warnings, an explanation and a fix.

Everything else in corstrace (structlog events, the inspector, the CLI) only presents it.

Also exported for the CLI and the middleware: :func:`needs_preflight`,
:func:`cors_unsafe_request_header_names`, :func:`serialize_origin`,
:func:`is_cors_safelisted_request_header` and :func:`infer_initiator`.

What the server can tell about the page (checked in Chromium 156 and Firefox ESR 153 by
tests/test_engine_browser*.py):

* The initiator, from ``Sec-Fetch-Dest`` (``script``, ``image``, ``font``, ``style``, ``audio``, ``video``,
  ``track``) and, for EventSource, ``Accept: text/event-stream`` with ``Cache-Control: no-cache``. fetch(),
  XMLHttpRequest and navigator.sendBeacon() all say ``empty`` and cannot be told apart: the verdict then
  carries fetch's console text in ``browser_message`` and XMLHttpRequest's in ``browser_message_xhr``
  (a beacon's reads "Access to resource at"; pass ``initiator="resource"`` when you know).
* The credentials mode: ``include`` when a ``Cookie`` or a ``Sec-Fetch-Storage-Access`` header came
  (Chromium 156 sends the latter on every cross-site request with credentials, Firefox ESR 153 also on
  their preflights); otherwise ``unknown`` and the verdict says what ``include`` would change.

Where Chromium 156 and the Fetch standard part ways, the verdict follows Chromium and a
:class:`Caveat` says so:

* ``Access-Control-Allow-Headers: *`` covers ``Authorization`` (the CorsNonWildcardRequestHeadersSupport
  feature is off by default), code ``authorization_covered_by_wildcard``.
* Methods are compared case-sensitively; ``Save-Data``, ``RTT``, ``ECT``, ``Downlink`` and the numeric
  client hints are safelisted request headers with value rules of their own.
* Console hints escape non-printable and non-ASCII bytes as ``\\uXXXX`` (each byte read as Latin-1), and
  RedirectContainsCredentials quotes an empty location.
* When a preflight misses several headers Chromium names one of them in its internal order; the verdict
  names the first in ``Access-Control-Request-Headers`` order and lists them all (``several_headers_disallowed``).

Firefox decides like Chromium but for a redirected preflight (it checks the preflight's
``Access-Control-Allow-Origin`` before refusing the redirect), and words things its own way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from corstrace._fetch import (
    LWS,
    SAFELISTED_METHODS,
    cors_unsafe_request_header_names,
    escape_hint,
    is_cors_safelisted_request_header,
    is_redirect,
    is_token,
    is_valid_url,
    location_has_credentials,
    max_age_seconds,
    needs_preflight,
    parse_max_age,
    serialize_origin,
    split_list,
)
from corstrace._messages import (
    FIREFOX_AUTHORIZATION_WARNING,
    chromium_message,
    firefox_console,
    firefox_message,
)

Credentials = Literal["include", "omit", "unknown"]
VerdictName = Literal["allowed", "blocked"]
Headers = tuple[tuple[str, str], ...]
# The page API that made the request, as far as the server can tell. `fetch_or_xhr`: fetch() or XMLHttpRequest
# (or sendBeacon), which no header tells apart; `resource`: EventSource (or sendBeacon, when the caller knows).
Initiator = Literal[
    "fetch",
    "XMLHttpRequest",
    "fetch_or_xhr",
    "script",
    "image",
    "font",
    "style",
    "audio",
    "video",
    "track",
    "resource",
]


@dataclass(frozen=True, slots=True)
class Request:
    """What the server saw of one request leg.

    ``headers`` are ``(name, value)`` pairs as received (ASGI bytes decoded as latin-1, duplicates
    kept, order kept). ``preflight=None`` means "decide like CORSMiddleware": OPTIONS with both
    ``Origin`` and ``Access-Control-Request-Method``. ``credentials=None`` means "infer": a
    ``Cookie`` header on an actual request or a ``Sec-Fetch-Storage-Access`` header on any leg proves
    ``include``, otherwise it is ``unknown``. ``initiator=None`` means "infer" (:func:`infer_initiator`).
    """

    method: str
    url: str
    headers: Headers = ()
    preflight: bool | None = None
    credentials: Credentials | None = None
    # Chromium names the API in its message: "Access to fetch at ...", "Access to script at ...".
    initiator: Initiator | None = None
    # On every leg after a redirect (a preflight at a 307/308 target too): the URL the page originally asked
    # for, the first of the chain. Chromium then says "(redirected from '...')".
    redirected_from: str | None = None
    # The page's origin (the Origin of the chain's first leg). After a redirect across origins the browser
    # sends `Origin: null`, yet Chromium's message names the page's origin; used only when Origin is `null`.
    page_origin: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """What the server answered: the status and headers of ``http.response.start``.

    Header names are kept as spelled on the wire: Firefox reports two ``Access-Control-Allow-Origin`` lines
    as "Multiple CORS header" only when both are spelled exactly so (uvicorn sends every name lower-case).
    """

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
    browser_message_xhr: str | None = None
    firefox_console: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Verdict:
    """The browser's decision on one request leg (preflight or actual)."""

    verdict: VerdictName
    # Chrome DevTools `Network.CorsError` name (e.g. "PreflightMissingAllowOriginHeader"); None when allowed.
    reason: str | None
    browser_message: str | None  # Chromium's console text, exactly (fetch's when initiator is fetch_or_xhr)
    firefox_message: str | None  # Firefox's first console line for the failure; None when allowed
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
    # Seconds Chromium caches this preflight's result (None for actual requests, 0 for not cached).
    preflight_cache_seconds: int | None = None
    # Structured details behind some warnings; "unexposed_headers": response header names the page cannot read.
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    # The page API that made the request, as far as the server can tell (see Initiator).
    initiator: Initiator = "fetch_or_xhr"
    # Chromium's console text had the page used XMLHttpRequest: set when initiator is fetch_or_xhr and blocked.
    browser_message_xhr: str | None = None
    # Every CORS console line Firefox prints for this leg, in order (a warning even when allowed).
    firefox_console: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The verdict as plain JSON-ready data (the keys the structlog events use)."""
        credentialed = self.if_credentialed
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "browser_message": self.browser_message,
            "browser_message_xhr": self.browser_message_xhr,
            "firefox_message": self.firefox_message,
            "firefox_console": list(self.firefox_console),
            "initiator": self.initiator,
            "credentials": self.credentials,
            "if_credentialed": None
            if credentialed is None
            else {
                "verdict": credentialed.verdict,
                "reason": credentialed.reason,
                "browser_message": credentialed.browser_message,
                "browser_message_xhr": credentialed.browser_message_xhr,
                "firefox_message": credentialed.firefox_message,
                "firefox_console": list(credentialed.firefox_console),
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
    "WORDING_REQUEST_HEADERS",
    "Caveat",
    "Credentials",
    "Headers",
    "Initiator",
    "Outcome",
    "Request",
    "Response",
    "Verdict",
    "VerdictName",
    "cors_unsafe_request_header_names",
    "evaluate",
    "infer_initiator",
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
# Sec-Fetch-Dest values that name the initiator outright (the rest, `empty` included, do not).
_DEST_INITIATORS: dict[str, Initiator] = {
    "script": "script",
    "image": "image",
    "font": "font",
    "style": "style",
    "audio": "audio",
    "video": "video",
    "track": "track",
}

_ACAO_AND_ORIGIN = ("access-control-allow-origin", "origin")
# The request and response headers that decide a leg's verdict, reason, requested method and console wording:
# the judges below see only these (`_Exchange.decisive`, `_request_headers`), so a rule that reads another
# header finds nothing until its name is listed here. Callers that remember decisions key them on exactly these
# headers (with the method, the status and the request URL's origin), so a new rule can never be served a stale
# decision. Names are lower-case; the wording of explanations and warnings may read any response header.
DECISIVE_REQUEST_HEADERS = frozenset(
    {
        "origin",
        "cookie",
        "sec-fetch-mode",
        "access-control-request-method",
        "access-control-request-headers",
        # Credentials mode include (cross-site, Chromium 156 / Firefox ESR 153).
        "sec-fetch-storage-access",
    }
)
# The request headers that name the initiator in Chromium's message (`Access to script at ...`): they change the
# wording, never the verdict, reason or requested method, so decisions need not be keyed on them.
WORDING_REQUEST_HEADERS = frozenset({"sec-fetch-dest", "accept", "cache-control"})
_READ_REQUEST_HEADERS = DECISIVE_REQUEST_HEADERS | WORDING_REQUEST_HEADERS
DECISIVE_RESPONSE_HEADERS = frozenset(
    {
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "location",
    }
)


class _AcaoLines(NamedTuple):
    any: int  # Access-Control-Allow-Origin lines, whatever their spelling
    exact: int  # lines named exactly `Access-Control-Allow-Origin` (Firefox counts only those)


def _fold(headers: Headers) -> tuple[dict[str, str], _AcaoLines]:
    """Headers as Chromium's GetNormalizedHeader sees them: lower-case names, LWS-trimmed values joined with ", ".

    Also counts the Access-Control-Allow-Origin lines (Firefox words several lines differently).
    """
    folded: dict[str, str] = {}
    lines = exact = 0
    for name, value in headers:
        key = name.lower()
        if key == "access-control-allow-origin":
            lines += 1
            exact += name == "Access-Control-Allow-Origin"
        value = value.strip(LWS)
        previous = folded.get(key)
        folded[key] = value if previous is None else f"{previous}, {value}"
    return folded, _AcaoLines(lines, exact)


def infer_initiator(headers: Headers) -> Initiator:
    """The page API that made a request with these headers, as far as a server can tell."""
    return _initiator(_request_headers(headers))


def _initiator(folded: dict[str, str]) -> Initiator:
    dest = folded.get("sec-fetch-dest", "").lower()
    known = _DEST_INITIATORS.get(dest)
    if known is not None:
        return known
    # EventSource sends Accept: text/event-stream and Cache-Control: no-cache (both browsers); a fetch() that
    # sets only the Accept (fetch-event-source and other SSE libraries) is still a fetch.
    if (
        folded.get("accept", "").lower() == "text/event-stream"
        and "no-cache" in folded.get("cache-control", "").lower()
    ):
        return "resource"
    return "fetch_or_xhr"


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
    acao_lines: _AcaoLines
    exception: bool  # no response started: the judged 500 is the server-error layer's
    initiator: Initiator
    named_origin: str  # the origin Chromium's message names: the page's, also after a tainting redirect

    @property
    def tainted(self) -> bool:
        """`Origin: null` because an earlier hop redirected across origins (not an opaque page)."""
        return self.origin == "null" and self.named_origin != "null"

    @property
    def redirect(self) -> bool:
        return is_redirect(self.status, self.decisive.get("location"))


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
    if exchange.redirect:
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
    if exchange.redirect and location and location_has_credentials(location):
        # Chromium 156 leaves the hint empty: the message reads "Redirect location ''".
        return _Finding("RedirectContainsCredentials", "")
    return _Finding(None)


def _firefox_finding(exchange: _Exchange, include: bool, finding: _Finding) -> _Finding:
    """Firefox's first failure, where its order differs from Chromium's.

    Its CORS listener checks a redirected preflight's Access-Control-Allow-Origin (and credentials) before it
    refuses the redirect; everywhere else it fails the same check Chromium does.
    """
    if finding.reason == "PreflightDisallowedRedirect":
        access = _check_access(exchange, include)
        if access.reason is not None:
            return _Finding("Preflight" + access.reason, access.hint)
    return finding


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


def _not_cors(
    request: Request, origin: str | None, explanation: str, credentials: Credentials, initiator: Initiator
) -> Verdict:
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
        initiator=initiator,
    )


def evaluate(request: Request, response: Response | None) -> Verdict:
    """Predict what Chromium (and Firefox) do with ``request`` answered by ``response``.

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
            "fetch_or_xhr",
        )


def _request_headers(headers: Headers) -> dict[str, str]:
    """The few request headers the engine reads, folded like `_fold` (browsers send a dozen others)."""
    folded: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key in _READ_REQUEST_HEADERS:
            value = value.strip(LWS)
            previous = folded.get(key)
            folded[key] = value if previous is None else f"{previous}, {value}"
    return folded


def _credentials(request: Request, folded: dict[str, str], preflight: bool) -> Credentials:
    if request.credentials is not None:
        return request.credentials
    # Chromium 156 sends Sec-Fetch-Storage-Access only on a cross-site request whose credentials mode is include
    # (never on its preflight; Firefox ESR 153 on both); a preflight never carries cookies.
    if "sec-fetch-storage-access" in folded or (not preflight and "cookie" in folded):
        return "include"
    return "unknown"


def _not_cors_reason(request: Request, folded: dict[str, str], origin: str | None, preflight: bool) -> str | None:
    """Why the browser applies no CORS check to this leg, or None when it does."""
    if origin is None:
        return "The request has no `Origin` header, so no browser page made it cross-origin and CORS does not apply."
    if origin == _url_origin(request.url):
        return (
            f"`Origin: {_show(origin)}` is the request URL's own origin: a same-origin request, so CORS does not apply."
        )
    mode = folded.get("sec-fetch-mode")
    if mode is not None and mode != "cors" and not preflight:
        return (
            f"`Sec-Fetch-Mode: {_show(mode)}` says the browser made this request without CORS (a navigation, a form "
            "submission or a no-cors subresource), so it applies no CORS check to the response."
        )
    return None


def _evaluate(request: Request, response: Response | None) -> Verdict:
    folded = _request_headers(request.headers)
    origin = folded.get("origin")
    preflight = request.preflight
    if preflight is None:
        preflight = request.method == "OPTIONS" and origin is not None and "access-control-request-method" in folded
    credentials = _credentials(request, folded, preflight)
    initiator = request.initiator or _initiator(folded)
    skipped = _not_cors_reason(request, folded, origin, preflight)
    if skipped is not None or origin is None:
        return _not_cors(request, origin, skipped or "", credentials, initiator)
    exchange = _exchange(request, response, folded, origin, preflight, initiator)
    judge = _judge_preflight if preflight else _judge_actual
    include = credentials == "include"
    finding = judge(exchange, include)
    if_credentialed = None
    if credentials == "unknown":
        credentialed = judge(exchange, True)
        if credentialed.reason != finding.reason:
            if_credentialed = _outcome(exchange, credentialed)
    return _verdict(exchange, finding, credentials, if_credentialed)


def _exchange(
    request: Request,
    response: Response | None,
    folded: dict[str, str],
    origin: str,
    preflight: bool,
    initiator: Initiator,
) -> _Exchange:
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
    page = request.page_origin
    named = page if origin == "null" and isinstance(page, str) and page else origin
    return _Exchange(
        request, preflight, origin, method, requested_headers, status, response_headers, judged,
        acao_lines, response is None, initiator, named,
    )  # fmt: skip


class _Messages(NamedTuple):
    chromium: str | None
    chromium_xhr: str | None
    firefox: tuple[str, ...]


def _messages(exchange: _Exchange, finding: _Finding, include: bool) -> _Messages:
    """Chromium's line (and XMLHttpRequest's, when the server cannot tell), and Firefox's lines."""
    firefox = _firefox_lines(exchange, _firefox_finding(exchange, include, finding))
    if finding.reason is None:
        return _Messages(None, None, firefox)
    chromium = _chromium(exchange, finding, exchange.initiator)
    xhr = _chromium(exchange, finding, "XMLHttpRequest") if exchange.initiator == "fetch_or_xhr" else None
    return _Messages(chromium, xhr, firefox)


def _outcome(exchange: _Exchange, finding: _Finding) -> Outcome:
    messages = _messages(exchange, finding, True)
    return Outcome(
        verdict="blocked" if finding.reason else "allowed",
        reason=finding.reason,
        browser_message=messages.chromium,
        firefox_message=messages.firefox[0] if finding.reason and messages.firefox else None,
        fix=_describe(exchange, finding, True).fix,
        browser_message_xhr=messages.chromium_xhr,
        firefox_console=messages.firefox,
    )


def _verdict(exchange: _Exchange, finding: _Finding, credentials: Credentials, alternative: Outcome | None) -> Verdict:
    include = credentials == "include"
    description = _describe(exchange, finding, include)
    messages = _messages(exchange, finding, include)
    caveats, hidden = _caveats(exchange, finding, credentials)
    request = exchange.request
    return Verdict(
        verdict="blocked" if finding.reason else "allowed",
        reason=finding.reason,
        browser_message=messages.chromium,
        firefox_message=messages.firefox[0] if finding.reason and messages.firefox else None,
        credentials=credentials,
        if_credentialed=alternative,
        warnings=tuple(caveats),
        explanation=_explanation(exchange, finding, description, alternative),
        fix=description.fix,
        preflight=exchange.preflight,
        origin=exchange.origin,
        url=request.url,
        method=request.method,
        requested_method=exchange.method if exchange.preflight else None,
        requested_headers=exchange.requested_headers,
        failed_parameter=finding.hint,
        decisive_headers=description.decisive,
        preflight_cache_seconds=_cache_seconds(exchange, finding),
        extra={"unexposed_headers": hidden} if hidden else {},
        initiator=exchange.initiator,
        browser_message_xhr=messages.chromium_xhr,
        firefox_console=messages.firefox,
    )


def _explanation(exchange: _Exchange, finding: _Finding, description: _Description, alternative: Outcome | None) -> str:
    """The cause first, then the browser's mechanics, then what credentials would change."""
    parts = [description.cause]
    if description.mechanics:
        parts.append(description.mechanics)
    if exchange.preflight and finding.reason:
        # The server log shows an OPTIONS and nothing after it; say why the actual request never comes.
        parts.append(f"The browser stops here: it never sends the actual `{_show(exchange.method)}` request.")
    if alternative is not None:
        # Never a silent guess: say which mode the verdict assumes and what the other one does.
        then = f"the browser blocks it ({alternative.reason})" if alternative.reason else "it passes"
        parts.append(
            "The server cannot tell whether the page sends credentials, so this verdict assumes it does not; with "
            f"`credentials: 'include'` (or `withCredentials`) {then}."
        )
    return " ".join(parts)


def _cache_seconds(exchange: _Exchange, finding: _Finding) -> int | None:
    if not exchange.preflight:
        return None
    if finding.reason is not None:
        return 0  # a failed preflight is never cached
    return parse_max_age(exchange.response.get("access-control-max-age"))


def _chromium(exchange: _Exchange, finding: _Finding, initiator: Initiator) -> str:
    request = exchange.request
    return chromium_message(
        finding.reason or "InvalidResponse",
        url=request.url,
        origin=exchange.named_origin,
        hint=finding.hint,
        initiator=initiator,
        redirected_from=request.redirected_from,
    )


def _firefox_lines(exchange: _Exchange, finding: _Finding) -> tuple[str, ...]:
    url = exchange.request.url
    if finding.reason is None:
        return (FIREFOX_AUTHORIZATION_WARNING.format(url=url),) if finding.lenient else ()
    first = firefox_message(
        finding.reason, url=url, hint=finding.hint, status=exchange.status, exact_acao_lines=exchange.acao_lines.exact
    )
    return firefox_console(
        first,
        url=url,
        status=exchange.status,
        preflight=exchange.preflight,
        redirect=exchange.redirect,
        access_failed=finding.reason != "PreflightDisallowedRedirect",
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


def _origin_difference(acao: str, exchange: _Exchange) -> str:
    """Why a single ACAO value is not the request's origin, as precisely as the two strings allow."""
    origin = exchange.origin
    if exchange.tainted:
        return (
            "does not match: after the redirect to another origin the browser sends `Origin: null`, which only "
            f"`*` or `null` matches, not the page's origin `{_show(exchange.named_origin)}`."
        )
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


class _Description(NamedTuple):
    cause: str  # one sentence: what the server did
    mechanics: str  # what the browser does about it ("" when the cause says it all)
    fix: str | None
    decisive: tuple[str, ...]  # the headers that decided


class _Context(NamedTuple):
    """What every describer needs; values shown to a human are escaped and cut (they are attacker-controlled)."""

    exchange: _Exchange
    finding: _Finding
    include: bool
    origin: str  # the request's origin, shown
    leg: str  # "preflight response" or "response"
    on_target: str  # " on the response to `GET /path`."

    @property
    def response(self) -> dict[str, str]:
        return self.exchange.response

    @property
    def credentials_too(self) -> str:
        return " and `Access-Control-Allow-Credentials: true`" if self.include else ""

    def send_acao(self) -> str:
        """The fix for a missing or wrong Access-Control-Allow-Origin."""
        if self.exchange.tainted:
            # Origin: null after a cross-origin redirect: naming the page's origin can never match.
            direct = f"Have the page call `{_show(self.exchange.request.url)}` directly instead of through the redirect"
            if self.include:
                # `null` would match, but so would every sandboxed iframe and data: page: never advise it.
                return direct + ": no origin your server names can match the `Origin: null` it sends after the hop."
            return f"{direct}, or send `Access-Control-Allow-Origin: *`{self.on_target}"
        return f"Send `Access-Control-Allow-Origin: {self.origin}`{self.credentials_too}{self.on_target}"


def _describe(exchange: _Exchange, finding: _Finding, include: bool) -> _Description:
    """Plain-English cause and mechanics, the fix, and the headers that decided."""
    reason = finding.reason
    if reason is None:
        return _Description(_describe_allowed(exchange), "", None, _ACAO_AND_ORIGIN)
    context = _Context(
        exchange,
        finding,
        include,
        _show(exchange.origin),
        "preflight response" if exchange.preflight else "response",
        f" on the response to {_target(exchange)}.",
    )
    describer = _DESCRIBERS.get(reason) or _DESCRIBERS.get(reason.removeprefix("Preflight"))
    if describer is None:  # pragma: no cover - every reason a judge returns has a describer
        return _Description("The browser rejected the response.", "", None, ())
    return describer(context)


def _missing_acao(c: _Context) -> _Description:
    exchange = c.exchange
    if exchange.exception:
        return _Description(
            "An exception escaped before any response started, so the outer server-error layer answered a 500 "
            "without CORS headers.",
            "The page never sees that 500: the browser reports a missing `Access-Control-Allow-Origin` instead.",
            f"Fix the exception, or make the error response carry `Access-Control-Allow-Origin: {c.origin}`"
            f"{c.credentials_too} (CORS headers must also be added to the 500 for {_target(exchange)}).",
            _ACAO_AND_ORIGIN,
        )
    status_note = f" (status {exchange.status})" if exchange.status != 200 else ""
    mechanics = (
        "Without it the browser treats the preflight as failed."
        if exchange.preflight
        else f"Without it the browser does not let the page at `{_show(exchange.named_origin)}` read the response."
    )
    if exchange.tainted:
        mechanics += (
            " After the redirect to another origin the browser sent `Origin: null`, which only `*` or `null` match."
        )
    return _Description(
        f"The {c.leg}{status_note} has no `Access-Control-Allow-Origin` header.",
        mechanics,
        c.send_acao(),
        _ACAO_AND_ORIGIN,
    )


def _wildcard_with_credentials(c: _Context) -> _Description:
    return _Description(
        f"The {c.leg} allows every origin with `Access-Control-Allow-Origin: *`, but the request carries "
        "credentials (cookies or HTTP auth).",
        "`*` never works with credentials: the header must name the page's origin.",
        f"Replace `Access-Control-Allow-Origin: *` with `Access-Control-Allow-Origin: {c.origin}` plus "
        f"`Access-Control-Allow-Credentials: true` and `Vary: Origin`" + c.on_target,
        _ACAO_AND_ORIGIN,
    )


def _multiple_origins(c: _Context) -> _Description:
    lines = "several `Access-Control-Allow-Origin` lines" if c.exchange.acao_lines.any > 1 else "a list"
    return _Description(
        f"The {c.leg} sends {lines} (`{_show(_raw_acao(c))}`).",
        "The header must hold exactly one origin (or `*`); the browser joins repeated lines with `, `.",
        c.send_acao(),
        _ACAO_AND_ORIGIN,
    )


def _wrong_origin(c: _Context) -> _Description:
    acao = _raw_acao(c)
    return _Description(
        f"`Access-Control-Allow-Origin: {_show(acao)}` {_origin_difference(acao, c.exchange)}",
        "",
        c.send_acao(),
        _ACAO_AND_ORIGIN,
    )


def _credentials_not_allowed(c: _Context) -> _Description:
    acac = c.response.get("access-control-allow-credentials")
    found = "is missing" if acac is None else f"is `{_show(acac)}`"
    return _Description(
        f"The {c.leg} names the origin, but `Access-Control-Allow-Credentials` {found}, and the request carries "
        "credentials.",
        "With credentials the browser requires that header to be exactly `true` (lower-case).",
        "Send `Access-Control-Allow-Credentials: true`" + c.on_target,
        ("access-control-allow-credentials", "origin"),
    )


def _preflight_status(c: _Context) -> _Description:
    status = c.exchange.status
    hint = ""
    if status == 400:
        hint = " Starlette's CORSMiddleware answers 400 when it rejects the origin, method or headers."
    elif status in (401, 403):
        hint = " Preflights never carry credentials, so authentication must let `OPTIONS` through."
    elif status in (404, 405):
        hint = " No CORS layer answered the preflight, so the router's own answer to `OPTIONS` came back."
    return _Description(
        f"The preflight answered {status}.{hint}",
        "A preflight must return a 2xx status, whatever its headers say.",
        f"Answer `OPTIONS {_path(c.exchange.request.url)}` with status 200 or 204 (and its CORS headers).",
        ("access-control-allow-origin",),
    )


def _preflight_redirect(c: _Context) -> _Description:
    location = _show(c.response.get("location", ""))
    return _Description(
        f"The preflight was answered with a {c.exchange.status} redirect to `{location}`.",
        "Browsers never follow redirects on a preflight.",
        f"Answer `OPTIONS {_path(c.exchange.request.url)}` directly with 200 or 204, or make the page call the "
        f"final URL (`{location}`), e.g. fix a missing or extra trailing slash.",
        ("location",),
    )


def _unparsable_methods(c: _Context) -> _Description:
    return _Description(
        f"`Access-Control-Allow-Methods: {_show(c.response.get('access-control-allow-methods'))}` does not parse: "
        f"`{_show(c.finding.hint)}` is not a method name (a token).",
        "The browser rejects a preflight whose list does not parse, whatever else it allows.",
        f"Send `Access-Control-Allow-Methods: {_show(c.exchange.method)}` (a comma-separated list of method names)"
        + c.on_target,
        ("access-control-allow-methods",),
    )


def _unparsable_headers(c: _Context) -> _Description:
    wanted = _show(", ".join(c.exchange.requested_headers)) or "x-example"
    return _Description(
        f"`Access-Control-Allow-Headers: {_show(c.response.get('access-control-allow-headers'))}` does not parse: "
        f"`{_show(c.finding.hint)}` is not a header name (a token).",
        "The browser rejects a preflight whose list does not parse, whatever else it allows.",
        f"Send `Access-Control-Allow-Headers: {wanted}` (a comma-separated list of header names)" + c.on_target,
        ("access-control-allow-headers",),
    )


def _method_not_allowed(c: _Context) -> _Description:
    method = c.exchange.method
    acam = c.response.get("access-control-allow-methods")
    methods = split_list(acam) if acam else []
    mechanics = "Beyond GET, HEAD and POST the browser sends only a method the preflight lists exactly."
    if any(item.upper() == method.upper() for item in methods):
        mechanics = "Methods are compared case-sensitively: a page's `patch` needs `patch`, not `PATCH`."
    elif c.include and "*" in methods:
        mechanics = "With credentials, `*` is a literal method name, not a wildcard."
    listed = (
        f"answered `Access-Control-Allow-Methods: {_show(acam)}`"
        if acam is not None
        else "has no `Access-Control-Allow-Methods` header"
    )
    return _Description(
        f"The page wants to send `{_show(method)}`, but the preflight response {listed}.",
        mechanics,
        f"Send `Access-Control-Allow-Methods: {_show(', '.join([*methods, method]))}`" + c.on_target,
        ("access-control-allow-methods", "access-control-request-method"),
    )


def _header_not_allowed(c: _Context) -> _Description:
    acah = c.response.get("access-control-allow-headers")
    allowed = split_list(acah) if acah else []
    mechanics = "Every header a page sets beyond the CORS-safelisted ones must be listed there."
    if c.include and "*" in allowed:
        mechanics = "With credentials, `*` is a literal header name, not a wildcard."
    missing = _show(", ".join(f"`{name}`" for name in c.finding.missing))
    listed = (
        f"answered `Access-Control-Allow-Headers: {_show(acah)}`"
        if acah is not None
        else "has no `Access-Control-Allow-Headers` header"
    )
    requested = c.exchange.requested_headers
    value = ", ".join(dict.fromkeys([*(item for item in allowed if item != "*"), *requested]))
    return _Description(
        f"The page sends the header(s) {missing}, but the preflight response {listed}.",
        mechanics,
        f"Send `Access-Control-Allow-Headers: {_show(value)}`" + c.on_target,
        ("access-control-allow-headers", "access-control-request-headers"),
    )


def _redirect_with_credentials(c: _Context) -> _Description:
    return _Description(
        f"The response redirects to `{_show(c.response.get('location', ''))}`, which carries a username or password.",
        "Browsers refuse to follow such a redirect for a cross-origin request.",
        "Remove the `user:password@` part from the `Location` header" + c.on_target,
        ("location",),
    )


def _raw_acao(c: _Context) -> str:
    return c.response.get("access-control-allow-origin") or ""


# Reason (with or without its "Preflight" prefix) -> the function that explains it.
_DESCRIBERS: dict[str, Callable[[_Context], _Description]] = {
    "MissingAllowOriginHeader": _missing_acao,
    "WildcardOriginNotAllowed": _wildcard_with_credentials,
    "MultipleAllowOriginValues": _multiple_origins,
    "InvalidAllowOriginValue": _wrong_origin,
    "AllowOriginMismatch": _wrong_origin,
    "InvalidAllowCredentials": _credentials_not_allowed,
    "PreflightInvalidStatus": _preflight_status,
    "PreflightDisallowedRedirect": _preflight_redirect,
    "InvalidAllowMethodsPreflightResponse": _unparsable_methods,
    "InvalidAllowHeadersPreflightResponse": _unparsable_headers,
    "MethodDisallowedByPreflightResponse": _method_not_allowed,
    "HeaderDisallowedByPreflightResponse": _header_not_allowed,
    "RedirectContainsCredentials": _redirect_with_credentials,
}


def _describe_allowed(exchange: _Exchange) -> str:
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
    if exchange.redirect:
        return (
            f"The {exchange.status} redirect passes the CORS check (`Access-Control-Allow-Origin: {acao}` {matched}), "
            f"so the browser follows it to `{_show(exchange.response.get('location'))}`, which must pass its own "
            "check."
        )
    return f"`Access-Control-Allow-Origin: {acao}` {matched}, so the browser lets the page read the response."


def _caveats(exchange: _Exchange, finding: _Finding, credentials: Credentials) -> tuple[list[Caveat], list[str]]:
    """The warnings, and the names of the response headers the page cannot read."""
    hidden: list[str] = []
    caveats: list[Caveat] = []
    acao = exchange.response.get("access-control-allow-origin")
    if exchange.preflight:
        _preflight_caveats(exchange, finding, credentials, caveats)
    elif finding.reason is None and not exchange.redirect:
        # A followed redirect's headers never reach the page, so only a final response can hide any.
        hidden = _exposure_caveats(exchange, credentials, caveats)
    _vary_caveat(exchange, finding, caveats)
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


def _vary_caveat(exchange: _Exchange, finding: _Finding, out: list[Caveat]) -> None:
    response = exchange.response
    acao = response.get("access-control-allow-origin")
    # Only worth saying when the echo is part of a working (or almost working) answer.
    relevant = finding.reason is None or finding.reason.endswith("InvalidAllowCredentials")
    if relevant and acao is not None and acao == exchange.origin and acao != "null":
        vary = {item.lower() for item in split_list(response.get("vary", ""))}
        if "origin" not in vary and "*" not in vary:
            out.append(
                Caveat(
                    "missing_vary_origin",
                    "`Access-Control-Allow-Origin` echoes the request's origin without `Vary: Origin`; a shared "
                    "cache may replay this response to another origin, which then fails. Add `Vary: Origin`.",
                )
            )


def _preflight_caveats(exchange: _Exchange, finding: _Finding, credentials: Credentials, out: list[Caveat]) -> None:
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
        _wildcard_list_caveats(exchange, out)
    if finding.reason is None:
        _max_age_caveats(exchange.response.get("access-control-max-age"), out)


def _wildcard_list_caveats(exchange: _Exchange, out: list[Caveat]) -> None:
    for header, noun in (("access-control-allow-methods", "method"), ("access-control-allow-headers", "header")):
        value = exchange.response.get(header)
        if value is not None and "*" in split_list(value):
            out.append(
                Caveat(
                    f"wildcard_{noun}s_with_credentials",
                    f"`{header.title()}: *` is a wildcard only without credentials; with "
                    f"`credentials: 'include'` it is the literal {noun} name `*`.",
                )
            )


def _max_age_caveats(raw: str | None, out: list[Caveat]) -> None:
    if raw is None:
        return
    asked = max_age_seconds(raw)
    if asked is None:
        if not raw.lstrip("-").isdigit():
            out.append(
                Caveat(
                    "invalid_max_age",
                    f"`Access-Control-Max-Age: {_show(raw)}` is not a number of seconds: Chromium caches the "
                    "preflight for its 5-second default, Firefox does not cache it at all.",
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
        and not (name == "allow" and exchange.status == 405)  # a 405's Allow is for clients, not this page
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

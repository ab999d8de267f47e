"""Fixes proven to work: the smallest change of CORSMiddleware's options that lets the *whole* exchange through.

A leg tells what the page asked for: the method and headers (a preflight names them in
``Access-Control-Request-*``), the URL and the redirect it follows. From that, :func:`propose` rebuilds the
exchange as the browser plays it — preflight when one is needed, actual request, each redirect hop (a 307/308
preflights again at its target) — for every credentials mode the page may use: the one the leg proves, or both
when the server cannot tell. Each request goes through a *real* middleware of the app's own CORS class, built
with the proposed options around a stub of the route (:func:`corstrace._config.stub_route`, answering the status
and ``Location`` the app answered), and each answer is judged by the engine (:func:`corstrace.engine.evaluate`).
The first refusal names the next option to change (the CORS layer's own reason, replayed on the candidate
options); the search stops when every leg passes (the fix is *verified*) or nothing more helps.

Changes a browser-facing server must not make are refused, and said so: ``allow_origins=["*"]`` with
``allow_credentials=True`` (Starlette then echoes every website's origin with credentials allowed), allowing
``Origin: null``, or an origin no browser sends. A lower-case method such as ``patch`` is fixed on the page:
fetch() sends it as written, and the route, registered as ``PATCH``, would answer 405 whatever CORS allows.

Runs when an event is built (once per distinct leg: bodies are remembered), never on the request path. The
middleware for each ``(settings, change)`` is built once (:meth:`corstrace._config.Settings.variant`), and the
replay drives it synchronously: an ASGI call that has to wait for anything is not replayed, only reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

from corstrace import _config
from corstrace._exchange import Hop
from corstrace._facts import LegFacts, Texts
from corstrace._fetch import (
    BODY_HEADERS,
    REDIRECT_STATUSES,
    SAFELISTED_METHODS,
    is_token,
    redirect_becomes_get,
    resolve_location,
)
from corstrace._inprocess import answer
from corstrace._limits import HEADER_NAME_LIMIT, MAX_HEADERS, ORIGIN_LIMIT
from corstrace.engine import (
    Request,
    Response,
    Verdict,
    cors_unsafe_request_header_names,
    evaluate,
    serialize_origin,
)

Mode = Literal["omit", "include"]
BOTH: tuple[Mode, ...] = ("omit", "include")
_MAX_STEPS = 8  # each step fixes one refusal; an exchange has far fewer
_MAX_HOPS = 8
_CREDENTIAL_REASONS = frozenset({"InvalidAllowCredentials", "WildcardOriginNotAllowed"})
# Removed from a request whose redirect turns it into a GET (Fetch "request-body-header name").
_PRIVATE_NETWORK = "access-control-request-private-network"


class Exchange(NamedTuple):
    """What the page asked for, as far as one leg tells: replayed the way the browser sends it."""

    origin: str  # the page's origin
    method: str  # what fetch() sends (a lower-case `patch` is replayed as the page should write it)
    url: str  # the URL the page fetched: a redirect chain's first URL
    unsafe_headers: tuple[str, ...]  # lower-cased names the browser preflights (Access-Control-Request-Headers)
    private_network: bool
    routes: tuple[tuple[str, int, str | None], ...]  # (url, status, location) the app answered; others: 200
    page_method: str | None = None  # the method as the page wrote it, when the page itself must change
    preflighted: bool = False  # the leg was a preflight: the browser preflights this request


class ReplayLeg(NamedTuple):
    preflight: bool
    method: str  # the actual request's method (Access-Control-Request-Method on a preflight)
    url: str
    origin: str  # the Origin header sent: `null` after a tainting redirect
    unsafe_headers: tuple[str, ...]
    private_network: bool
    first_url: str | None  # set on a hop after a redirect: what Chromium names in "redirected from"


class Failure(NamedTuple):
    leg: ReplayLeg
    verdict: Verdict | None  # None: the leg could not be replayed in-process


class Search(NamedTuple):
    change: dict[str, Any]
    verified: bool
    failure: Failure | None = None
    refusal: str | None = None  # why the change the refusal asks for is not proposed
    named: bool = False  # a wildcard was replaced by named origins (credentials need them)


@dataclass(frozen=True, slots=True)
class Fix:
    """A fix as the event shows it: ``text`` (the event's ``fix``), ``code`` (what "Copy fix" copies)."""

    text: str
    code: str | None
    verified: bool


@dataclass(frozen=True, slots=True)
class Proposal:
    fix: Fix | None  # for the verdict's credentials mode(s); None: no configuration change (see the engine's fix)
    credentialed: Fix | None = None  # for a request with credentials, when the server cannot tell


# --- What the page asked for ----------------------------------------------------------------------


def exchange_of(facts: LegFacts, texts: Texts, verdict: Verdict) -> Exchange:
    """The exchange ``facts`` is one leg of (its URL unredacted: the replay never leaves the process)."""
    url = facts.target.url()
    hop = facts.hop
    if facts.preflight:
        method = verdict.requested_method or ""
        private = any(name.lower() == _PRIVATE_NETWORK for name, _ in texts.request)
        page_method = method if method != method.upper() else None
        exchange = Exchange(facts.origin, method.upper(), url, verdict.requested_headers, private, (), page_method,
                            True)  # fmt: skip
        # A preflight at a 307/308 target: the chain before it leads here with the method kept.
        return exchange if hop is None else _after(exchange, hop, url, 307)
    unsafe = tuple(cors_unsafe_request_header_names(texts.request))
    routes = ((url, facts.status or 200, _location(url, texts, facts.status)),)
    exchange = Exchange(facts.origin, facts.method, url, unsafe, False, routes)
    return exchange if hop is None else _after(exchange, hop, url, 307 if hop.method == facts.method else 303)


def _after(exchange: Exchange, hop: Hop, url: str, status: int) -> Exchange:
    """``exchange`` as the redirect chain ``hop`` ends: from its first URL, each hop answering ``status``.

    The hop tells the chain's first URL and the one that redirected here; a longer chain's middle is not known.
    """
    chain = list(dict.fromkeys([hop.first_url, hop.from_url, url]))
    routes = exchange.routes + tuple((here, status, there) for here, there in zip(chain, chain[1:], strict=False))
    return exchange._replace(origin=hop.origin, method=hop.method.upper(), url=hop.first_url, routes=routes,
                             preflighted=False)  # fmt: skip


def _location(url: str, texts: Texts, status: int | None) -> str | None:
    if status not in REDIRECT_STATUSES:
        return None
    for name, value in texts.response:
        if name.lower() == "location":
            return resolve_location(url, value)
    return None


def _not_replayable(exchange: Exchange) -> str | None:
    """Why no configuration change may be proposed for this exchange, when a browser never sends it."""
    origin = exchange.origin
    if origin == "null":
        return (
            "the page's origin is `null` (a sandboxed iframe, a file:// page, or a redirect that crossed origins): "
            "allowing `null` would let any sandboxed page in, so serve the page from a real origin instead"
        )
    if len(origin) > ORIGIN_LIMIT or not origin.isascii() or serialize_origin(origin) != origin:
        return "the request's `Origin` is not an origin a browser sends"
    names = [exchange.method, *exchange.unsafe_headers]
    if len(names) > MAX_HEADERS or not all(is_token(name) and len(name) <= HEADER_NAME_LIMIT for name in names):
        return "the request's method or header names are not ones a browser sends"
    return None


# --- The replay -----------------------------------------------------------------------------------


def _headers(leg: ReplayLeg) -> tuple[tuple[str, str], ...]:
    headers = [("origin", leg.origin)]
    if leg.preflight:
        headers.append(("access-control-request-method", leg.method))
        if leg.unsafe_headers:
            headers.append(("access-control-request-headers", ",".join(leg.unsafe_headers)))
        if leg.private_network:
            headers.append((_PRIVATE_NETWORK, "true"))
    return tuple(headers)


def _answer(cors: Any, leg: ReplayLeg, route: tuple[int, str | None]) -> Response | None:
    """``cors`` called in-process with ``leg``'s request; None when it cannot answer without waiting."""
    try:
        scope = _scope(leg, route)
    except (ValueError, UnicodeError):  # a URL or header no ASGI server would have handed over
        return None
    return answer(cors, scope)


def _scope(leg: ReplayLeg, route: tuple[int, str | None]) -> dict[str, Any]:
    """The ASGI scope a server would build for ``leg``; the stub route answers ``route`` (status, location)."""
    parts = urlsplit(leg.url)
    status, location = route
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in _headers(leg)]
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": "OPTIONS" if leg.preflight else leg.method, "scheme": parts.scheme,
        "path": parts.path or "/", "raw_path": (parts.path or "/").encode("latin-1"),
        "query_string": parts.query.encode("latin-1"), "root_path": "",
        "headers": [(b"host", parts.netloc.encode("latin-1")), *headers],
        "client": ("127.0.0.1", 0), "server": (parts.hostname or "localhost", parts.port or 80),
        "corstrace.stub": (status, [(b"location", location.encode("latin-1"))] if location else []),
    }  # fmt: skip


def _judge(settings: _config.Settings, leg: ReplayLeg, exchange: Exchange, mode: Mode) -> Failure | Response:
    if settings.cors.app is not _config.stub_route:
        return Failure(leg, None)  # never the app's own middleware: the replay must not reach a real route
    route = next(((s, loc) for url, s, loc in exchange.routes if url == leg.url), (200, None))
    response = _answer(settings.cors, leg, route)
    if response is None:
        return Failure(leg, None)
    request = Request(
        "OPTIONS" if leg.preflight else leg.method, leg.url, _headers(leg), preflight=leg.preflight,
        credentials=mode, redirected_from=leg.first_url, page_origin=exchange.origin,
    )  # fmt: skip
    verdict = evaluate(request, response)
    return Failure(leg, verdict) if verdict.verdict == "blocked" else response


def replay(settings: _config.Settings, exchange: Exchange, mode: Mode) -> Failure | None:
    """The first leg the browser would block with ``settings``, in credentials ``mode``; None when all pass.

    ``settings`` is a :meth:`~corstrace._config.Settings.variant`: its middleware wraps the stub route.
    """
    url, method, origin, unsafe = exchange.url, exchange.method, exchange.origin, exchange.unsafe_headers
    first_url: str | None = None
    # A preflight leg proves the browser preflights, whatever made it (private network access, for one).
    preflighted = exchange.preflighted
    for _ in range(_MAX_HOPS):
        if preflighted or method not in SAFELISTED_METHODS or unsafe:
            leg = ReplayLeg(True, method, url, origin, unsafe, exchange.private_network, first_url)
            answer = _judge(settings, leg, exchange, mode)
            if isinstance(answer, Failure):
                return answer
        leg = ReplayLeg(False, method, url, origin, unsafe, False, first_url)
        answer = _judge(settings, leg, exchange, mode)
        if isinstance(answer, Failure):
            return answer
        location = next((v for n, v in answer.headers if n.lower() == "location"), None)
        if answer.status not in REDIRECT_STATUSES or location is None:
            return None
        target = resolve_location(url, location)
        if redirect_becomes_get(answer.status, method):
            method, unsafe = "GET", tuple(name for name in unsafe if name not in BODY_HEADERS)
        if serialize_origin(target) != serialize_origin(url):
            unsafe = tuple(name for name in unsafe if name != "authorization")  # dropped across origins
            if origin != serialize_origin(url):
                origin = "null"  # Fetch's tainted origin
        first_url, url, preflighted = first_url or url, target, exchange.private_network
    return Failure(ReplayLeg(False, method, url, origin, unsafe, False, first_url), None)


# --- The search -----------------------------------------------------------------------------------


def _step(candidate: _config.Settings, failure: Failure) -> dict[str, Any] | str | None:
    """The option changes that remove ``failure``'s refusal; a string when they must not be made; None: none can."""
    leg, verdict = failure
    if verdict is None:
        return None
    if leg.preflight:
        changes = _config.preflight_changes(candidate, leg.origin, leg.method, leg.unsafe_headers, leg.private_network)
    else:
        changes = _config.origin_changes(candidate, leg.origin)
    if "allow_origins" in changes and leg.origin == "null":
        return (
            "the request arrives with `Origin: null` after a redirect to another origin, and allowing `null` would "
            "let any sandboxed page in"
        )
    if changes:
        return changes
    if (verdict.reason or "").removeprefix("Preflight") in _CREDENTIAL_REASONS:
        if candidate.cors.allow_all_origins:
            # "*" with credentials would pass, by echoing every website's origin: name the origins instead.
            named = [o for o in _config.option_items(candidate.kwargs["allow_origins"]) if o != "*"]
            return {"allow_origins": list(dict.fromkeys([*named, leg.origin])), "allow_credentials": True}
        return {"allow_credentials": True}
    return None


def search(settings: _config.Settings, exchange: Exchange, modes: tuple[Mode, ...]) -> Search:
    """Change options one refusal at a time until every leg passes in every mode, or nothing more helps.

    Remembered with the settings: legs that differ only in what the replay does not read (a User-Agent, a
    cookie's value) make one exchange, so one search.
    """
    key = ("search", exchange, modes)
    found: Search | None = settings.memo.get(key)
    if found is None:
        found = settings.remember(key, _search(settings, exchange, modes))
    return found


def _search(settings: _config.Settings, exchange: Exchange, modes: tuple[Mode, ...]) -> Search:
    change: dict[str, Any] = {}
    named = False
    failure: Failure | None = None
    for _ in range(_MAX_STEPS):
        candidate = settings.variant(change)
        failure = next((f for mode in modes if (f := replay(candidate, exchange, mode)) is not None), None)
        if failure is None:
            return Search(change, True, named=named)
        step = _step(candidate, failure)
        if isinstance(step, str):
            return Search(change, False, failure, refusal=step, named=named)
        if not step or all(change.get(name) == value for name, value in step.items()):
            break
        named = named or ("allow_credentials" in step and "allow_origins" in step)
        change = {**change, **step}
    return Search(change, False, failure, named=named)


# --- The proposal ---------------------------------------------------------------------------------


def propose(settings: _config.Settings, facts: LegFacts, texts: Texts, verdict: Verdict) -> Proposal:
    """The verified fix for the exchange of ``facts``, and the one for a request with credentials."""
    credentialed = verdict.if_credentialed
    if verdict.verdict != "blocked" and (credentialed is None or credentialed.verdict != "blocked"):
        return Proposal(None)
    exchange = exchange_of(facts, texts, verdict)
    refusal = _not_replayable(exchange)
    if refusal is not None:
        return Proposal(_unverified(verdict.fix, refusal))
    if verdict.verdict != "blocked":
        return Proposal(None, _fix(settings, exchange, search(settings, exchange, ("include",)), verdict))
    unknown = verdict.credentials == "unknown"
    modes: tuple[Mode, ...] = BOTH if unknown else ("include",) if verdict.credentials == "include" else ("omit",)
    found = search(settings, exchange, modes)
    if unknown and found.named:
        # Both modes pass only without the wildcard: fix what the page surely does, say what credentials need.
        alone = _fix(settings, exchange, search(settings, exchange, ("omit",)), verdict)
        return Proposal(alone, _fix(settings, exchange, found, verdict))
    fix = _fix(settings, exchange, found, verdict, unknown=unknown)
    return Proposal(fix, fix if unknown and fix is not None and fix.verified else None)


def outermost(settings: _config.Settings, facts: LegFacts, texts: Texts, verdict: Verdict) -> str:
    """The add_middleware call for CORSMiddleware once it is outermost, with what the exchange then needs too.

    The layer that answered instead of CORSMiddleware cannot be replayed, so this is never verified; the
    exchange is still replayed through CORSMiddleware (the route answering what that layer answered) so the
    call also names every option the rest of the exchange needs.
    """
    exchange = exchange_of(facts, texts, verdict)
    if _not_replayable(exchange) is not None:
        return settings.call()
    unknown = verdict.credentials == "unknown"
    modes: tuple[Mode, ...] = BOTH if unknown else ("include",) if verdict.credentials == "include" else ("omit",)
    found = search(settings, exchange, modes)
    if found.named and unknown:
        found = search(settings, exchange, ("omit",))
    return settings.call(**found.change)


def _fix(
    settings: _config.Settings, exchange: Exchange, found: Search, verdict: Verdict, *, unknown: bool = False
) -> Fix | None:
    if not found.verified:
        why = _why_not(found)
        if found.change:
            why = f"even with {settings.call(**found.change)}, {why}"
        return _unverified(verdict.fix, why)
    page = _page_note(exchange)
    if not found.change and page is None:
        return None  # the options already let the exchange through: the refusal came from elsewhere
    code = settings.call(**found.change) if found.change else f"method: '{exchange.method}'"
    notes = [page] if page is not None else []
    if found.named:
        notes.append(_wildcard_note(exchange.origin))
    elif unknown and "allow_credentials" in found.change:
        notes.append(
            "The server cannot tell whether the page sends credentials, so the fix also sets "
            "allow_credentials=True: the exchange then passes with and without them."
        )
    return Fix(" ".join([*notes, code]) if found.change else " ".join(notes), code, True)


def _page_note(exchange: Exchange) -> str | None:
    if exchange.page_method is None:
        return None
    return (
        f"Fix the page: it sends `{exchange.page_method}` in lower case, and fetch() upper-cases only DELETE, GET, "
        f"HEAD, OPTIONS, POST and PUT, so `{exchange.page_method}` goes out as written; allowing it in "
        f"allow_methods would pass CORS, but the route (registered as {exchange.method}) would answer 405. Write "
        f"`method: '{exchange.method}'`."
    )


def _wildcard_note(origin: str) -> str:
    return (
        'allow_origins=["*"] with allow_credentials=True would pass too, but Starlette then echoes every '
        "website's origin with credentials allowed: any site could read your users' data with their cookies. "
        f"Name the origins that may send credentials instead ('{origin}' here)."
    )


def _why_not(found: Search) -> str:
    if found.refusal is not None:
        return found.refusal
    failure = found.failure
    if failure is None or failure.verdict is None:
        return "the exchange could not be replayed through CORSMiddleware in-process"
    leg = failure.leg
    kind = "preflight" if leg.preflight else "request"
    return f"no CORSMiddleware option lets the {leg.method} {kind} through ({failure.verdict.reason})"


def _unverified(what: str | None, why: str) -> Fix:
    text = f"{what} " if what else ""
    return Fix(f"{text}Not verified: {why}.", None, False)

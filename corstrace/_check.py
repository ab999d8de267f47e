"""``corstrace check``: send what Chromium sends for one cross-origin request, and judge every leg.

The exchange logic (:func:`run_exchange`) is shared with :mod:`corstrace.testing`: it talks to the
server only through a ``send`` function, so the CLI drives a real :class:`httpx.Client` over the
network while the test helpers drive an in-process ASGI app or a test client, with the same rules:

- the preflight is sent when the engine's ``needs_preflight`` says so, with the
  ``Access-Control-Request-Method``/``-Headers`` Chromium computes, and without cookies;
- a blocked leg ends the exchange (the browser never sends what would follow);
- redirects are followed by hand, up to 20, each hop judged with ``redirected_from`` set, with
  ``Origin: null`` once a hop taints the origin, and a new preflight where the hop needs one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

from corstrace._fetch import BODY_HEADERS, REDIRECT_STATUSES, redirect_becomes_get, resolve_location
from corstrace._messages import chromium_message
from corstrace.engine import (
    Headers,
    Outcome,
    Request,
    Response,
    Verdict,
    cors_unsafe_request_header_names,
    evaluate,
    needs_preflight,
    serialize_origin,
)

LegKind = Literal["preflight", "actual"]

# Fetch: "If request's redirect count is 20, return a network error."
_BODY_SNIPPET = 512
MAX_REDIRECTS = 20
DEFAULT_TIMEOUT = 10.0
# Fetch "normalize a method": only these are upper-cased; `patch` stays `patch` (and fails case-sensitive ACAM).
_NORMALIZED_METHODS = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"})


# Dropped when a redirect turns the request into a GET (Fetch "request-body-header name").
class CheckError(Exception):
    """Not a CORS verdict: the server could not be reached, or the browser would fail for another reason."""


class Answer(NamedTuple):
    """What the server answered one leg, and the headers that actually went on the wire."""

    status: int
    headers: Headers
    sent_headers: Headers
    # The start of the body: Starlette's CORSMiddleware says in it what it refused ("Disallowed CORS headers").
    body: bytes = b""


def answer_from(response: Any, request: Any) -> Answer:
    """An :class:`Answer` from an httpx response and the request that went on the wire."""
    return Answer(
        response.status_code,
        tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in response.headers.raw),
        tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw),
        response.content[:_BODY_SNIPPET],
    )


# send(method, url, headers, with_cookies) -> Answer. `with_cookies` is False for preflights and
# non-credentialed requests: the browser sends no cookies then, whatever the client's jar holds.
Send = Callable[[str, str, Headers, bool], Answer]
# patch(kind, request as judged, answer) -> the answer to judge instead: a replay with a proposed fix applied.
Patch = Callable[[LegKind, Request, Answer], Answer]


@dataclass(frozen=True, slots=True)
class PageApi:
    """The page API that makes the request: what Chromium puts on the wire for it, and names in its message."""

    # The event contract's `initiator`: "fetch", "XMLHttpRequest", "script", "image", "font", "resource", or
    # "fetch_or_xhr" when the request is the same for both (the console text then differs only in wording).
    initiator: str
    message_api: str  # Chromium's word in "Access to {message_api} at …"
    dest: str  # Sec-Fetch-Dest
    accept: str  # the Accept Chromium sends when the page sets none
    extra: Headers = ()  # other headers the browser adds itself (EventSource: Pragma, Cache-Control)
    # sendBeacon: no-cors (never CORS-checked) unless its body type needs a preflight.
    cors_only_when_preflighted: bool = False


FETCH_OR_XHR = PageApi("fetch_or_xhr", "fetch", "empty", "*/*")


@dataclass(frozen=True, slots=True)
class Leg:
    """One request the browser sent, what came back, and the engine's verdict on it."""

    kind: LegKind
    hop: int  # 0 for the URL the page asked for, n after the n-th redirect
    verdict: Verdict
    status: int | None  # None when the status is unknown (a HAR entry the browser blocked)
    request_headers: Headers
    response_headers: Headers
    redirected_from: str | None = None
    location: str | None = None  # the absolute URL a followed redirect pointed to
    # Chromium's text had the page used XMLHttpRequest, when it differs (the page API is fetch or XHR).
    browser_message_xhr: str | None = None


@dataclass(frozen=True, slots=True)
class Exchange:
    """Everything the browser did for one ``fetch()``: the legs in order, and notes on what changed."""

    url: str
    origin: str
    method: str
    credentials: bool
    legs: tuple[Leg, ...]
    notes: tuple[str, ...] = ()
    # What the server's own words say to change in its configuration (Starlette's refused-preflight body).
    server_hint: str | None = None
    initiator: str | None = None  # PageApi.initiator; None when not known (a HAR)

    @property
    def deciding(self) -> Leg:
        """The leg that decided: the first blocked one, else the last one."""
        for leg in self.legs:
            if leg.verdict.verdict == "blocked":
                return leg
        return self.legs[-1]

    @property
    def allowed(self) -> bool:
        return all(leg.verdict.verdict == "allowed" for leg in self.legs)


def normalize_method(method: str) -> str:
    """Fetch's method normalization: the six standard methods are upper-cased, every other one is kept as is."""
    return method.upper() if method.upper() in _NORMALIZED_METHODS else method


class _Page(NamedTuple):
    """How the page sees a leg: its own origin (the wire may say `null`), its API, the URL it fetched."""

    origin: str
    api: PageApi
    redirected_from: str | None


def _message(reason: str | None, url: str, hint: str | None, page: _Page, api: str) -> str | None:
    if reason is None:
        return None
    return chromium_message(
        reason, url=url, origin=page.origin, hint=hint, initiator=api, redirected_from=page.redirected_from
    )


def _with_credentialed_outcome(verdict: Verdict, request: Request, response: Response, page: _Page) -> Verdict:
    """Attach what ``credentials: 'include'`` would change, so the report can say it when it matters."""
    # Only for an allowed leg: a leg already blocked needs its own fix first, a second reason would be noise.
    if verdict.credentials != "omit" or verdict.origin is None or verdict.verdict == "blocked":
        return verdict
    other = evaluate(dataclasses.replace(request, credentials="include"), response)
    if other.reason == verdict.reason:
        return verdict
    message = _message(other.reason, other.url, other.failed_parameter, page, page.api.message_api)
    outcome = Outcome(other.verdict, other.reason, message, other.firefox_message, other.fix)
    return dataclasses.replace(verdict, if_credentialed=outcome)


def _judge(
    request: Request, answer: Answer, kind: LegKind, patch: Patch | None, page: _Page
) -> tuple[Verdict, Answer, str | None]:
    """The leg's verdict worded as the page's console shows it, the answer judged, and the XHR wording."""
    judged = dataclasses.replace(request, headers=answer.sent_headers or request.headers)
    if patch is not None:
        answer = patch(kind, judged, answer)
    response = Response(answer.status, answer.headers)
    verdict = _with_credentialed_outcome(evaluate(judged, response), judged, response, page)
    # After a tainting redirect the wire says `Origin: null`, but Chromium's console names the page's origin;
    # and the engine words every message for fetch().
    message = _message(verdict.reason, verdict.url, verdict.failed_parameter, page, page.api.message_api)
    if message != verdict.browser_message:
        verdict = dataclasses.replace(verdict, browser_message=message)
    xhr = None
    if page.api.initiator == FETCH_OR_XHR.initiator:
        xhr = _message(verdict.reason, verdict.url, verdict.failed_parameter, page, "XMLHttpRequest")
    return verdict, answer, xhr if xhr != message else None


def _site(origin: str, url: str) -> str:
    # "same-site" is approximated as "same scheme and host" (no public suffix list).
    page, target = urlsplit(origin), urlsplit(url)
    if origin == serialize_origin(url):
        return "same-origin"
    if origin != "null" and (page.scheme, page.hostname) == (target.scheme, target.hostname):
        return "same-site"
    return "cross-site"


def _sec_fetch(origin: str, url: str, api: PageApi, mode: str = "cors") -> Headers:
    """Chromium's Fetch Metadata for a request of ``api`` from ``origin``."""
    return (("Sec-Fetch-Site", _site(origin, url)), ("Sec-Fetch-Mode", mode), ("Sec-Fetch-Dest", api.dest))


def preflight_headers(origin: str, url: str, method: str, headers: Headers, api: PageApi = FETCH_OR_XHR) -> Headers:
    """The preflight Chromium sends before ``fetch(url, {method, headers})`` from ``origin``."""
    names = cors_unsafe_request_header_names(headers)
    built: list[tuple[str, str]] = [("Accept", "*/*"), ("Origin", origin), ("Access-Control-Request-Method", method)]
    if names:
        built.append(("Access-Control-Request-Headers", ",".join(names)))
    return (*built, *_sec_fetch(origin, url, api))


def actual_headers(
    origin: str,
    url: str,
    headers: Headers,
    api: PageApi = FETCH_OR_XHR,
    *,
    credentials: bool = False,
    mode: str = "cors",
) -> Headers:
    """The actual request's headers: the page's own, ``Origin``, and the ones Chromium adds for ``api``."""
    names = {name.lower() for name, _ in headers}
    added: list[tuple[str, str]] = [pair for pair in api.extra if pair[0].lower() not in names]
    if "accept" not in names:
        added.insert(0, ("Accept", api.accept))
    built = (*added, *headers, ("Origin", origin), *_sec_fetch(origin, url, api, mode))
    if credentials and _site(origin, url) == "cross-site":
        # Chromium 156 says a cross-site request's credentials mode is `include` with this (browser-facts-2.md).
        built = (*built, ("Sec-Fetch-Storage-Access", "none"))
    return built


def run_exchange(
    send: Send,
    url: str,
    *,
    origin: str,
    method: str = "GET",
    headers: Headers = (),
    credentials: bool = False,
    max_redirects: int = MAX_REDIRECTS,
    patch: Patch | None = None,
    api: PageApi = FETCH_OR_XHR,
) -> Exchange:
    """Play one cross-origin ``fetch()`` against a server through ``send`` and judge each leg.

    ``api`` is the page API that makes the request (fetch or XMLHttpRequest, a script, an image...): it
    decides the headers Chromium adds and the wording of its console message. ``patch`` changes each
    answer before it is judged (and before its redirect is followed): the exchange as it would go with
    a fix applied on the server.

    Raises :class:`CheckError` for what is not a CORS verdict (too many redirects, a redirect to a
    non-HTTP URL); ``send`` raises it for network errors.
    """
    credentials_mode: Literal["include", "omit"] = "include" if credentials else "omit"
    legs: list[Leg] = []
    notes: list[str] = []
    server_hint: str | None = None
    current_url, current_method, current_headers = url, normalize_method(method), tuple(headers)
    tainted = False
    for hop in range(max_redirects + 1):
        sent_origin = "null" if tainted else origin
        redirected_from = url if hop else None
        page = _Page(origin, api, redirected_from)
        cross_origin = sent_origin != serialize_origin(current_url)
        preflighted = needs_preflight(current_method, current_headers)
        mode = "no-cors" if api.cors_only_when_preflighted and not preflighted else "cors"
        if cross_origin and preflighted:
            request_headers = preflight_headers(sent_origin, current_url, current_method, current_headers, api)
            answer = send("OPTIONS", current_url, request_headers, False)
            request = Request(
                "OPTIONS",
                current_url,
                request_headers,
                preflight=True,
                credentials=credentials_mode,
                initiator=_engine_initiator(api),
                redirected_from=redirected_from,
            )
            verdict, answer, xhr = _judge(request, answer, "preflight", patch, page)
            legs.append(
                Leg(
                    "preflight", hop, verdict, answer.status, answer.sent_headers, answer.headers, redirected_from,
                    browser_message_xhr=xhr,
                )
            )  # fmt: skip
            if verdict.verdict == "blocked":
                refused = _starlette_refusal(answer, sent_origin, current_method, current_headers, credentials)
                if refused is not None:
                    note, server_hint = refused
                    notes.append(note)
                    # The generic "answer with 2xx" fix is true but useless against Starlette: name the option.
                    legs[-1] = dataclasses.replace(legs[-1], verdict=dataclasses.replace(verdict, fix=server_hint))
                break
        request_headers = actual_headers(
            sent_origin, current_url, current_headers, api, credentials=credentials, mode=mode
        )
        answer = send(current_method, current_url, request_headers, credentials)
        request = Request(
            current_method,
            current_url,
            request_headers,
            credentials=credentials_mode,
            initiator=_engine_initiator(api),
            redirected_from=redirected_from,
        )
        verdict, answer, xhr = _judge(request, answer, "actual", patch, page)
        raw_location = _location(answer) if answer.status in REDIRECT_STATUSES else None
        location = resolve_location(current_url, raw_location) if raw_location is not None else None
        follow = location if verdict.verdict == "allowed" else None
        legs.append(
            Leg(
                "actual", hop, verdict, answer.status, answer.sent_headers, answer.headers, redirected_from, follow,
                xhr,
            )
        )  # fmt: skip
        if follow is None:
            break
        if hop == max_redirects:
            raise CheckError(
                f"more than {max_redirects} redirects from {url}; the browser gives up (net::ERR_TOO_MANY_REDIRECTS)"
            )
        if urlsplit(follow).scheme not in ("http", "https"):
            raise CheckError(
                f"{current_url} redirects to {follow!r}, not an http(s) URL; the browser fails the request"
            )
        current_method, current_headers = _redirected(answer.status, current_method, current_headers)
        if serialize_origin(follow) != serialize_origin(current_url):
            if not tainted and origin != serialize_origin(current_url):
                # Fetch "HTTP-redirect fetch": a cross-origin hop from a URL already cross-origin to the page.
                tainted = True
                notes.append(f"After the cross-origin redirect to {follow} the browser sends `Origin: null`.")
            current_headers = _drop_on_cross_origin_hop(current_headers, current_url, follow, notes)
        current_url = follow
    return Exchange(
        url, origin, normalize_method(method), credentials, tuple(legs), tuple(notes), server_hint, api.initiator
    )


def _engine_initiator(api: PageApi) -> Literal["fetch", "XMLHttpRequest"]:
    # The engine words messages for these two; `_judge` rewords them for the other page APIs.
    return "XMLHttpRequest" if api.initiator == "XMLHttpRequest" else "fetch"


# Starlette's CORSMiddleware answers a refused preflight 400 "Disallowed CORS <what>, <what>".
def _starlette_refusal(
    answer: Answer, origin: str, method: str, headers: Headers, credentials: bool
) -> tuple[str, str] | None:
    """What a Starlette server's 400 preflight body says it refused (Chrome's message hides it), and the fix.

    The body names only what Starlette checks; it never refuses a preflight for credentials, but when the
    page sends them and the answer lacks `Access-Control-Allow-Credentials: true` the fix must say so too.
    """
    text = answer.body.decode("latin-1", "replace").strip()
    if answer.status != 400 or not text.startswith("Disallowed CORS "):
        return None
    what = [part.strip() for part in text.removeprefix("Disallowed CORS ").split(",")]
    requested = ", ".join(f'"{name}"' for name in cors_unsafe_request_header_names(headers))
    options = {
        "origin": f'add "{origin}" to `allow_origins`',
        "method": f'add "{method}" to `allow_methods`',
        "headers": f"add {requested or 'the requested headers'} to `allow_headers`",
        "private-network": "set `allow_private_network=True`",
    }
    fixes = [options[part] for part in what if part in options]
    if not fixes:
        return None
    acac = [value for name, value in answer.headers if name.lower() == "access-control-allow-credentials"]
    if credentials and acac != ["true"]:
        fixes.append("set `allow_credentials=True`")
    note = (
        f"The preflight's body says `{text[:100]}`: Starlette's CORSMiddleware refused the "
        + ", ".join(what)
        + " (Chrome only says 'It does not have HTTP ok status')."
    )
    return note, "In the server's CORSMiddleware configuration, " + "; ".join(fixes) + "."


def _location(answer: Answer) -> str | None:
    for name, value in answer.headers:
        if name.lower() == "location":
            return value  # resolved by the caller against the request URL
    return None


def _redirected(status: int, method: str, headers: Headers) -> tuple[str, Headers]:
    """Fetch's method change on 301/302 (POST) and 303 (anything but GET/HEAD)."""
    if redirect_becomes_get(status, method):
        return "GET", tuple((name, value) for name, value in headers if name.lower() not in BODY_HEADERS)
    return method, headers


def _drop_on_cross_origin_hop(headers: Headers, from_url: str, to_url: str, notes: list[str]) -> Headers:
    kept: list[tuple[str, str]] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == "authorization":
            # Fetch removes the CORS non-wildcard request-header name on a cross-origin redirect.
            notes.append(f"The browser drops `Authorization` on the cross-origin redirect to {to_url}.")
            continue
        if lowered == "cookie" and urlsplit(from_url).hostname != urlsplit(to_url).hostname:
            # Cookies belong to a host: the ones given for the first host are not the next host's.
            notes.append(f"The cookies given for {urlsplit(from_url).hostname} are not sent to {to_url}.")
            continue
        kept.append((name, value))
    return tuple(kept)


# --- the network side ------------------------------------------------------------------------


def client_sender(client: Any, *, keep_jar: bool) -> Send:
    """A ``send`` over an httpx-like client (``httpx.Client``, ``starlette.testclient.TestClient``).

    ``keep_jar``: credentialed legs also send the client's stored cookies (a test client that
    logged in holds the page's session); the CLI starts from an empty jar and keeps it empty.
    """

    def send(method: str, url: str, headers: Headers, with_cookies: bool) -> Answer:
        request = client.build_request(method, url, headers=list(headers))
        if not with_cookies:
            request.headers.pop("cookie", None)
        response = client.send(request, follow_redirects=False)
        if not keep_jar:
            client.cookies.clear()
        return answer_from(response, request)

    return send

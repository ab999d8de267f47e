"""The engine's console texts against what Chromium 156 and Firefox ESR 153 print, word for word.

Every initiator (fetch, XMLHttpRequest, classic and module scripts, images, fonts, stylesheets, media,
EventSource, sendBeacon, keepalive, no-cors), redirect chains across two API origins, safelist edge
cases, method case, the preflight cache, and Starlette / FastAPI CORSMiddleware configurations.

One scripted ASGI app serves three loopback servers: the page (``http://localhost:P``), the API
(``http://127.0.0.1:A``) and another origin (``http://127.0.0.1:B``) that redirect chains hop to.
A case is a chain of scripted steps (or a path of a framework app); the page runs it with the API
the case names. Each browser runs every case in one page, in one batch (starting a browser and
loading a page dominate the cost); each parametrized test then judges one case's recorded legs
with the engine, with no hint but what a middleware knows (the page's origin and the chain's
first URL for later hops), and compares with what that browser printed.
"""

from __future__ import annotations

import base64
import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest
from fastapi import FastAPI, HTTPException
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse
from starlette.responses import Response as StarletteResponse
from starlette.routing import Mount, Route

from corstrace.engine import Outcome, Request, Response, Verdict, evaluate, needs_preflight
from tests.firefox import Firefox, firefox  # noqa: F401 - the session fixture
from tests.support import run_server

pytestmark = pytest.mark.browser

H = tuple[tuple[str, str], ...]
ECHO: H = (("access-control-allow-origin", "{origin}"),)
STAR: H = (("access-control-allow-origin", "*"),)
PAGE_ACAO: H = (("access-control-allow-origin", "{page}"),)
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


@dataclass(frozen=True)
class Step:
    """How one URL of a case answers: its actual response, its preflight (None: allow what is asked), its server.

    Header values may say ``{origin}`` (the request's Origin), ``{page}`` (the page's origin) and ``{next}``
    (the absolute URL of the following step).
    """

    actual: tuple[int, H] = (200, ECHO)
    preflight: tuple[int, H] | None = None
    server: str = "api"


def redirect(status: int = 302, acao: H = ECHO, server: str = "api") -> Step:
    return Step(actual=(status, (*acao, ("location", "{next}"))), server=server)


@dataclass(frozen=True)
class Case:
    id: str
    api: str = "fetch"  # fetch, xhr, script, module, image, style, font, audio, eventsource, beacon
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    # fetch's credentials; for XHR/EventSource withCredentials, for elements crossorigin="use-credentials".
    credentials: str = "omit"
    steps: tuple[Step, ...] = (Step(),)
    options: dict[str, Any] = field(default_factory=dict)  # fetch init (mode, keepalive, cache), beacon type
    repeat: int = 1  # run the request this many times in a row (the preflight cache)
    legs: int = 1  # beacons report nothing back: the page waits until the server has seen this many legs
    app: str | None = None  # a framework app's path ("/starlette-x/items") instead of scripted steps
    cors: bool = True  # False: a no-cors request (no crossorigin attribute, mode: 'no-cors', a text beacon)

    @property
    def includes(self) -> bool:
        """Does the browser send credentials (beacons and no-cors subresources always do)?"""
        return self.credentials == "include" or self.api == "beacon" or (not self.cors and self.api != "fetch")


def mismatch(value: str = "http://x.test") -> Step:
    return Step(actual=(200, (("access-control-allow-origin", value),)))


MISSING = Step(actual=(200, ()))
PUT_OK: H = (*ECHO, ("access-control-allow-methods", "PUT"))

INITIATORS = [
    Case(f"{api}-{name}", api=api, steps=(step,))
    for api in ("fetch", "xhr", "script", "module", "image", "style", "font", "audio", "eventsource")
    for name, step in (
        ("missing-acao", MISSING),
        ("mismatch", mismatch()),
        ("404-without-acao", Step(actual=(404, ()))),
        ("two-acao-lines", Step(actual=(200, (*ECHO, *ECHO)))),
        ("invalid-acao", mismatch("localhost")),
    )
] + [
    # An SSE client built on fetch() or XHR (fetch-event-source…) asks for an event stream but is no EventSource.
    Case("fetch-accept-event-stream", headers={"Accept": "text/event-stream"}, steps=(mismatch(),)),
    Case("xhr-accept-event-stream", api="xhr", headers={"Accept": "text/event-stream"}, steps=(mismatch(),)),
    Case("keepalive-mismatch", options={"keepalive": True}, steps=(mismatch(),)),
    Case("keepalive-missing", options={"keepalive": True}, method="POST", steps=(MISSING,)),
    Case("fetch-no-cors", options={"mode": "no-cors"}, steps=(MISSING,), cors=False),
    Case("script-no-cors", api="script", steps=(MISSING,), cors=False),
    Case("script-no-cors-404", api="script", steps=(Step(actual=(404, ())),), cors=False),
    Case("image-no-cors-mismatch", api="image", steps=(mismatch(),), cors=False),
    Case("beacon-text-no-cors", api="beacon", method="POST", steps=(MISSING,), cors=False),
    # A JSON beacon is preflighted, always with credentials.
    Case("beacon-json-acac-missing", api="beacon", method="POST", options={"type": "application/json"}),
    Case(
        "beacon-json-wildcard",
        api="beacon",
        method="POST",
        options={"type": "application/json"},
        steps=(Step(preflight=(200, (*STAR, ("access-control-allow-headers", "content-type")))),),
    ),
    Case(
        "beacon-json-mismatch",
        api="beacon",
        method="POST",
        options={"type": "application/json"},
        steps=(Step(preflight=(200, (("access-control-allow-origin", "http://x.test"),))),),
    ),
    Case(
        "beacon-json-passes",
        api="beacon",
        method="POST",
        options={"type": "application/json"},
        legs=2,
        steps=(
            Step(
                preflight=(
                    200,
                    (
                        *ECHO,
                        ("access-control-allow-credentials", "true"),
                        ("access-control-allow-headers", "content-type"),
                    ),
                ),
                actual=(200, (*ECHO, ("access-control-allow-credentials", "true"))),
            ),
        ),
    ),
    # XHR and fetch preflights.
    Case("fetch-pf-missing-acao", method="PUT", steps=(Step(preflight=(200, ())),)),
    Case("xhr-pf-missing-acao", api="xhr", method="PUT", steps=(Step(preflight=(200, ())),)),
    Case(
        "xhr-pf-mismatch",
        api="xhr",
        method="PUT",
        steps=(Step(preflight=(200, (("access-control-allow-origin", "http://x.test"),))),),
    ),
    Case("xhr-pf-method", api="xhr", method="DELETE", steps=(Step(preflight=(200, ECHO)),)),
    Case("xhr-pf-header", api="xhr", headers={"X-Trace": "1"}, steps=(Step(preflight=(200, ECHO)),)),
    Case("xhr-pf-status", api="xhr", method="PUT", steps=(Step(preflight=(404, PUT_OK)),)),
    Case("xhr-pf-then-missing", api="xhr", method="PUT", steps=(Step(preflight=(200, PUT_OK), actual=(200, ())),)),
]

ACAC_TRUE = ("access-control-allow-credentials", "true")
CREDENTIALS = [
    # Cross-site with credentials: Sec-Fetch-Storage-Access tells the server the mode.
    Case(f"{api}-credentials-{name}", api=api, credentials="include", steps=(step,))
    for api in ("fetch", "xhr", "eventsource", "script", "image", "style")
    for name, step in (
        ("acac-missing", Step()),
        ("wildcard", Step(actual=(200, STAR))),
        ("acac-capitalised", Step(actual=(200, (*ECHO, ("access-control-allow-credentials", "True"))))),
        ("passes", Step(actual=(200, (*ECHO, ACAC_TRUE)))),
    )
] + [
    Case(
        "fetch-credentials-pf-acac-missing", credentials="include", method="PUT", steps=(Step(preflight=(200, PUT_OK)),)
    ),
    Case(
        "xhr-credentials-pf-wildcard",
        api="xhr",
        credentials="include",
        method="PUT",
        steps=(Step(preflight=(200, (*STAR, ("access-control-allow-methods", "PUT")))),),
    ),
    Case(
        "fetch-credentials-pf-star-methods",
        credentials="include",
        method="PUT",
        steps=(Step(preflight=(200, (*ECHO, ACAC_TRUE, ("access-control-allow-methods", "*")))),),
    ),
    # Same-site (localhost to localhost): no Sec-Fetch-Storage-Access, so the mode stays unknown.
    Case("same-site-credentials-acac-missing", credentials="include", steps=(Step(server="same-site"),)),
    Case(
        "same-site-credentials-wildcard", credentials="include", steps=(Step(actual=(200, STAR), server="same-site"),)
    ),
    Case("same-site-omit-wildcard", steps=(Step(actual=(200, STAR), server="same-site"),)),
]

REDIRECTS = [
    Case("redirect-target-missing-acao", steps=(redirect(), MISSING)),
    Case("redirect-hop-missing-acao", steps=(redirect(acao=()), Step())),
    Case("redirect-second-hop-missing-acao", steps=(redirect(), redirect(acao=()), Step())),
    Case("redirect-second-hop-mismatch", steps=(redirect(), redirect(acao=PAGE_ACAO, server="other"), Step())),
    Case("redirect-cross-origin-names-page", steps=(redirect(), Step(actual=(200, PAGE_ACAO), server="other"))),
    Case("redirect-cross-origin-missing", steps=(redirect(), Step(actual=(200, ()), server="other"))),
    Case("redirect-cross-origin-null-echo", steps=(redirect(), Step(server="other"))),
    Case("redirect-cross-origin-star", steps=(redirect(307), Step(actual=(200, STAR), server="other"))),
    Case("redirect-three-hops-back", steps=(redirect(), redirect(server="other"), Step(actual=(200, ())))),
    Case("redirect-back-to-page", steps=(redirect(), Step(actual=(200, PAGE_ACAO), server="page"))),
    Case("redirect-back-to-page-missing", steps=(redirect(), Step(actual=(200, ()), server="page"))),
    Case("redirect-userinfo", steps=(Step(actual=(302, (*ECHO, ("location", "http://u:p@127.0.0.1:9/x")))),)),
    Case("redirect-user-only-307", steps=(Step(actual=(307, (*ECHO, ("location", "http://u@127.0.0.1:9/x")))),)),
    Case("redirect-empty-userinfo", steps=(Step(actual=(302, (*ECHO, ("location", "{next-empty-userinfo}")))), Step())),
    Case("redirect-hop-acac-missing", credentials="include", steps=(redirect(307), Step())),
    Case("redirect-307-put-target-preflight-missing", method="PUT", steps=(redirect(307), Step(preflight=(200, ())))),
    Case("redirect-308-put-target-preflight-method", method="PUT", steps=(redirect(308), Step(preflight=(200, ECHO)))),
    Case(
        "redirect-307-put-cross-origin-target",
        method="PUT",
        steps=(
            redirect(307),
            Step(preflight=(200, (*PAGE_ACAO, ("access-control-allow-methods", "PUT"))), server="other"),
        ),
    ),
    Case("redirect-303-put-to-get", method="PUT", steps=(redirect(303), MISSING)),
    Case("redirect-preflight", method="PUT", steps=(Step(preflight=(307, (*PUT_OK, ("location", "{next}")))), Step())),
    Case(
        "redirect-preflight-without-acao",
        method="PUT",
        steps=(Step(preflight=(302, (("location", "{next}"),))), Step()),
    ),
    Case("redirect-xhr-cross-origin", api="xhr", steps=(redirect(), Step(actual=(200, PAGE_ACAO), server="other"))),
    Case("redirect-script-target", api="script", steps=(redirect(), MISSING)),
    Case("redirect-image-hop-missing", api="image", steps=(redirect(acao=()), Step())),
    Case(
        "redirect-eventsource-target",
        api="eventsource",
        steps=(redirect(), Step(actual=(200, PAGE_ACAO), server="other")),
    ),
    Case("redirect-followed", steps=(redirect(301), Step())),
]

# Preflighted requests are answered with a list that allows none of the page's headers: a preflight shows up as
# HeaderDisallowedByPreflightResponse naming the header, no preflight as a pass.
NARROW = Step(preflight=(200, (*ECHO, ("access-control-allow-headers", "x-unrelated"))))
SAFELIST = [
    Case(f"safelist-{name}", method=method, headers=headers, steps=(NARROW,))
    for name, method, headers in (
        ("dpr", "GET", {"DPR": "2"}),
        ("dpr-word", "GET", {"DPR": "two"}),
        ("save-data", "GET", {"Save-Data": "on"}),
        ("accept-non-ascii", "GET", {"Accept": "text/html, caf\u00e9"}),
        ("accept-129-bytes", "GET", {"Accept": "a" * 129}),
        ("text-plain-quoted-charset", "POST", {"Content-Type": 'text/plain; charset="utf-8"'}),
        ("text-plain-upper", "POST", {"Content-Type": "TEXT/PLAIN"}),
        ("multipart-without-boundary", "POST", {"Content-Type": "multipart/form-data"}),
        ("empty-content-type", "POST", {"Content-Type": ""}),
        ("json-content-type", "POST", {"Content-Type": "application/json"}),
        ("content-language-at", "GET", {"Content-Language": "fr@x"}),
        ("range-suffix", "GET", {"Range": "bytes=-500"}),
        ("range-simple", "GET", {"Range": "bytes=0-10"}),
        ("several-headers", "GET", {"X-B": "1", "X-A": "2", "Accept": "*/*"}),
        ("authorization", "GET", {"Authorization": "Bearer x"}),
    )
] + [
    Case(
        "safelist-authorization-under-star",
        headers={"Authorization": "Bearer x"},
        steps=(Step(preflight=(200, (*STAR, ("access-control-allow-headers", "*"))), actual=(200, STAR)),),
    ),
    Case(
        "safelist-authorization-under-star-then-missing",
        headers={"Authorization": "Bearer x", "X-A": "1"},
        steps=(Step(preflight=(200, (*STAR, ("access-control-allow-headers", "*"))), actual=(200, ())),),
    ),
    Case(
        "safelist-acah-not-tokens",
        headers={"X-A": "1"},
        steps=(Step(preflight=(200, (*ECHO, ("access-control-allow-headers", "x-a, b c")))),),
    ),
]

METHODS = [
    Case(
        f"method-{name}", method=method, steps=(Step(preflight=(200, (*ECHO, ("access-control-allow-methods", acam)))),)
    )
    for name, method, acam in (
        ("patch-lower-vs-upper", "patch", "PATCH"),
        ("patch-upper-vs-lower", "PATCH", "patch"),
        ("patch-lower-listed", "patch", "patch"),
        ("mixed-case", "PaTcH", "PaTcH, PATCH"),
        ("delete-normalised", "delete", "DELETE"),
        ("put-normalised-vs-lower", "put", "put"),
        ("options-lower", "options", "OPTIONS"),
        ("get-lower", "get", "x"),
        ("acam-space-list", "PUT", "GET PUT"),
        ("acam-empty-items", "PUT", ",, PUT ,"),
        ("custom-method", "SEARCH", "GET, POST"),
        ("star-methods", "SEARCH", "*"),
    )
]

MAX_AGES = [None, "0", "-1", "abc", "10abc", "+0", "-0", "00", "5.5", "+5", "600", "99999999999999999999", ""]
CACHE = [
    Case(
        f"cache-max-age-{index}",
        method="PUT",
        repeat=2,
        steps=(Step(preflight=(200, PUT_OK + ((("access-control-max-age", value),) if value is not None else ()))),),
    )
    for index, value in enumerate(MAX_AGES)
] + [
    Case(
        "cache-failed-preflight",
        method="PUT",
        repeat=2,
        steps=(Step(preflight=(200, (*ECHO, ("access-control-max-age", "600")))),),
    ),
    Case(
        "cache-400-preflight",
        method="PUT",
        repeat=2,
        steps=(Step(preflight=(400, (*PUT_OK, ("access-control-max-age", "600")))),),
    ),
    Case(
        "cache-actual-fails",
        method="PUT",
        repeat=2,
        steps=(Step(preflight=(200, (*PUT_OK, ("access-control-max-age", "600"))), actual=(200, ())),),
    ),
    Case(
        "cache-no-store",
        method="PUT",
        repeat=2,
        options={"cache": "no-store"},
        steps=(Step(preflight=(200, (*PUT_OK, ("access-control-max-age", "600")))),),
    ),
]


# Framework apps: Starlette's CORSMiddleware (in FastAPI too) in configurations people get wrong.
async def _items(request: Any) -> StarletteResponse:
    return PlainTextResponse("items", headers={"x-total-count": "3"})


async def _crash(request: Any) -> StarletteResponse:
    raise RuntimeError("boom")


def _starlette(**options: Any) -> Any:
    app = Starlette(
        routes=[Route("/items", _items, methods=["GET", "PUT", "POST", "PATCH", "DELETE"]), Route("/crash", _crash)]
    )
    app.add_middleware(CORSMiddleware, **options)
    return app


def _fastapi(**options: Any) -> Any:
    app = FastAPI()

    @app.get("/items/")
    def list_items() -> list[int]:
        return [1, 2]

    @app.put("/items/")
    def put_items() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/missing")
    def missing() -> None:
        raise HTTPException(404, "nope")

    app.add_middleware(CORSMiddleware, **options)
    return app


class _AuthFirst:
    """An authentication layer outside CORSMiddleware: it answers 401 to anything without a token."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not any(name == b"authorization" for name, _ in scope["headers"]):
            await PlainTextResponse("unauthorised", status_code=401)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def framework_apps(page: str) -> dict[str, Any]:
    return {
        "starlette-default-methods": _starlette(allow_origins=[page]),
        "starlette-other-origin": _starlette(allow_origins=["http://elsewhere.test"]),
        "starlette-trailing-slash": _starlette(allow_origins=[page + "/"]),
        "starlette-regex-miss": _starlette(allow_origin_regex=r"https://.*\.example\.com"),
        "starlette-star-credentials": _starlette(allow_origins=["*"], allow_credentials=True),
        "starlette-no-credentials": _starlette(allow_origins=[page], allow_methods=["*"], allow_headers=["*"]),
        "starlette-credentials": _starlette(
            allow_origins=[page], allow_credentials=True, allow_methods=["*"], allow_headers=["*"]
        ),
        "starlette-headers-listed": _starlette(allow_origins=[page], allow_methods=["*"], allow_headers=["X-Foo"]),
        "starlette-methods-upper": _starlette(allow_origins=[page], allow_methods=["PATCH"]),
        "starlette-max-age-0": _starlette(allow_origins=[page], allow_methods=["*"], max_age=0),
        "starlette-expose": _starlette(allow_origins=["*"], expose_headers=["X-Total-Count"]),
        "starlette-auth-outside": _AuthFirst(
            _starlette(allow_origins=[page], allow_methods=["*"], allow_headers=["*"])
        ),
        "fastapi": _fastapi(allow_origins=[page], allow_methods=["*"], allow_headers=["*"]),
        "fastapi-get-only": _fastapi(allow_origins=[page]),
    }


FRAMEWORKS = [
    Case("fw-default-methods-put", method="PUT", app="/starlette-default-methods/items"),
    Case("fw-default-methods-get", app="/starlette-default-methods/items"),
    Case("fw-other-origin-get", app="/starlette-other-origin/items"),
    Case("fw-other-origin-put", method="PUT", app="/starlette-other-origin/items"),
    Case("fw-trailing-slash", app="/starlette-trailing-slash/items"),
    Case("fw-regex-miss", app="/starlette-regex-miss/items"),
    Case("fw-star-credentials", credentials="include", app="/starlette-star-credentials/items"),
    Case("fw-star-credentials-xhr", api="xhr", credentials="include", app="/starlette-star-credentials/items"),
    Case("fw-star-no-credentials", app="/starlette-star-credentials/items"),
    Case("fw-no-credentials-include", credentials="include", app="/starlette-no-credentials/items"),
    Case("fw-no-credentials-put-include", method="PUT", credentials="include", app="/starlette-no-credentials/items"),
    Case("fw-credentials-put", method="PUT", credentials="include", app="/starlette-credentials/items"),
    Case(
        "fw-credentials-authorization",
        headers={"Authorization": "Bearer t"},
        credentials="include",
        app="/starlette-credentials/items",
    ),
    Case("fw-header-not-listed", headers={"X-Bar": "1"}, app="/starlette-headers-listed/items"),
    Case("fw-header-listed", headers={"X-Foo": "1"}, app="/starlette-headers-listed/items"),
    Case("fw-patch-lower", method="patch", app="/starlette-methods-upper/items"),
    Case("fw-patch-upper", method="PATCH", app="/starlette-methods-upper/items"),
    Case("fw-max-age-0", method="PUT", repeat=2, app="/starlette-max-age-0/items"),
    Case("fw-expose", app="/starlette-expose/items"),
    Case("fw-crash", app="/starlette-no-credentials/crash"),
    Case("fw-auth-outside-put", method="PUT", app="/starlette-auth-outside/items"),
    Case("fw-auth-outside-get", app="/starlette-auth-outside/items"),
    Case("fw-fastapi-slash-redirect", app="/fastapi/items"),
    Case("fw-fastapi-slash-redirect-put", method="PUT", app="/fastapi/items"),
    Case("fw-fastapi-404", app="/fastapi/missing"),
    Case("fw-fastapi-get-only-put", method="PUT", app="/fastapi-get-only/items/"),
    Case("fw-fastapi-script", api="script", app="/fastapi/items/"),
]

# Lifetimes, checked by asking again after EXPIRY_WAIT_MS: cached (5 s default) or expired (1 s).
EXPIRY_WAIT_MS = 1500
EXPIRY = [
    Case(
        f"expiry-max-age-{index}",
        method="PUT",
        steps=(Step(preflight=(200, PUT_OK + ((("access-control-max-age", value),) if value is not None else ()))),),
    )
    for index, value in enumerate([None, "1", "10abc", "abc", "3"])
]

ALL = INITIATORS + CREDENTIALS + REDIRECTS + SAFELIST + METHODS + CACHE + FRAMEWORKS
BY_ID = {case.id: case for case in [*ALL, *EXPIRY]}
assert len(BY_ID) == len(ALL) + len(EXPIRY), "case ids must be unique"
BODIES = {
    "script": (b"text/javascript", b"void 0;"),
    "module": (b"text/javascript", b"export {};"),
    "image": (b"image/gif", GIF),
    "style": (b"text/css", b"p{}"),
    "eventsource": (b"text/event-stream", b"data: hi\n\n"),
}


@dataclass
class Leg:
    method: str
    url: str
    headers: H
    response: Response


@dataclass
class Run:
    """What one browser did with one case: the page's outcome(s), its console lines, the legs the server saw."""

    outcomes: list[str]
    lines: list[str]
    legs: list[Leg]


class Recorder:
    """The legs every case produced, per browser, in arrival order; also the scripted steps' answers."""

    def __init__(self) -> None:
        self.legs: dict[str, list[Leg]] = {}
        self.bases: dict[str, str] = {}
        self._changed = threading.Condition()

    def record(self, key: str, leg: Leg) -> None:
        with self._changed:
            self.legs.setdefault(key, []).append(leg)
            self._changed.notify_all()

    def count(self, key: str) -> int:
        with self._changed:
            return len(self.legs.get(key, []))

    def step_url(self, browser: str, case: Case, index: int) -> str:
        if case.app is not None:
            return f"{self.bases['frameworks']}{case.app}?case={browser}.{case.id}"
        return f"{self.bases[case.steps[index].server]}/s/{browser}/{case.id}/{index}"

    def fill(self, value: str, origin: str, browser: str, case: Case, index: int) -> str:
        value = value.replace("{origin}", origin).replace("{page}", self.bases["page"])
        if "{next" in value:
            following = self.step_url(browser, case, index + 1)
            value = value.replace("{next}", following)
            value = value.replace("{next-empty-userinfo}", following.replace("http://", "http://:@"))
        return value


def _headers(scope: dict[str, Any]) -> H:
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"])


def _url(scope: dict[str, Any], headers: H) -> str:
    host = dict(headers).get("host", "")
    query = scope["query_string"].decode("latin-1")
    return f"http://{host}{scope['path']}" + (f"?{query}" if query else "")


def scripted_app(recorder: Recorder) -> Any:
    """Answers /s/<browser>/<case>/<step> as the case scripts it; / is the page; /legs/<key> counts legs."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        parts = scope["path"].split("/")
        if parts[1] == "legs":
            await _send(send, 200, [], str(recorder.count(parts[2])).encode())
            return
        if parts[1] != "s":
            await _send(send, 200, [(b"content-type", b"text/html")], b"<!doctype html><title>page</title>")
            return
        browser, case, index = parts[2], BY_ID[parts[3]], int(parts[4])
        headers = _headers(scope)
        lookup = dict(headers)
        step = case.steps[index]
        if scope["method"] == "OPTIONS" and "access-control-request-method" in lookup:
            status, raw = step.preflight or (200, _allow_what_is_asked(lookup))
        else:
            status, raw = step.actual
        filled = tuple(
            (name, recorder.fill(value, lookup.get("origin", ""), browser, case, index)) for name, value in raw
        )
        content_type, body = BODIES.get(case.api, (b"text/plain", b"ok"))
        out = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in filled]
        # Recorded before it is sent: the browser follows a redirect at once, and the next hop's server (another
        # thread) must not record its leg first.
        recorder.record(
            f"{browser}.{case.id}", Leg(scope["method"], _url(scope, headers), headers, Response(status, filled))
        )
        await _send(send, status, [*out, (b"content-type", content_type)], body)

    return app


def _allow_what_is_asked(lookup: dict[str, str]) -> H:
    return (
        ("access-control-allow-origin", lookup.get("origin", "")),
        ("access-control-allow-methods", lookup["access-control-request-method"]),
        ("access-control-allow-headers", lookup.get("access-control-request-headers", "")),
    )


async def _send(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def recording(app: Any, recorder: Recorder) -> Any:
    """Records every leg a framework app answers, keyed by the ?case= the page put on the URL."""

    async def recorded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        headers = _headers(scope)
        key = parse_qs(scope["query_string"].decode("latin-1")).get("case", ["?"])[0]
        started: list[Response] = []

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer = tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in message["headers"])
                started.append(Response(message["status"], answer))
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body") and started:
                recorder.record(key, Leg(scope["method"], _url(scope, headers), headers, started[0]))

        await app(scope, receive, watch)

    return recorded


def dispatcher(apps: dict[str, Any], recorder: Recorder) -> Any:
    """Mounts each framework app, recorded, at /<name> (Mount keeps root_path right for redirects)."""
    return Starlette(routes=[Mount(f"/{name}", app=recording(app, recorder)) for name, app in apps.items()])


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    """Four loopback servers (h11, which takes a page's lower-case `patch` to the app): page, API, other, frameworks."""
    recorder = Recorder()
    app = scripted_app(recorder)
    with contextlib.ExitStack() as stack:
        page = stack.enter_context(run_server(app, http="h11", lifespan="off")).replace("127.0.0.1", "localhost")
        recorder.bases["page"] = page
        recorder.bases["api"] = stack.enter_context(run_server(app, http="h11", lifespan="off"))
        other = stack.enter_context(run_server(app, http="h11", lifespan="off"))
        recorder.bases["other"] = other
        recorder.bases["same-site"] = other.replace("127.0.0.1", "localhost")  # same site as the page
        frameworks = dispatcher(framework_apps(page), recorder)
        # The crash case raises on purpose: keep its traceback out of the test output.
        recorder.bases["frameworks"] = stack.enter_context(run_server(frameworks, http="h11", log_level="critical"))
        yield recorder


DRIVER = r"""async (cases) => {
  const results = {};
  const settle = (target, ok, bad) => new Promise((resolve) => {
    target[ok] = () => resolve("ok");
    target[bad] = () => resolve("error");
  });
  const element = async (c, tag, attribute) => {
    const el = document.createElement(tag);
    if (c.api === "module") el.type = "module";
    if (tag === "link") el.rel = "stylesheet";
    if (c.cors) el.crossOrigin = c.credentials === "include" ? "use-credentials" : "anonymous";
    const done = settle(el, tag === "audio" ? "oncanplay" : "onload", "onerror");
    el[attribute] = c.url;
    document.body.append(el);
    const result = await done;
    el.remove();
    return result;
  };
  const once = async (c) => {
    const o = c.options;
    switch (c.api) {
      case "fetch": {
        const init = {method: c.method, headers: c.headers, credentials: c.credentials, ...o};
        try {
          const response = await fetch(c.url, init);
          return "ok " + response.type;
        } catch (error) {
          return "error";
        }
      }
      case "xhr":
        return await new Promise((resolve) => {
          const x = new XMLHttpRequest();
          x.open(c.method, c.url);
          x.withCredentials = c.credentials === "include";
          for (const [name, value] of Object.entries(c.headers)) x.setRequestHeader(name, value);
          x.onload = () => resolve("ok");
          x.onerror = () => resolve("error");
          x.send(c.method === "GET" ? null : "x");
        });
      case "script": case "module": return await element(c, "script", "src");
      case "image": return await element(c, "img", "src");
      case "style": return await element(c, "link", "href");
      case "audio": return await element(c, "audio", "src");
      case "font": {
        const face = new FontFace("f" + Math.random().toString(36).slice(2), "url(" + c.url + ")");
        try { await face.load(); return "ok"; } catch (error) { return "error"; }
      }
      case "eventsource":
        return await new Promise((resolve) => {
          const source = new EventSource(c.url, {withCredentials: c.credentials === "include"});
          source.onopen = () => { source.close(); resolve("ok"); };
          source.onerror = () => { source.close(); resolve("error"); };
        });
      case "beacon": {
        const body = o.type ? new Blob(["{}"], {type: o.type}) : "x";
        if (!navigator.sendBeacon(c.url, body)) return "refused";
        // A beacon reports nothing back: wait until the server has answered the legs the case expects.
        for (let i = 0; i < 500; i++) {
          if (Number(await (await fetch("/legs/" + c.key)).text()) >= c.legs) return "sent";
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        return "timeout";
      }
    }
    return "unknown api " + c.api;
  };
  for (const c of cases) {
    results[c.id] = [];
    for (let round = 0; round < c.repeat; round++) results[c.id].push(await once(c));
  }
  return results;
}"""


def _page_case(browser: str, case: Case, recorder: Recorder) -> dict[str, Any]:
    return {
        "id": case.id,
        "key": f"{browser}.{case.id}",
        "api": case.api,
        "method": case.method,
        "headers": case.headers,
        "credentials": case.credentials,
        "url": recorder.step_url(browser, case, 0),
        "options": case.options,
        "repeat": case.repeat,
        "legs": case.legs,
        "cors": case.cors,
    }


def _by_case(lines: list[str], browser: str) -> dict[str, list[str]]:
    """Console lines grouped by the case whose URL they name."""
    grouped: dict[str, list[str]] = {}
    pattern = re.compile(rf"/s/{browser}/([^/]+)/|[?&]case={browser}\.([^'.\s]+)")
    for line in lines:
        match = pattern.search(line)
        if match:
            grouped.setdefault(match.group(1) or match.group(2), []).append(line)
    return grouped


def _runs(browser: str, recorder: Recorder, outcomes: dict[str, list[str]], lines: list[str]) -> dict[str, Run]:
    grouped = _by_case(lines, browser)
    return {
        case.id: Run(outcomes[case.id], grouped.get(case.id, []), recorder.legs.get(f"{browser}.{case.id}", []))
        for case in ALL
    }


# Beacons first: the browser reports a beacon's failure on its own schedule, the batch gives it time.
ORDER = sorted(ALL, key=lambda case: case.api != "beacon")


@pytest.fixture(scope="module")
def chromium(browser: Any, recorder: Recorder) -> Iterator[dict[str, Run]]:
    """Every case, run once in one Chromium page."""
    context = browser.new_context()
    page = context.new_page()
    lines: list[str] = []
    page.on("console", lambda message: lines.append(message.text))
    try:
        page.goto(recorder.bases["page"] + "/")
        outcomes = page.evaluate(DRIVER, [_page_case("c", case, recorder) for case in ORDER])
        # Chromium logs each CORS error before the page sees the failure; a marker logged last bounds the wait.
        with page.expect_console_message(lambda message: message.text == "batch done"):
            page.evaluate("() => console.log('batch done')")
        yield _runs("c", recorder, outcomes, [line for line in lines if line.startswith("Access to ")])
    finally:
        context.close()


SENTINEL = Case("sentinel", steps=(MISSING,))
BY_ID[SENTINEL.id] = SENTINEL


@pytest.fixture(scope="module")
def firefox_runs(firefox: Firefox, recorder: Recorder) -> dict[str, Run]:  # noqa: F811 - the imported fixture
    """Every case, run once in one Firefox tab; its CORS lines come from the console service."""
    firefox.navigate(recorder.bases["page"] + "/")
    firefox.clear_console()
    outcomes = firefox.run(DRIVER, [_page_case("f", case, recorder) for case in [*ORDER, SENTINEL]])
    # Entries are logged in order: once the last request's line is there, every earlier one is too.
    firefox.wait_for_console(f"/s/f/{SENTINEL.id}/0")
    lines = [text for category, text in firefox.cors_messages()]
    return _runs("f", recorder, outcomes, lines)


def judge(case: Case, run: Run, page_origin: str, *, initiator: Any = None) -> list[Verdict]:
    """The engine's verdict on every leg, knowing only what a middleware can link: page origin and first URL."""
    if not run.legs:
        return []
    first = run.legs[0].url
    return [
        evaluate(
            Request(
                leg.method,
                leg.url,
                leg.headers,
                initiator=initiator,
                redirected_from=first if leg.url != first else None,
                page_origin=page_origin,
            ),
            leg.response,
        )
        for leg in run.legs
    ]


def as_the_browser_sent_it(case: Case, verdict: Verdict) -> Verdict | Outcome:
    """Where the server cannot tell the credentials mode, the outcome for the mode the page used."""
    if verdict.credentials == "unknown" and case.includes and verdict.if_credentialed is not None:
        return verdict.if_credentialed
    return verdict


def chromium_lines(case: Case, verdicts: list[Verdict]) -> list[str]:
    lines = []
    for verdict in verdicts:
        outcome = as_the_browser_sent_it(case, verdict)
        if outcome.verdict == "blocked":
            text = outcome.browser_message_xhr if case.api == "xhr" else outcome.browser_message
            lines.append(text or "")
    return lines


def firefox_lines(case: Case, verdicts: list[Verdict]) -> list[str]:
    return [line for verdict in verdicts for line in as_the_browser_sent_it(case, verdict).firefox_console]


EXPECTED_INITIATOR = {
    "fetch": "fetch_or_xhr",
    "xhr": "fetch_or_xhr",
    "beacon": "fetch_or_xhr",  # the server cannot tell a beacon from fetch()
    "script": "script",
    "module": "script",
    "image": "image",
    "style": "style",
    "font": "font",
    "audio": "audio",
    "eventsource": "resource",
}


@pytest.mark.parametrize("case", ALL, ids=[case.id for case in ALL])
def test_chromium_prints_the_engines_message(chromium: dict[str, Run], recorder: Recorder, case: Case) -> None:
    """Each blocked request prints exactly the engine's browser_message (browser_message_xhr for XMLHttpRequest)."""
    run = chromium[case.id]
    # A beacon's API is invisible to the server; a caller who knows says initiator="resource".
    verdicts = judge(case, run, recorder.bases["page"], initiator="resource" if case.api == "beacon" else None)
    assert run.legs, "the server saw no request"
    expected = chromium_lines(case, verdicts)
    assert run.lines == expected
    if case.api in ("fetch", "xhr", "eventsource") and case.cors and case.repeat == 1:
        assert run.outcomes[0].startswith("error") is bool(expected), run.outcomes


@pytest.mark.parametrize("case", ALL, ids=[case.id for case in ALL])
def test_firefox_prints_the_engines_lines(firefox_runs: dict[str, Run], recorder: Recorder, case: Case) -> None:
    """Firefox's CORS console lines for the case are the engine's firefox_console of its legs, in order."""
    run = firefox_runs[case.id]
    assert run.legs, "the server saw no request"
    assert run.lines == firefox_lines(case, judge(case, run, recorder.bases["page"]))


@pytest.mark.parametrize("case", [case for case in ALL if case.cors], ids=[case.id for case in ALL if case.cors])
def test_initiator_is_what_the_server_can_tell(chromium: dict[str, Run], recorder: Recorder, case: Case) -> None:
    """Sec-Fetch-Dest and EventSource's Accept name the initiator; fetch, XHR and beacons stay fetch_or_xhr."""
    verdicts = judge(case, chromium[case.id], recorder.bases["page"])
    assert {verdict.initiator for verdict in verdicts} == {EXPECTED_INITIATOR[case.api]}


CROSS_SITE_CREDENTIALED = [
    case
    for case in CREDENTIALS
    if case.credentials == "include" and not case.id.startswith("same-site") and not needs_preflight(case.method, ())
]


@pytest.mark.parametrize("case", CROSS_SITE_CREDENTIALED, ids=[case.id for case in CROSS_SITE_CREDENTIALED])
def test_credentials_are_known_cross_site(chromium: dict[str, Run], recorder: Recorder, case: Case) -> None:
    """A cross-site request with credentials: 'include' carries Sec-Fetch-Storage-Access: the mode is known."""
    actual = [verdict for verdict in judge(case, chromium[case.id], recorder.bases["page"]) if not verdict.preflight]
    assert actual and all(verdict.credentials == "include" for verdict in actual)


def test_credentialed_fetch_without_a_cookie_is_blocked(chromium: dict[str, Run], recorder: Recorder) -> None:
    """localhost:A -> 127.0.0.1:B with credentials: 'include', no cookie, no ACAC: InvalidAllowCredentials."""
    (verdict,) = judge(BY_ID["fetch-credentials-acac-missing"], chromium["fetch-credentials-acac-missing"], "")
    assert (verdict.verdict, verdict.reason, verdict.credentials) == ("blocked", "InvalidAllowCredentials", "include")
    assert "cookie" not in dict(chromium["fetch-credentials-acac-missing"].legs[0].headers)


def test_same_site_credentials_stay_unknown(chromium: dict[str, Run], recorder: Recorder) -> None:
    """localhost:A -> localhost:B sends no Sec-Fetch-Storage-Access: the server cannot tell, and says both."""
    (verdict,) = judge(BY_ID["same-site-credentials-acac-missing"], chromium["same-site-credentials-acac-missing"], "")
    assert (verdict.verdict, verdict.credentials) == ("allowed", "unknown")
    assert verdict.if_credentialed is not None and verdict.if_credentialed.reason == "InvalidAllowCredentials"


@pytest.mark.parametrize("case", SAFELIST + METHODS, ids=[case.id for case in SAFELIST + METHODS])
def test_chromium_preflights_what_needs_preflight_predicts(chromium: dict[str, Run], case: Case) -> None:
    """needs_preflight() agrees with whether Chromium sent a preflight for the page's method and headers."""
    # fetch() upper-cases only these six methods; `patch` stays `patch`.
    normalised = case.method.upper() in ("DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT")
    method = case.method.upper() if normalised else case.method
    preflighted = any(leg.method == "OPTIONS" for leg in chromium[case.id].legs)
    assert needs_preflight(method, tuple(case.headers.items())) is preflighted


CACHED = [case for case in CACHE + FRAMEWORKS if case.repeat > 1]


@pytest.mark.parametrize("case", CACHED, ids=[case.id for case in CACHED])
def test_chromium_caches_preflights_as_the_engine_says(
    chromium: dict[str, Run], recorder: Recorder, case: Case
) -> None:
    """A second identical request re-sends the preflight exactly when preflight_cache_seconds is 0."""
    run = chromium[case.id]
    first_preflight = next(verdict for verdict in judge(case, run, recorder.bases["page"]) if verdict.preflight)
    preflights = sum(1 for leg in run.legs if leg.method == "OPTIONS")
    assert preflights in (1, 2)
    if case.options.get("cache") == "no-store":
        assert preflights == 2  # no-store and reload fetches never use the preflight cache
        return
    assert (preflights == 1) is (bool(first_preflight.preflight_cache_seconds))


def test_chromium_preflight_cache_lifetime_is_the_engines(browser: Any, recorder: Recorder) -> None:
    """After 1.5 s Chromium still uses a preflight cached for 5 s (no or unparsable Max-Age) but not one for 1 s."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(recorder.bases["page"] + "/")
        batch = [_page_case("c", case, recorder) for case in EXPIRY]
        page.evaluate(DRIVER, batch)
        page.wait_for_timeout(EXPIRY_WAIT_MS)  # the cache's clock: nothing to await but time itself
        page.evaluate(DRIVER, batch)
    finally:
        context.close()
    for case in EXPIRY:
        legs = recorder.legs[f"c.{case.id}"]
        seconds = evaluate(
            Request(legs[0].method, legs[0].url, legs[0].headers), legs[0].response
        ).preflight_cache_seconds
        preflights = sum(1 for leg in legs if leg.method == "OPTIONS")
        assert seconds is not None and (preflights == 1) is (seconds * 1000 > EXPIRY_WAIT_MS), case.id

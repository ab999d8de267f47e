"""Every fix corstrace shows for a Starlette/FastAPI app, applied literally and judged by real Chromium (issue 15).

For each row of a table of CORSMiddleware misconfigurations (and each demo exchange): serve the app, run the
page's fetch() in Chromium (blocked), take the fix from corstrace's event — `fix_code`, or the credentialed
request's fix when the server could not tell — apply it to a fresh copy of the app by executing that code, serve
the copy, run the same fetch() again, and assert that Chromium allows it and corstrace agrees.

Uses the module-scoped Playwright browser, so no anyio test may live in this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import HTMLResponse, RedirectResponse, Response

from corstrace import CORSTraceMiddleware
from tests.support import EventLog, captured_events, run_server

pytestmark = pytest.mark.browser

LEGS = ("cors.blocked", "cors.allowed")
REDIRECTS = (301, 302, 303, 307, 308)


# --- the apps ---------------------------------------------------------------------------------------------


def routes() -> FastAPI:
    """The routes every row's app has: no middleware yet."""
    app = FastAPI(openapi_url=None)

    @app.get("/items")
    def items() -> list[int]:
        return [1, 2]

    @app.post("/items", status_code=201)
    async def create(request: Request) -> dict[str, bool]:
        await request.body()
        return {"created": True}

    @app.put("/items/{item_id}")
    @app.patch("/items/{item_id}")
    @app.delete("/items/{item_id}")
    def change(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/me")
    def me(authorization: str | None = Header(default=None)) -> dict[str, str]:
        if not authorization:
            raise HTTPException(401, "no token")
        return {"user": "demo"}

    @app.get("/session")
    def session() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError("database is down")

    return app


async def _auth(request: Request, call_next: Any) -> Response:
    """An auth layer that refuses anything without Authorization, preflights included (they never carry it)."""
    if "authorization" not in request.headers:
        return JSONResponse({"detail": "Not authenticated"}, status_code=401)
    response: Response = await call_next(request)
    return response


def add_auth(app: FastAPI) -> None:
    app.add_middleware(BaseHTTPMiddleware, dispatch=_auth)


class Moved:
    """A layer that moved /old/* to /items/* (307, any method): outside CORSMiddleware it redirects preflights."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/old/"):
            target = "/items/" + scope["path"].removeprefix("/old/")
            await RedirectResponse(target, status_code=307)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def add_moved(app: FastAPI) -> None:
    app.add_middleware(Moved)


Outside = Callable[[FastAPI], None]


def _trace(app: Any) -> Any:
    return CORSTraceMiddleware(app, inspector=False, aggregate_window=0)


def misconfigured(cors: dict[str, Any], *, outside: Outside | None = None) -> FastAPI:
    app = routes()
    app.add_middleware(CORSMiddleware, **cors)
    if outside is not None:
        outside(app)  # added after CORSMiddleware: it runs outside it
    app.add_middleware(CORSTraceMiddleware, inspector=False, aggregate_window=0)
    return app


def applying(code: str, *, outside: Outside | None = None, base: Callable[[], FastAPI] = routes) -> Any:
    """A fresh copy of the app with ``code`` (corstrace's fix, as shown) executed on it."""
    app = base()
    namespace: dict[str, Any] = {"app": app, "CORSMiddleware": CORSMiddleware, "CORSTraceMiddleware": _trace}
    if code.startswith("app = "):
        exec(code, namespace)  # the crash fix wraps the whole app, corstrace outermost
        return namespace["app"]
    if outside is not None:
        outside(app)  # the fix says: add CORSMiddleware after it
    exec(code, namespace)
    app.add_middleware(CORSTraceMiddleware, inspector=False, aggregate_window=0)
    return app


def _page_app() -> Any:
    async def index(scope: Any, receive: Any, send: Any) -> None:
        await HTMLResponse("<!doctype html><title>page</title><p>page</p>")(scope, receive, send)

    return index


@pytest.fixture(scope="module")
def page_url() -> Iterator[str]:
    """The page on http://127.0.0.1:P: the APIs are on other ports of the same host (same-site, so cookies go)."""
    with run_server(_page_app()) as url:
        yield url


# --- the browser ------------------------------------------------------------------------------------------


def _fetch(page: Any, url: str, init: str) -> str:
    """Run fetch() in the page: "ok <status>" when the page may read the answer, "blocked" when Chromium refused."""
    result: str = page.evaluate(
        f"""async () => {{
            try {{ const r = await fetch({json.dumps(url)}, {init}); await r.text(); return "ok " + r.status; }}
            catch (e) {{ return "blocked"; }}
        }}"""
    )
    return result


def _legs_of(logs: EventLog, api: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] in LEGS and e["url"].startswith(api)]


def _final(event: dict[str, Any], api: str) -> bool:
    return (
        event["event"] in LEGS
        and event["url"].startswith(api)
        and not event["preflight"]
        and (event["status"] not in REDIRECTS or event["verdict"] == "blocked")
    )


def _decider(logs: EventLog, api: str) -> dict[str, Any]:
    """The event of the leg the browser stopped at (or, credentials unknown, would stop at with credentials)."""

    def stops(event: dict[str, Any]) -> bool:
        credentialed = event.get("if_credentialed") or {}
        return event["verdict"] == "blocked" or credentialed.get("verdict") == "blocked"

    return logs.wait_for(lambda e: e["event"] in LEGS and e["url"].startswith(api) and stops(e))[0]


def shown_fix(event: dict[str, Any]) -> tuple[str, bool]:
    """The code corstrace offers to copy for this exchange, and whether it says it is verified."""
    if event["verdict"] == "blocked":
        assert event["fix_code"], event["fix"]
        return event["fix_code"], event["fix_verified"]
    # Credentials unknown: the fix for a request with credentials is the call its text ends with (verified,
    # or it would say "Not verified").
    text = event["if_credentialed"]["fix"]
    code = text[text.rindex("app.add_middleware(") :]
    return code, "Not verified" not in text


# --- the table of misconfigurations -----------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    cors: Callable[[str], dict[str, Any]]  # the page's origin -> CORSMiddleware's options
    path: str
    init: str  # the fetch() options
    cookie: bool = False  # a cookie is set, so `credentials: 'include'` sends it: the server knows the mode
    outside: Outside | None = None  # a layer added after CORSMiddleware (so it runs outside it)
    verified: bool = True
    fixed_init: str | None = None  # the page as corstrace's fix says to write it
    extra: dict[str, Any] = field(default_factory=dict)


JSON = "headers: {'Content-Type': 'application/json'}, body: '{}'"
INCLUDE = "credentials: 'include'"


def _on(origin: str, **cors: Any) -> dict[str, Any]:
    return {"allow_origins": [origin], **cors}


CASES: dict[str, Case] = {
    "wrong-origin": Case(lambda o: {"allow_origins": ["http://localhost:5173"]}, "/items", "{}"),
    "trailing-slash": Case(lambda o: {"allow_origins": [o + "/"]}, "/items", "{}"),
    "localhost-not-127": Case(lambda o: {"allow_origins": [o.replace("127.0.0.1", "localhost")]}, "/items", "{}"),
    "wrong-scheme": Case(lambda o: {"allow_origins": [o.replace("http:", "https:")]}, "/items", "{}"),
    "upper-case-origin": Case(lambda o: {"allow_origins": [o.upper()]}, "/items", "{}"),
    "missing-method-default": Case(lambda o: _on(o), "/items/1", f"{{method: 'PUT', {JSON}}}"),
    "missing-method-delete": Case(lambda o: _on(o, allow_methods=["GET", "POST"]), "/items/1", "{method: 'DELETE'}"),
    "methods-as-a-string": Case(lambda o: _on(o, allow_methods="GET,POST"), "/items/1", "{method: 'PUT'}"),
    "lower-case-config-methods": Case(lambda o: _on(o, allow_methods=["get", "put"]), "/items/1", "{method: 'PUT'}"),
    "missing-header": Case(lambda o: _on(o), "/items", "{headers: {'X-Request-ID': '1'}}"),
    "missing-headers": Case(lambda o: _on(o, allow_headers=["X-A"]), "/items", "{headers: {'X-A': '1', 'X-B': '2'}}"),
    "header-as-a-string": Case(
        lambda o: _on(o, allow_headers="X-Request-ID"), "/items", "{headers: {'X-Request-ID': '1'}}"
    ),
    "credentials-without-allow-credentials": Case(lambda o: _on(o), "/session", f"{{{INCLUDE}}}", cookie=True),
    "credentials-unknown-to-the-server": Case(lambda o: _on(o), "/session", f"{{{INCLUDE}}}"),
    "wildcard-with-credentials": Case(lambda o: {"allow_origins": ["*"]}, "/session", f"{{{INCLUDE}}}", cookie=True),
    "wildcard-with-unknown-credentials": Case(lambda o: {"allow_origins": ["*"]}, "/session", f"{{{INCLUDE}}}"),
    "authorization-with-credentials": Case(
        lambda o: _on(o, allow_headers=["Content-Type"]),
        "/me",
        f"{{headers: {{Authorization: 'Bearer t'}}, {INCLUDE}}}",
        cookie=True,
    ),
    "put-with-credentials": Case(
        lambda o: _on(o, allow_methods=["GET", "POST"]), "/items/1", f"{{method: 'PUT', {INCLUDE}}}", cookie=True
    ),
    "wrong-origin-with-credentials": Case(
        lambda o: {"allow_origins": ["http://localhost:5173"]}, "/session", f"{{{INCLUDE}}}", cookie=True
    ),
    "regex-without-port": Case(lambda o: {"allow_origin_regex": r"http://127\.0\.0\.1"}, "/items", "{}"),
    "regex-for-another-site": Case(
        lambda o: {"allow_origin_regex": r"https://.*\.example\.com", "allow_methods": ["*"]},
        "/items/1",
        "{method: 'PUT'}",
    ),
    "auth-layer-outside-cors": Case(
        lambda o: _on(o), "/me", "{headers: {Authorization: 'Bearer t'}}", outside=add_auth, verified=False
    ),
    "preflight-redirected-outside-cors": Case(
        lambda o: _on(o, allow_methods=["PUT"]), "/old/1", "{method: 'PUT'}", outside=add_moved, verified=False
    ),
    "crash": Case(lambda o: _on(o), "/crash", "{}", verified=False),
    "lower-case-patch": Case(
        lambda o: _on(o, allow_methods=["GET", "POST"]), "/items/1", "{method: 'patch'}", fixed_init="{method: 'PATCH'}"
    ),
    "lower-case-patch-all-methods": Case(
        lambda o: _on(o, allow_methods=["*"]), "/items/1", "{method: 'patch'}", fixed_init="{method: 'PATCH'}"
    ),
    "json-post-through-a-307": Case(lambda o: _on(o), "/items/", f"{{method: 'POST', {JSON}}}"),
    "redirect-hop-with-credentials": Case(lambda o: _on(o), "/items/", f"{{{INCLUDE}}}", cookie=True),
    "origins-as-a-string": Case(
        lambda o: {"allow_origins": "http://localhost:5173,http://app.example", "allow_methods": ["PUT"]},
        "/items/1",
        "{method: 'PUT'}",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_fix_corstrace_shows_makes_chromium_allow_the_exchange(name: str, page_url: str, page: Any) -> None:
    case = CASES[name]
    origin = page_url
    page.goto(page_url + "/")
    if case.cookie:
        page.context.add_cookies([{"name": "session", "value": "s1", "url": page_url}])
    with captured_events() as logs:
        with run_server(misconfigured(case.cors(origin), outside=case.outside)) as api:
            assert _fetch(page, api + case.path, case.init) == "blocked"
            decider = _decider(logs, api)
        code, verified = shown_fix(decider)
        assert verified is case.verified, decider["fix"]
        if case.fixed_init is not None:
            assert f"`method: '{case.fixed_init.split(chr(39))[1]}'`" in decider["fix"]
        init = case.fixed_init or case.init
        with run_server(applying(code, outside=case.outside)) as fixed:
            outcome = _fetch(page, fixed + case.path, init)
            assert outcome.startswith("ok"), (code, outcome)
            logs.wait_for(lambda e: _final(e, fixed))
            after = _legs_of(logs, fixed)
    # corstrace agrees with Chromium on the fixed exchange, in the mode the page used.
    credentialed = "include" in init
    for leg in after:
        assert leg["verdict"] == "allowed", leg
        if credentialed and leg["if_credentialed"] is not None:
            assert leg["if_credentialed"]["verdict"] == "allowed", leg


# --- the crash fix keeps corstrace right --------------------------------------------------------------------


def test_the_crash_fix_keeps_corstraces_verdicts_right(page_url: str, page: Any) -> None:
    """Applied as shown (corstrace outside the new CORSMiddleware), no request is reported blocked falsely."""
    page.goto(page_url + "/")
    origin = page_url
    with captured_events() as logs:
        with run_server(misconfigured(_on(origin))) as api:
            assert _fetch(page, api + "/crash", "{}") == "blocked"
            decider = _decider(logs, api)
        code, verified = shown_fix(decider)
        assert code.startswith("app = CORSTraceMiddleware(CORSMiddleware(app, ") and verified is False
        with run_server(applying(code)) as fixed:
            seen = {
                "/crash": _fetch(page, fixed + "/crash", "{}"),
                "/items": _fetch(page, fixed + "/items", "{}"),
                "/items/1": _fetch(page, fixed + "/items/1", "{method: 'PUT'}"),
            }
            logs.wait_for(lambda e: e["event"] in LEGS and e["url"] == fixed + "/items")
            logs.wait_for(lambda e: e["event"] in LEGS and e["url"] == fixed + "/crash")
            logs.wait_for(lambda e: e["event"] in LEGS and e["url"] == fixed + "/items/1")
            lint = [e for e in logs if e["event"] == "cors.lint"]
    assert seen == {"/crash": "ok 500", "/items": "ok 200", "/items/1": "blocked"}
    verdicts = {e["path"]: e["verdict"] for e in _legs_of(logs, fixed)}
    assert verdicts == {"/crash": "allowed", "/items": "allowed", "/items/1": "blocked"}
    crash = next(e for e in _legs_of(logs, fixed) if e["path"] == "/crash")
    assert crash["reason"] is None and crash["exception_type"] == "RuntimeError" and crash["status"] == 500
    assert not any(f["code"] in ("tracer_inside_cors", "no_cors_middleware") for f in lint), lint


def test_heal_errors_keeps_corstraces_verdicts_right(page_url: str, page: Any) -> None:
    """The crash fix's other option: the page reads the 500, corstrace says allowed (healed)."""
    page.goto(page_url + "/")
    app = routes()
    app.add_middleware(CORSMiddleware, **_on(page_url))
    app.add_middleware(CORSTraceMiddleware, inspector=False, aggregate_window=0, heal_errors=True)
    with captured_events() as logs, run_server(app) as api:
        assert _fetch(page, api + "/crash", "{}") == "ok 500"
        (event,) = logs.wait_for(lambda e: e["event"] in LEGS and e["url"] == api + "/crash")
    assert event["verdict"] == "allowed" and event["healed"] is True


# --- the demo's exchanges ---------------------------------------------------------------------------------


def _demo_options(origin: str) -> dict[str, Any]:
    """examples/app.py's CORSMiddleware options, for a page on ``origin``."""
    from examples import app as demo

    (entry,) = [m for m in demo.app.user_middleware if m.cls is CORSMiddleware]
    return {**entry.kwargs, "allow_origins": [origin]}


def _demo_routes() -> FastAPI:
    """A copy of examples/app.py's app without its middleware."""
    from examples import app as demo

    app = FastAPI(openapi_url=None)
    app.router.routes.extend(route for route in demo.app.routes if isinstance(route, APIRoute))
    return app


def _demo_api(origin: str) -> FastAPI:
    app = _demo_routes()
    app.add_middleware(CORSMiddleware, **_demo_options(origin))
    app.add_middleware(CORSTraceMiddleware, inspector=False, aggregate_window=0)
    return app


@pytest.fixture(scope="module")
def frontend() -> Iterator[str]:
    """examples/frontend.py, reached as http://localhost:P (the API is on 127.0.0.1: another site, as in the demo)."""
    from examples.frontend import app

    with run_server(app) as url:
        yield url.replace("127.0.0.1", "localhost")


def _click(page: Any, frontend: str, api: str, card: str) -> str:
    page.goto(f"{frontend}/?api={api}")
    page.click(f"[data-request={card}] button")
    output = page.locator(f"[data-request={card}] output")
    page.wait_for_function(
        "el => el.dataset.outcome && el.dataset.outcome !== 'pending'", arg=output.element_handle(), timeout=10000
    )
    outcome: str = output.get_attribute("data-outcome")
    return outcome


DEMO_PATHS = {
    "simple-get": "/items",
    "json-post": "/items",
    "put": "/items/1",
    "authorization": "/me",
    "credentials": "/session",
    "crash": "/crash",
    "redirect": "/items/",
}


@pytest.mark.parametrize("card", list(DEMO_PATHS))
def test_each_demo_exchange_is_allowed_or_fixed_by_what_corstrace_shows(card: str, frontend: str, page: Any) -> None:
    """The demo's buttons: the allowed ones need no fix; each blocked one passes once its shown fix is applied."""
    with captured_events() as logs:
        with run_server(_demo_api(frontend)) as api:
            outcome = _click(page, frontend, api, card)
            if outcome in ("ok", "http-error"):
                logs.wait_for(lambda e: _final(e, api))
                legs = _legs_of(logs, api)
                assert all(leg["verdict"] == "allowed" for leg in legs), legs
                assert all(leg["fix"] is None for leg in legs)
                return
            assert outcome == "blocked"
            decider = _decider(logs, api)
        code, verified = shown_fix(decider)
        assert verified is (card != "crash"), decider["fix"]
        with run_server(applying(code, base=_demo_routes)) as fixed:
            assert _click(page, frontend, fixed, card) in ("ok", "http-error")
            logs.wait_for(lambda e: _final(e, fixed))
            assert all(leg["verdict"] == "allowed" for leg in _legs_of(logs, fixed))


# --- what the server can know about credentials -----------------------------------------------------------


def test_a_credentialed_cross_site_request_is_reported_blocked(frontend: str, page: Any) -> None:
    """The demo's "With cookies" button, no cookie set: Chromium blocks it, and corstrace says so (it knows the
    credentials mode from Sec-Fetch-Storage-Access, issue 15 item 3), with the verified fix."""
    with captured_events() as logs, run_server(_demo_api(frontend)) as api:
        assert _click(page, frontend, api, "credentials") == "blocked"
        (event,) = logs.wait_for(lambda e: e["event"] in LEGS and e["url"] == api + "/session")
    assert event["credentials"] == "include"
    assert event["verdict"] == "blocked" and event["reason"] == "InvalidAllowCredentials"
    assert event["fix_verified"] is True and event["fix_code"].endswith("allow_credentials=True)")

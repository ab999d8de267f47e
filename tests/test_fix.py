"""Fixes proven to work (issue 15): the event's fix covers the whole exchange, and is replayed before it is shown.

Each test sends the leg a browser would send to a FastAPI app (TestClient), reads the event corstrace logs, and
checks its `fix`, `fix_code` and `fix_verified`. tests/test_fix_browser.py applies the fixes and asks Chromium.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.testclient import TestClient

from corstrace import CORSTraceMiddleware, _fix

FRONTEND = "http://localhost:3000"


def _routes() -> FastAPI:
    app = FastAPI()

    @app.get("/items")
    def items() -> list[int]:
        return [1]

    @app.put("/items/{item_id}")
    @app.patch("/items/{item_id}")
    def change(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/slashed/")
    def slashed() -> str:
        return "ok"

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError("database is down")

    return app


def make_app(*, cors_class: type[CORSMiddleware] = CORSMiddleware, auth_outside: bool = False, **cors: Any) -> FastAPI:
    app = _routes()
    app.add_middleware(cors_class, **cors)
    if auth_outside:

        async def auth(request: Request, call_next: Any) -> Response:
            if "authorization" not in request.headers:
                return JSONResponse({"detail": "Not authenticated"}, status_code=401)
            response: Response = await call_next(request)
            return response

        app.add_middleware(BaseHTTPMiddleware, dispatch=auth)
    app.add_middleware(CORSTraceMiddleware, inspector=False, aggregate_window=0)
    return app


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def _legs(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] in ("cors.blocked", "cors.allowed")]


def _preflight(app: FastAPI, path: str, method: str, headers: str = "", origin: str = FRONTEND, **extra: str) -> None:
    request_headers = {"Origin": origin, "Access-Control-Request-Method": method, **extra}
    if headers:
        request_headers["Access-Control-Request-Headers"] = headers
    TestClient(app).options(path, headers=request_headers)


def _get(app: FastAPI, path: str, origin: str = FRONTEND, **headers: str) -> None:
    TestClient(app, raise_server_exceptions=False).get(path, headers={"Origin": origin, **headers})


def _only(logs: list[dict[str, Any]]) -> dict[str, Any]:
    (event,) = _legs(logs)
    return event


DEMO = {"allow_origins": [FRONTEND], "allow_methods": ["GET", "POST"], "allow_headers": ["Content-Type"]}
ORIGINS = f'allow_origins=["{FRONTEND}"]'


# --- the whole exchange, for every credentials mode the page may use -------------------------------------------


def test_authorization_preflight_fix_adds_the_header_and_credentials(logs: list[dict[str, Any]]) -> None:
    """The demo's /me: Authorization alone, or credentials alone, leaves it blocked; the fix has both."""
    _preflight(make_app(**DEMO), "/items", "GET", "authorization")
    event = _only(logs)
    assert event["fix_verified"] is True
    assert event["fix_code"] == (
        f'app.add_middleware(CORSMiddleware, {ORIGINS}, allow_methods=["GET", "POST"], '
        'allow_headers=["Content-Type", "Authorization"], allow_credentials=True)'
    )
    assert event["fix"].endswith(event["fix_code"])


def test_put_preflight_fix_adds_the_method_and_credentials(logs: list[dict[str, Any]]) -> None:
    """PUT + credentials: the same split as Authorization + credentials, fixed in one call."""
    _preflight(make_app(**DEMO), "/items/1", "PUT", "content-type")
    event = _only(logs)
    assert event["fix_verified"] is True
    assert 'allow_methods=["GET", "POST", "PUT"]' in event["fix_code"]
    assert event["fix_code"].endswith("allow_credentials=True)")


def test_credentialed_fix_of_an_allowed_leg_is_verified(logs: list[dict[str, Any]]) -> None:
    """An uncredentialed GET passes; with credentials it would not: that fix is proven too."""
    _get(make_app(**DEMO), "/items")
    event = _only(logs)
    assert event["verdict"] == "allowed" and event["fix"] is None and event["fix_verified"] is False
    assert event["if_credentialed"]["fix"] == (
        f'app.add_middleware(CORSMiddleware, {ORIGINS}, allow_methods=["GET", "POST"], '
        'allow_headers=["Content-Type"], allow_credentials=True)'
    )


def test_known_credentials_fix_only_what_they_need(logs: list[dict[str, Any]]) -> None:
    """A Cookie proves credentials: the fix turns them on, and says nothing about the other mode."""
    _get(make_app(allow_origins=[FRONTEND]), "/items", Cookie="session=1")
    event = _only(logs)
    assert (event["reason"], event["fix_verified"]) == ("InvalidAllowCredentials", True)
    assert event["fix"] == event["fix_code"] == f"app.add_middleware(CORSMiddleware, {ORIGINS}, allow_credentials=True)"


def test_wrong_origin_with_credentials_fix_adds_the_origin_and_credentials(logs: list[dict[str, Any]]) -> None:
    _get(make_app(allow_origins=["http://localhost:5173"]), "/items", Cookie="session=1")
    event = _only(logs)
    assert event["fix_verified"] is True
    assert event["fix_code"] == (
        'app.add_middleware(CORSMiddleware, allow_origins=["http://localhost:5173", "http://localhost:3000"], '
        "allow_credentials=True)"
    )


def test_wildcard_with_credentials_names_the_origin_and_refuses_the_wildcard(logs: list[dict[str, Any]]) -> None:
    """allow_origins=["*"] + allow_credentials=True would pass, by echoing every site: the fix names the origin."""
    _get(make_app(allow_origins=["*"]), "/items", Cookie="session=1")
    event = _only(logs)
    assert event["reason"] == "WildcardOriginNotAllowed" and event["fix_verified"] is True
    assert event["fix_code"] == f"app.add_middleware(CORSMiddleware, {ORIGINS}, allow_credentials=True)"
    assert "any site could read your users' data" in event["fix"]
    assert event["explanation"].startswith('CORSMiddleware has allow_origins=["*"] without allow_credentials')


def test_wildcard_without_known_credentials_keeps_the_wildcard(logs: list[dict[str, Any]]) -> None:
    """Only naming origins makes credentials pass: offered for credentials, never as the wildcard + credentials."""
    _get(make_app(allow_origins=["*"]), "/items")
    event = _only(logs)
    assert event["verdict"] == "allowed" and event["fix"] is None
    fix = event["if_credentialed"]["fix"]
    assert fix.endswith(f"app.add_middleware(CORSMiddleware, {ORIGINS}, allow_credentials=True)")
    assert "any site could read" in fix


def test_trailing_slash_origin_is_replaced_not_kept(logs: list[dict[str, Any]]) -> None:
    _get(make_app(allow_origins=[FRONTEND + "/"]), "/items", Cookie="a=b")
    event = _only(logs)
    assert event["fix_verified"] is True
    assert event["fix_code"] == f"app.add_middleware(CORSMiddleware, {ORIGINS}, allow_credentials=True)"
    assert "trailing slash" in event["explanation"]


def test_regex_that_misses_gets_the_origin_listed(logs: list[dict[str, Any]]) -> None:
    _preflight(make_app(allow_origin_regex=r"https://.*\.example\.com", allow_methods=["*"]), "/items/1", "PUT")
    event = _only(logs)
    assert event["fix_verified"] is True
    assert event["fix_code"] == (
        f'app.add_middleware(CORSMiddleware, {ORIGINS}, allow_methods=["*"], allow_credentials=True, '
        'allow_origin_regex="https://.*\\\\.example\\\\.com")'
    )


def test_header_given_as_a_string_is_not_doubled(logs: list[dict[str, Any]]) -> None:
    """allow_headers="X-Request-ID" is a set of characters to Starlette; the fix makes it a list, once."""
    _preflight(make_app(allow_origins=[FRONTEND], allow_headers="X-Request-ID"), "/items", "GET", "x-request-id")
    event = _only(logs)
    assert event["fix_verified"] is True
    assert 'allow_headers=["X-Request-ID"]' in event["fix_code"]
    assert "X-Request-Id" not in event["fix_code"]


def test_header_listed_in_another_case_is_not_added_again(logs: list[dict[str, Any]]) -> None:
    _preflight(make_app(allow_origins=[FRONTEND], allow_headers=["x-request-id"]), "/items", "GET", "x-request-id,x-b")
    event = _only(logs)
    assert 'allow_headers=["x-request-id", "X-B"]' in event["fix_code"]


def test_methods_given_as_a_string_become_a_list(logs: list[dict[str, Any]]) -> None:
    _preflight(make_app(allow_origins=[FRONTEND], allow_methods="GET,POST"), "/items/1", "PUT")
    event = _only(logs)
    assert event["fix_verified"] is True
    assert 'allow_methods=["GET", "POST", "PUT"]' in event["fix_code"]


def test_lower_case_methods_in_the_configuration_are_upper_cased(logs: list[dict[str, Any]]) -> None:
    _preflight(make_app(allow_origins=[FRONTEND], allow_methods=["get", "post"]), "/items/1", "PUT")
    event = _only(logs)
    assert 'allow_methods=["GET", "POST", "PUT"]' in event["fix_code"]


def test_private_network_preflight_is_allowed_by_the_fix(logs: list[dict[str, Any]]) -> None:
    app = make_app(allow_origins=[FRONTEND])
    _preflight(app, "/items", "GET", **{"Access-Control-Request-Private-Network": "true"})
    event = _only(logs)
    assert event["fix_verified"] is True and "allow_private_network=True" in event["fix_code"]


# --- the page's own mistakes --------------------------------------------------------------------------------


def test_lower_case_patch_is_fixed_on_the_page(logs: list[dict[str, Any]]) -> None:
    """fetch() sends `patch` as written; listing it would pass CORS and the route would answer 405."""
    _preflight(make_app(**DEMO), "/items/1", "patch", "content-type")
    event = _only(logs)
    assert event["fix_verified"] is True
    assert "`method: 'PATCH'`" in event["fix"]
    assert '"patch"' not in event["fix_code"]
    assert 'allow_methods=["GET", "POST", "PATCH"]' in event["fix_code"]


def test_lower_case_patch_with_every_method_allowed_needs_only_the_page(logs: list[dict[str, Any]]) -> None:
    _preflight(make_app(allow_origins=[FRONTEND], allow_methods=["*"], allow_credentials=True), "/items/1", "patch")
    event = _only(logs)
    assert (event["fix_code"], event["fix_verified"]) == ("method: 'PATCH'", True)
    assert event["fix"].startswith("Fix the page")


# --- redirect hops --------------------------------------------------------------------------------------------


def test_a_hops_fix_replays_the_redirect_before_it(logs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """The leg after a trailing-slash 307 is fixed for the whole chain: the 307 leg is replayed too."""
    replayed = _recording(monkeypatch)
    client = TestClient(make_app(allow_origins=[FRONTEND]))
    client.get("/slashed", headers={"Origin": FRONTEND}, follow_redirects=True)
    first, second = _legs(logs)
    assert first["status"] == 307 and second["redirected_from"] == "http://testserver/slashed"
    assert second["if_credentialed"]["fix"].endswith("allow_credentials=True)")
    assert (False, "GET", "http://testserver/slashed") in replayed
    assert replayed.index((False, "GET", "http://testserver/slashed")) < replayed.index(
        (False, "GET", "http://testserver/slashed/")
    )


def test_replay_follows_a_307_and_preflights_again_at_its_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-simple request redirected by a 307 is preflighted at the target (browser-facts-2)."""
    replayed = _recording(monkeypatch)
    settings = _settings(allow_origins=[FRONTEND], allow_methods=["PUT"]).variant({})
    exchange = _fix.Exchange(
        FRONTEND, "PUT", "http://api.test/a", ("x-token",), False,
        (("http://api.test/a", 307, "http://api.test/b"),),
    )  # fmt: skip
    failure = _fix.replay(settings, exchange, "omit")
    assert failure is not None and failure.leg.preflight and failure.leg.url == "http://api.test/a"
    assert _fix.replay(_settings(allow_origins=[FRONTEND], allow_methods=["PUT"], allow_headers=["X-Token"]).variant(
        {}), exchange, "omit") is None  # fmt: skip
    assert replayed[-4:] == [
        (True, "PUT", "http://api.test/a"),
        (False, "PUT", "http://api.test/a"),
        (True, "PUT", "http://api.test/b"),
        (False, "PUT", "http://api.test/b"),
    ]


def test_replay_turns_a_post_into_a_get_after_a_303(monkeypatch: pytest.MonkeyPatch) -> None:
    replayed = _recording(monkeypatch)
    settings = _settings(allow_origins=[FRONTEND], allow_methods=["POST"]).variant({})
    exchange = _fix.Exchange(
        FRONTEND, "POST", "http://api.test/a", ("content-type",), False,
        (("http://api.test/a", 303, "http://api.test/b"),),
    )  # fmt: skip
    assert _fix.replay(settings, exchange, "omit") is None
    assert replayed == [
        (True, "POST", "http://api.test/a"),
        (False, "POST", "http://api.test/a"),
        (False, "GET", "http://api.test/b"),
    ]


def _recording(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, str, str]]:
    replayed: list[tuple[bool, str, str]] = []
    answer = _fix._answer

    def recording(cors: Any, leg: _fix.ReplayLeg, route: Any) -> Any:
        replayed.append((leg.preflight, leg.method, leg.url))
        return answer(cors, leg, route)

    monkeypatch.setattr(_fix, "_answer", recording)
    return replayed


def test_replay_taints_the_origin_after_a_cross_origin_redirect() -> None:
    settings = _settings(allow_origins=[FRONTEND])
    exchange = _fix.Exchange(
        FRONTEND, "GET", "http://api.test/a", (), False, (("http://api.test/a", 302, "http://cdn.test/b"),)
    )
    failure = _fix.replay(settings.variant({}), exchange, "omit")
    assert failure is not None and failure.leg.origin == "null"
    found = _fix.search(settings, exchange, ("omit",))
    assert found.verified is False and found.refusal is not None and "Origin: null" in found.refusal


def _settings(**kwargs: Any) -> Any:
    from corstrace._config import Settings

    async def noop(scope: Any, receive: Any, send: Any) -> None:
        pass

    return Settings(CORSMiddleware(noop, **kwargs), kwargs)  # type: ignore[arg-type]


# --- what cannot be verified ----------------------------------------------------------------------------------


def test_crash_fix_keeps_tracing_and_is_not_verified(logs: list[dict[str, Any]]) -> None:
    """The crash's fix wraps the whole app in CORSMiddleware and corstrace around it; a crash is not replayed."""
    _get(make_app(**DEMO), "/crash")
    event = _only(logs)
    assert event["fix_verified"] is False
    assert event["fix_code"] == (
        f'app = CORSTraceMiddleware(CORSMiddleware(app, {ORIGINS}, allow_methods=["GET", "POST"], '
        'allow_headers=["Content-Type"]))'
    )
    assert "remove app.add_middleware(CORSMiddleware, ...) and app.add_middleware(CORSTraceMiddleware)" in event["fix"]
    assert "heal_errors=True" in event["fix"] and "Not verified" in event["fix"]


def test_layer_outside_cors_fix_reorders_with_every_option_the_exchange_needs(logs: list[dict[str, Any]]) -> None:
    _preflight(make_app(allow_origins=[FRONTEND], auth_outside=True), "/items", "GET", "authorization")
    event = _only(logs)
    assert event["layer"] == "BaseHTTPMiddleware(auth)" and event["fix_verified"] is False
    assert event["fix_code"] == (
        f'app.add_middleware(CORSMiddleware, {ORIGINS}, allow_headers=["Authorization"], allow_credentials=True)'
        "  # after adding BaseHTTPMiddleware(auth)"
    )
    assert "Not verified" in event["fix"]


def test_origin_null_is_never_allowed_by_a_fix(logs: list[dict[str, Any]]) -> None:
    _get(make_app(allow_origins=[FRONTEND]), "/items", origin="null")
    event = _only(logs)
    assert event["verdict"] == "blocked"
    assert event["fix_verified"] is False and event["fix_code"] is None
    assert "Not verified" in event["fix"] and "sandboxed" in event["fix"]


def test_an_origin_no_browser_sends_gets_no_code(logs: list[dict[str, Any]]) -> None:
    _get(make_app(allow_origins=[FRONTEND]), "/items", origin='http://a.test"),x=("')
    event = _only(logs)
    assert event["fix_verified"] is False and event["fix_code"] is None


# --- the wording -------------------------------------------------------------------------------------------


def test_why_leads_with_the_server_side_cause(logs: list[dict[str, Any]]) -> None:
    _preflight(make_app(**DEMO), "/items/1", "PUT")
    event = _only(logs)
    assert event["explanation"].startswith('CORSMiddleware refused the preflight: PUT is not in allow_methods ["GET"')
    assert "if_credentialed" not in event["explanation"]


def test_why_of_a_credentials_block_names_the_setting(logs: list[dict[str, Any]]) -> None:
    _get(make_app(allow_origins=[FRONTEND]), "/items", Cookie="a=b")
    event = _only(logs)
    assert event["explanation"].startswith("CORSMiddleware has allow_credentials=False (the default)")


# --- cost ---------------------------------------------------------------------------------------------------


class CountingCORS(CORSMiddleware):
    built = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        type(self).built += 1
        super().__init__(*args, **kwargs)


def test_repeated_legs_do_not_rebuild_the_middleware(logs: list[dict[str, Any]]) -> None:
    """The replay's middleware is built once per (settings, change), whatever the number of distinct legs."""
    app = make_app(cors_class=CountingCORS, **DEMO)
    _preflight(app, "/items", "GET", "authorization", **{"User-Agent": "one"})
    built = CountingCORS.built
    _preflight(app, "/items", "GET", "authorization", **{"User-Agent": "two"})
    _preflight(app, "/items/2", "GET", "authorization", **{"User-Agent": "three"})
    assert len(_legs(logs)) == 3 and all(e["fix_verified"] for e in _legs(logs))
    assert CountingCORS.built == built


def test_replay_uses_the_apps_own_cors_class(logs: list[dict[str, Any]]) -> None:
    before = CountingCORS.built
    _preflight(make_app(cors_class=CountingCORS, **DEMO), "/items/1", "PUT")
    assert CountingCORS.built > before + 1  # the app's own, then the replay's
    assert _only(logs)["fix_code"].startswith("app.add_middleware(CORSMiddleware")


def test_a_preflight_at_a_redirect_target_is_replayed_after_its_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 307's target is preflighted again; its fix is proven from the chain's first request on."""
    from corstrace._exchange import Hop
    from corstrace._facts import LegFacts, judge, texts_of
    from corstrace._leg import Target

    headers = ((b"origin", FRONTEND.encode()), (b"access-control-request-method", b"PUT"))
    hop = Hop(0, 0.0, FRONTEND, "PUT", "http://api.test/a/", "http://api.test/a/")
    facts = LegFacts("OPTIONS", FRONTEND, Target("http", "api.test", b"/a", b""), "/a", headers, 400, (), True,
                     "completed", None, False, hop, None, None)  # fmt: skip
    texts = texts_of(facts)
    exchange = _fix.exchange_of(facts, texts, judge(facts, texts))
    assert (exchange.method, exchange.url) == ("PUT", "http://api.test/a/")
    assert exchange.routes == (("http://api.test/a/", 307, "http://api.test/a"),)
    replayed = _recording(monkeypatch)
    settings = _settings(allow_origins=[FRONTEND])
    found = _fix.search(settings, exchange, ("omit",))
    assert found.verified and found.change == {"allow_methods": ["GET", "PUT"]}
    assert replayed[-4:] == [
        (True, "PUT", "http://api.test/a/"),
        (False, "PUT", "http://api.test/a/"),
        (True, "PUT", "http://api.test/a"),
        (False, "PUT", "http://api.test/a"),
    ]


def test_an_app_without_a_readable_cors_layer_gets_an_unverified_header_fix(logs: list[dict[str, Any]]) -> None:
    """No CORS configuration to replay: the engine's header-level fix, saying it was not verified."""

    async def plain(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    TestClient(CORSTraceMiddleware(plain, inspector=False)).get("/", headers={"Origin": FRONTEND})
    event = _only(logs)
    assert event["verdict"] == "blocked" and (event["fix_verified"], event["fix_code"]) == (False, None)
    assert event["fix"].endswith("Not verified: corstrace cannot read this app's CORS layer, so it could not replay "
                                 "the exchange with the change.")  # fmt: skip

"""corstrace.testing: pin a FastAPI app's CORS setup in its own tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.testclient import TestClient

import corstrace.testing
from corstrace.engine import Verdict
from corstrace.testing import CORSResult, assert_cors_allowed, assert_cors_blocked, check_cors
from tests.support import run_server

FRONTEND = "http://localhost:3000"


def make_app(*, cors: dict[str, Any] | None = None, auth_outside: bool = False, auth_inside: bool = False) -> FastAPI:
    """A small API with CORSMiddleware configured by ``cors`` and, optionally, a token check around or inside it."""
    app = FastAPI()

    @app.get("/items")
    @app.put("/items")
    async def items() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, str]:
        return {"cookie": request.headers.get("cookie", "")}

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("boom")

    @app.get("/old")
    async def old() -> Response:
        return RedirectResponse("/items", status_code=307)

    async def require_token(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if "authorization" not in request.headers:
            return PlainTextResponse("unauthorized", status_code=401)
        return await call_next(request)

    if auth_inside:
        app.add_middleware(BaseHTTPMiddleware, dispatch=require_token)
    settings = {"allow_origins": [FRONTEND], "allow_methods": ["GET", "PUT"], "allow_headers": ["authorization"]}
    app.add_middleware(CORSMiddleware, **(settings | (cors or {})))
    if auth_outside:  # added last = outermost: it answers the preflight before CORSMiddleware sees it
        app.add_middleware(BaseHTTPMiddleware, dispatch=require_token)
    return app


def test_allowed_request_returns_an_allowed_result() -> None:
    """A GET from the configured origin is allowed; the result carries the engine's verdicts."""
    result = check_cors(make_app(), "/items", origin=FRONTEND)
    assert (result.allowed, result.verdict, result.reason, len(result.legs)) == (True, "allowed", None, 1)
    assert isinstance(result.legs[0], Verdict)


def test_result_is_frozen() -> None:
    """CORSResult is immutable."""
    result = check_cors(make_app(), "/items", origin=FRONTEND)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.verdict = "blocked"  # type: ignore[misc]


def test_preflighted_request_has_both_legs() -> None:
    """A PUT with Authorization is preflighted, then sent: two allowed legs."""
    result = assert_cors_allowed(make_app(), "/items", origin=FRONTEND, method="PUT", headers={"Authorization": "x"})
    assert [(leg.method, leg.preflight) for leg in result.legs] == [("OPTIONS", True), ("PUT", False)]


def test_trailing_slash_in_allow_origins_is_caught() -> None:
    """allow_origins=["http://localhost:3000/"] never matches; the failure shows message, why and fix."""
    app = make_app(cors={"allow_origins": [FRONTEND + "/"]})
    with pytest.raises(AssertionError) as failure:
        assert_cors_allowed(app, "/items", origin=FRONTEND)
    result = check_cors(app, "/items", origin=FRONTEND)
    assert result.reason == "MissingAllowOriginHeader"
    message = str(failure.value)
    assert result.browser_message is not None and result.fix is not None
    assert result.browser_message in message and result.explanation in message and result.fix in message


def test_missing_method_is_caught() -> None:
    """A DELETE not in allow_methods fails its preflight (CORSMiddleware answers 400)."""
    result = check_cors(make_app(), "/items", origin=FRONTEND, method="DELETE")
    assert (result.reason, len(result.legs)) == ("PreflightInvalidStatus", 1)


def test_auth_middleware_outside_cors_is_caught() -> None:
    """A token check wrapped around CORSMiddleware answers the preflight 401 without CORS headers: blocked."""
    app = make_app(auth_outside=True)
    with pytest.raises(AssertionError, match="PreflightMissingAllowOriginHeader"):
        assert_cors_allowed(app, "/items", origin=FRONTEND, method="PUT", headers={"Authorization": "Bearer t"})


def test_auth_middleware_inside_cors_passes() -> None:
    """The same token check inside CORSMiddleware lets the preflight through: allowed."""
    app = make_app(auth_inside=True)
    assert_cors_allowed(app, "/items", origin=FRONTEND, method="PUT", headers={"Authorization": "Bearer t"})


def test_credentials_without_allow_credentials_is_caught() -> None:
    """credentials=True against allow_credentials=False is InvalidAllowCredentials."""
    assert_cors_blocked(make_app(), "/items", origin=FRONTEND, credentials=True, reason="InvalidAllowCredentials")


def test_credentials_with_allow_credentials_pass() -> None:
    """credentials=True with allow_credentials=True is allowed."""
    assert_cors_allowed(make_app(cors={"allow_credentials": True}), "/items", origin=FRONTEND, credentials=True)


def test_exception_in_a_route_is_a_500_without_cors_headers() -> None:
    """An unhandled exception becomes ServerErrorMiddleware's 500, which lacks CORS headers: blocked."""
    result = check_cors(make_app(), "/crash", origin=FRONTEND)
    assert (result.reason, result.exchange.legs[0].status) == ("MissingAllowOriginHeader", 500)


def test_redirect_is_followed_hop_by_hop() -> None:
    """A 307 to another path is followed, each hop judged."""
    result = assert_cors_allowed(make_app(), "/old", origin=FRONTEND)
    assert [leg.url for leg in result.legs] == ["http://testserver/old", "http://testserver/items"]


def test_assert_cors_blocked_fails_for_an_allowed_request() -> None:
    """assert_cors_blocked raises when the browser would allow the request."""
    with pytest.raises(AssertionError, match="the browser allows this request"):
        assert_cors_blocked(make_app(), "/items", origin=FRONTEND)


def test_assert_cors_blocked_checks_the_reason() -> None:
    """assert_cors_blocked with a reason fails when the request is blocked for another one."""
    with pytest.raises(AssertionError, match="for MissingAllowOriginHeader, not AllowOriginMismatch"):
        assert_cors_blocked(make_app(), "/items", origin="https://evil.test", reason="AllowOriginMismatch")


def test_test_client_is_accepted_and_its_cookies_follow_credentials() -> None:
    """A TestClient works too; its cookie jar is sent only with credentials=True."""
    app = make_app(cors={"allow_credentials": True})
    with TestClient(app) as client:
        client.cookies.set("session", "abc")
        with_cookie = check_cors(client, "/whoami", origin=FRONTEND, credentials=True)
        without = check_cors(client, "/whoami", origin=FRONTEND)
    sent = [dict((n.lower(), v) for n, v in r.exchange.legs[-1].request_headers) for r in (with_cookie, without)]
    assert (sent[0].get("cookie"), "cookie" in sent[1]) == ("session=abc", False)
    assert with_cookie.allowed and without.allowed


def test_httpx_client_against_a_real_server() -> None:
    """An httpx.Client with a base_url checks a real server over loopback."""
    with run_server(make_app(cors={"allow_origins": ["*"]})) as base, httpx.Client(base_url=base) as client:
        result = check_cors(client, "/items", origin=FRONTEND, credentials=True)
    assert result.reason == "WildcardOriginNotAllowed"


def test_async_client_is_refused() -> None:
    """An AsyncClient is refused with a clear TypeError (the helpers are sync)."""
    with pytest.raises(TypeError, match="sync client"):
        check_cors(httpx.AsyncClient(), "/items", origin=FRONTEND)


def test_report_is_the_check_text() -> None:
    """CORSResult.report() is the plain-text report of `corstrace check`."""
    report = check_cors(make_app(), "/items", origin="https://evil.test").report()
    assert report.startswith("BLOCKED  GET http://testserver/items from origin https://evil.test (no credentials)")


def test_public_names() -> None:
    """corstrace.testing exports exactly its helpers."""
    assert sorted(corstrace.testing.__all__) == [
        "CORSResult",
        "CheckError",
        "assert_cors_allowed",
        "assert_cors_blocked",
        "check_cors",
    ]
    assert CORSResult is corstrace.testing.CORSResult

"""CORSTraceMiddleware with a FastAPI app: the events it emits for each kind of exchange."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.testclient import TestClient

from corstrace import CORSTraceMiddleware
from corstrace._exchange import Tracker

FRONTEND = "http://localhost:3000"
SECRET = "s3cr3t-value-never-logged"


def _fail() -> None:
    raise RuntimeError("database is down")


def make_app(*, trace: dict[str, Any] | None = None, auth_outside: bool = False, **cors: Any) -> FastAPI:
    """A small API: CORSMiddleware with ``cors`` options, then CORSTraceMiddleware added last."""
    app = FastAPI()

    @app.get("/items")
    def items() -> list[int]:
        return [1, 2]

    @app.put("/items/{item_id}")
    def put_item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/crash")
    def crash() -> None:
        _fail()

    @app.get("/redirect-me/")
    def slashed() -> str:
        return "ok"

    cors.setdefault("allow_origins", [FRONTEND])
    app.add_middleware(CORSMiddleware, **cors)
    if auth_outside:

        async def auth(request: Request, call_next: Any) -> Response:
            if "authorization" not in request.headers:
                return JSONResponse({"detail": "Not authenticated"}, status_code=401)
            response: Response = await call_next(request)
            return response

        app.add_middleware(BaseHTTPMiddleware, dispatch=auth)
    app.add_middleware(CORSTraceMiddleware, **({"inspector": False} | (trace or {})))
    return app


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def _legs(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] in ("cors.blocked", "cors.allowed")]


def _preflight(client: TestClient, path: str, method: str, headers: str | None = None, origin: str = FRONTEND) -> Any:
    request_headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        request_headers["Access-Control-Request-Headers"] = headers
    return client.options(path, headers=request_headers)


def test_request_without_origin_emits_nothing(logs: list[dict[str, Any]]) -> None:
    """A request without Origin is not cross-origin: no event."""
    TestClient(make_app()).get("/items")
    assert _legs(logs) == []


def test_same_origin_request_emits_nothing(logs: list[dict[str, Any]]) -> None:
    """An Origin equal to the request's own origin is not cross-origin: no event."""
    TestClient(make_app()).get("/items", headers={"Origin": "http://testserver"})
    assert _legs(logs) == []


def test_allowed_simple_request_is_logged_at_debug(logs: list[dict[str, Any]]) -> None:
    """An allowed cross-origin GET emits one cors.allowed event at debug with the contract's keys."""
    TestClient(make_app()).get("/items", headers={"Origin": FRONTEND})
    (event,) = _legs(logs)
    assert event["event"] == "cors.allowed" and event["log_level"] == "debug"
    assert event["verdict"] == "allowed" and event["status"] == 200 and event["preflight"] is False
    for key in (
        "verdict reason browser_message firefox_message explanation fix warnings credentials if_credentialed "
        "preflight exchange_id origin method requested_method requested_headers url path status layer exception "
        "duration_ms request_headers response_headers"
    ).split():
        assert key in event, key


def test_preflight_for_a_method_not_allowed_explains_starlettes_400(logs: list[dict[str, Any]]) -> None:
    """Chrome only says 'not HTTP ok status'; the event names the method and the allow_methods default."""
    response = _preflight(TestClient(make_app()), "/items/1", "PUT")
    assert response.status_code == 400
    (event,) = _legs(logs)
    assert event["event"] == "cors.blocked" and event["log_level"] == "warning"
    assert event["reason"] == "PreflightInvalidStatus"
    assert event["layer"] == "CORSMiddleware"
    assert "PUT is not in allow_methods" in event["explanation"] and "(the default)" in event["explanation"]
    assert "It does not have HTTP ok status" in event["explanation"]
    assert "it never sends the actual `PUT` request" in event["explanation"]
    # The server cannot tell whether the page sends credentials: the fix covers both modes (issue 15).
    assert event["fix_code"] == (
        'app.add_middleware(CORSMiddleware, allow_origins=["http://localhost:3000"], allow_methods=["GET", "PUT"], '
        "allow_credentials=True)"
    )
    assert event["fix_verified"] is True and event["fix"].endswith(event["fix_code"])


def test_preflight_from_a_near_miss_origin_names_the_difference(logs: list[dict[str, Any]]) -> None:
    """127.0.0.1 vs localhost is named, and the fix adds the origin."""
    _preflight(TestClient(make_app()), "/items", "GET", "x-custom", origin="http://127.0.0.1:3000")
    (event,) = _legs(logs)
    assert event["reason"] == "PreflightMissingAllowOriginHeader"
    assert "origin 'http://127.0.0.1:3000' is not in allow_origins" in event["explanation"]
    assert "localhost and 127.0.0.1 are different origins" in event["explanation"]
    assert '"http://127.0.0.1:3000"' in event["fix"]


def test_denied_origin_on_actual_request_is_missing_allow_origin(logs: list[dict[str, Any]]) -> None:
    """A GET from an origin not in allow_origins is blocked for want of ACAO, with the config reason."""
    TestClient(make_app()).get("/items", headers={"Origin": "http://localhost:5173"})
    (event,) = _legs(logs)
    assert event["reason"] == "MissingAllowOriginHeader"
    assert event["server_reason"].startswith("origin 'http://localhost:5173' is not in allow_origins")
    assert event["browser_message"] == (
        "Access to fetch at 'http://testserver/items' from origin 'http://localhost:5173' has been blocked by "
        "CORS policy: No 'Access-Control-Allow-Origin' header is present on the requested resource."
    )


def test_exception_before_response_names_the_crash(logs: list[dict[str, Any]]) -> None:
    """An escaped exception is recorded with its type, message and file:line, and the browser's CORS verdict."""
    client = TestClient(make_app(), raise_server_exceptions=False)
    response = client.get("/crash", headers={"Origin": FRONTEND})
    assert response.status_code == 500 and "access-control-allow-origin" not in response.headers
    (event,) = _legs(logs)
    assert event["reason"] == "MissingAllowOriginHeader"
    assert event["status"] == 500 and event["layer"] == "ServerErrorMiddleware"
    assert event["exception_type"] == "RuntimeError"
    assert event["exception_message"] == "database is down"
    assert event["exception_where"].endswith("test_middleware.py:" + str(_fail.__code__.co_firstlineno + 1))
    assert event["exception"].endswith("RuntimeError: database is down")
    assert "RuntimeError('database is down')" in event["explanation"]


def test_heal_errors_adds_cors_headers_to_the_500(logs: list[dict[str, Any]]) -> None:
    """heal_errors=True makes the crash's 500 readable by the allowed origin and logs it as healed."""
    client = TestClient(make_app(trace={"heal_errors": True}), raise_server_exceptions=False)
    response = client.get("/crash", headers={"Origin": FRONTEND})
    assert response.status_code == 500
    assert response.headers["access-control-allow-origin"] == FRONTEND
    (event,) = _legs(logs)
    assert event["healed"] is True and event["verdict"] == "allowed"
    assert any(w["code"] == "healed" for w in event["warnings"])


def test_layer_outside_cors_is_named_for_a_401_preflight(logs: list[dict[str, Any]]) -> None:
    """An auth middleware added after CORSMiddleware answers the preflight 401: the event names it."""
    response = _preflight(TestClient(make_app(auth_outside=True)), "/items", "GET", "authorization")
    assert response.status_code == 401
    (event,) = _legs(logs)
    assert event["reason"] == "PreflightMissingAllowOriginHeader"
    assert event["layer"] == "BaseHTTPMiddleware(auth)"
    assert "add_middleware(CORSMiddleware" in event["fix"]


def test_preflight_and_actual_share_an_exchange_id(logs: list[dict[str, Any]]) -> None:
    """The actual request following a passed preflight belongs to the same exchange."""
    client = TestClient(make_app(allow_methods=["GET", "PUT"]))
    _preflight(client, "/items/1", "PUT")
    client.put("/items/1", headers={"Origin": FRONTEND})
    preflight, actual = _legs(logs)
    assert preflight["preflight"] is True and actual["preflight"] is False
    assert preflight["exchange_id"] == actual["exchange_id"]


def test_passed_preflight_whose_actual_request_never_comes_gets_a_note(
    logs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the link window has passed, the next leg reports the preflight left waiting, with its exchange id."""
    monkeypatch.setattr("corstrace._pipeline.Tracker", functools.partial(Tracker, window=0.0))
    monkeypatch.setattr("corstrace._exchange.SWEEP_EVERY", 0.0)
    client = TestClient(make_app(allow_methods=["GET", "PUT"]))
    _preflight(client, "/items/1?token=abc", "PUT")
    client.get("/items", headers={"Origin": FRONTEND})
    notes = [e for e in logs if e["event"] == "cors.exchange"]
    assert [note["code"] for note in notes] == ["preflight_without_actual"]
    assert notes[0]["exchange_id"] == _legs(logs)[0]["exchange_id"]
    assert notes[0]["message"].startswith(
        f"The preflight for PUT http://testserver/items/1?token=[redacted] from {FRONTEND} passed"
    )


def test_trailing_slash_redirect_is_followed_in_the_same_exchange(logs: list[dict[str, Any]]) -> None:
    """The 307 to the slashed path and the request that follows share the exchange."""
    client = TestClient(make_app())
    client.get("/redirect-me", headers={"Origin": FRONTEND}, follow_redirects=True)
    first, second = _legs(logs)
    assert first["status"] == 307 and second["status"] == 200
    assert first["exchange_id"] == second["exchange_id"]
    assert second["redirected_from"] == "http://testserver/redirect-me"


def test_cookie_proves_credentials_and_missing_acac_blocks(logs: list[dict[str, Any]]) -> None:
    """A Cookie means credentials: include; without allow_credentials the fix turns it on."""
    client = TestClient(make_app())
    client.get("/items", headers={"Origin": FRONTEND, "Cookie": f"session={SECRET}"})
    (event,) = _legs(logs)
    assert event["credentials"] == "include"
    assert event["reason"] == "InvalidAllowCredentials"
    assert event["fix"] == (
        'app.add_middleware(CORSMiddleware, allow_origins=["http://localhost:3000"], allow_credentials=True)'
    )


def test_crash_event_renders_with_structlogs_console_renderer(capsys: Any) -> None:
    """The `exception` key is traceback text, so the default ConsoleRenderer prints the crash event."""
    structlog.reset_defaults()
    TestClient(make_app(), raise_server_exceptions=False).get("/crash", headers={"Origin": FRONTEND})
    out = capsys.readouterr().out
    assert "cors.blocked" in out and "RuntimeError: database is down" in out
    assert "corstrace.internal_error" not in out


def test_secrets_never_reach_an_event(logs: list[dict[str, Any]]) -> None:
    """Authorization, Cookie and Set-Cookie values and secret query values are redacted in every event."""

    app = make_app(allow_methods=["*"], allow_headers=["*"])

    @app.get("/login")
    def login() -> Response:
        response = Response("ok")
        response.set_cookie("session", SECRET)
        return response

    client = TestClient(app)
    headers = {"Origin": FRONTEND, "Authorization": f"Bearer {SECRET}", "Cookie": f"a={SECRET}", "X-Api-Key": SECRET}
    client.get("/login?token=" + SECRET, headers=headers)
    _preflight(client, "/login", "GET", "authorization")
    assert len(_legs(logs)) == 2
    assert SECRET not in json.dumps(logs, default=str)
    event = _legs(logs)[0]
    assert ["authorization", "Bearer [redacted]"] in event["request_headers"]


def test_identical_blocked_exchanges_are_logged_three_times_then_counted(logs: list[dict[str, Any]]) -> None:
    """A frontend looping on a blocked request: the first three legs per window are logged, the rest counted."""
    with TestClient(make_app()) as client:
        for _ in range(50):
            client.get("/items", headers={"Origin": "http://localhost:5173"})
    assert len([e for e in logs if e["event"] == "cors.blocked"]) == 3
    (summary,) = [e for e in logs if e["event"] == "cors.blocked.summary"]
    assert summary["suppressed"] == 47


def test_a_second_click_on_a_broken_button_is_logged(logs: list[dict[str, Any]]) -> None:
    """Two identical blocked legs within the window are both logged (flood control starts later)."""
    client = TestClient(make_app())
    for _ in range(2):
        client.get("/items", headers={"Origin": "http://localhost:5173"})
    assert len([e for e in logs if e["event"] == "cors.blocked"]) == 2


def test_repeats_are_reported_on_the_next_logged_leg(logs: list[dict[str, Any]], monkeypatch: Any) -> None:
    """Once the window has passed, the next identical leg is logged with the count of those suppressed."""
    import types

    clock = [1000.0]  # the legs' own clock: windows run on when each leg started
    monkeypatch.setattr("corstrace._leg.time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    client = TestClient(make_app())
    for _ in range(5):
        client.get("/items", headers={"Origin": "http://localhost:5173"})
    clock[0] += 61
    client.get("/items", headers={"Origin": "http://localhost:5173"})
    blocked = [e for e in logs if e["event"] == "cors.blocked"]
    assert len(blocked) == 4 and blocked[-1]["repeats_suppressed"] == 2


def test_scanner_with_random_origins_is_capped(logs: list[dict[str, Any]]) -> None:
    """Blocked legs from many distinct origins for one path are capped per window."""
    client = TestClient(make_app())
    for n in range(200):
        client.get("/items", headers={"Origin": f"http://evil{n}.test"})
    assert len([e for e in logs if e["event"] == "cors.blocked"]) == 5


def test_startup_lint_runs_once_at_lifespan(logs: list[dict[str, Any]]) -> None:
    """Configuration findings are logged once when the app starts."""
    app = make_app(allow_origins=["http://localhost:3000/"])
    with TestClient(app) as client:
        client.get("/items", headers={"Origin": FRONTEND})
        client.get("/items", headers={"Origin": FRONTEND})
    lint = [e for e in logs if e["event"] == "cors.lint"]
    assert [e["code"] for e in lint] == ["malformed_origin"]
    assert lint[0]["log_level"] == "warning"


def test_a_bug_in_corstrace_never_fails_the_request(logs: list[dict[str, Any]], monkeypatch: Any) -> None:
    """When recording raises, the response is unchanged and the bug is logged once."""
    import corstrace._facts

    def broken(*args: Any) -> Any:
        raise ZeroDivisionError("corstrace bug")

    monkeypatch.setattr(corstrace._facts, "evaluate", broken)
    client = TestClient(make_app())
    for _ in range(3):
        response = client.get("/items", headers={"Origin": FRONTEND})
        assert response.status_code == 200 and response.json() == [1, 2]
    errors = [e for e in logs if e["event"] == "corstrace.internal_error"]
    assert len(errors) == 1


def test_websocket_handshake_from_a_foreign_origin_is_flagged(logs: list[dict[str, Any]]) -> None:
    """An accepted WebSocket handshake from an origin CORS would refuse is a hijacking warning."""
    app = make_app()

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    client = TestClient(app)
    client.get("/items")  # builds the stack so the configuration is known
    with client.websocket_connect("/ws", headers={"Origin": "http://evil.test"}) as socket:
        assert socket.receive_text() == "hi"
    (event,) = [e for e in logs if e["event"] == "cors.websocket"]
    assert event["websocket"] is True and event["status"] == 101
    assert event["log_level"] == "warning"
    assert event["warnings"][0]["code"] == "websocket_origin_unchecked"


def _app_with_exception_handler(**trace: Any) -> FastAPI:
    app = make_app(trace=trace)

    @app.exception_handler(Exception)
    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": "custom handler"}, status_code=500)

    return app


def test_exception_handler_500_outside_cors_is_explained(logs: list[dict[str, Any]]) -> None:
    """An Exception handler's 500 is sent by ServerErrorMiddleware, outside CORSMiddleware: no CORS headers."""
    client = TestClient(_app_with_exception_handler(), raise_server_exceptions=False)
    response = client.get("/crash", headers={"Origin": FRONTEND})
    assert response.json() == {"error": "custom handler"}
    assert "access-control-allow-origin" not in response.headers
    (event,) = _legs(logs)
    assert event["reason"] == "MissingAllowOriginHeader" and event["layer"] == "ServerErrorMiddleware"
    assert event["exception_type"] == "RuntimeError"


def test_heal_errors_keeps_the_apps_own_exception_handler_body(logs: list[dict[str, Any]]) -> None:
    """Healing adds CORS headers to the response the app's own Exception handler builds, not a generic one."""
    client = TestClient(_app_with_exception_handler(heal_errors=True), raise_server_exceptions=False)
    response = client.get("/crash", headers={"Origin": FRONTEND})
    assert response.status_code == 500 and response.json() == {"error": "custom handler"}
    assert response.headers["access-control-allow-origin"] == FRONTEND
    (event,) = _legs(logs)
    assert event["healed"] is True


@pytest.mark.parametrize(
    ("argv", "address"),
    [
        (["/venv/bin/uvicorn", "main:app"], ("127.0.0.1", 8000)),
        (["/venv/bin/uvicorn", "main:app", "--port", "8001", "--reload"], ("127.0.0.1", 8001)),
        (["uvicorn", "main:app", "--host=0.0.0.0", "--port=9000"], ("0.0.0.0", 9000)),
        (["fastapi", "dev", "main.py"], ("127.0.0.1", 8000)),
        (["uvicorn", "main:app", "--uds", "/tmp/app.sock"], ("127.0.0.1", None)),
        (["gunicorn", "main:app"], ("127.0.0.1", None)),
        (["python", "serve.py"], ("127.0.0.1", None)),
    ],
)
def test_startup_inspector_url_comes_from_the_command_line(argv: list[str], address: tuple[str, int | None]) -> None:
    """The inspector URL logged at startup uses uvicorn's --host/--port, and no guess for other launchers."""
    from corstrace._startup import cli_address

    assert cli_address(argv) == address


def test_startup_announces_the_inspector_url(logs: list[dict[str, Any]], monkeypatch: Any) -> None:
    """Under `uvicorn app --port 8001` the startup event carries the full inspector URL with its token."""
    monkeypatch.setattr("sys.argv", ["/venv/bin/uvicorn", "main:app", "--port", "8001"])
    token = "Tk3q9ZpLw2mXv8RbNc4YdS7e"
    monkeypatch.setenv("CORSTRACE_INSPECTOR_TOKEN", token)
    with TestClient(make_app(trace={"inspector": True})):
        pass
    (event,) = [e for e in logs if e["event"] == "corstrace.inspector"]
    assert event["url"] == f"http://127.0.0.1:8001/_corstrace/#token={token}"
    assert event["message"] == f"open http://127.0.0.1:8001/_corstrace/#token={token}"

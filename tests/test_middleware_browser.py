"""Real Chromium against a real FastAPI app: corstrace's events say what the browser printed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Header
from fastapi.middleware.cors import CORSMiddleware
from starlette.responses import HTMLResponse

from corstrace import CORSTraceMiddleware
from tests.support import captured_events, run_server

pytestmark = pytest.mark.browser


def _api(frontend: str) -> FastAPI:
    app = FastAPI()

    @app.get("/items")
    def items() -> list[int]:
        return [1]

    @app.put("/items/{item_id}")
    def put_item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/me")
    def me(authorization: str | None = Header(default=None)) -> dict[str, str | None]:
        return {"authorization": authorization}

    @app.get("/crash")
    def crash() -> None:
        raise RuntimeError("database is down")

    app.add_middleware(
        CORSMiddleware, allow_origins=[frontend], allow_methods=["GET", "POST"], allow_headers=["Content-Type"]
    )
    # Every test repeats some request; aggregation would (rightly) suppress the repeats.
    app.add_middleware(CORSTraceMiddleware, inspector=False, aggregate_window=0)
    return app


def _page_app() -> Any:
    async def index(scope: Any, receive: Any, send: Any) -> None:
        await HTMLResponse("<!doctype html><title>frontend</title><p>frontend</p>")(scope, receive, send)

    return index


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str]]:
    """The page on http://localhost:P1 and the API on http://127.0.0.1:P2: two origins."""
    with run_server(_page_app(), host="127.0.0.1") as page_url:
        frontend = page_url.replace("127.0.0.1", "localhost")
        with run_server(_api(frontend)) as api_url:
            yield frontend, api_url


SCENARIOS = {
    "simple-get": ("/items", "{}"),
    "put-not-allowed": ("/items/1", "{method: 'PUT'}"),
    "authorization-not-allowed": ("/me", "{headers: {Authorization: 'Bearer abc'}}"),
    "credentials-without-acac": ("/items", "{credentials: 'include'}"),
    "crash": ("/crash", "{}"),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_events_match_what_chromium_printed(name: str, servers: tuple[str, str], page: Any) -> None:
    """For each classic request, the event's verdict and message are what Chromium did and printed."""
    frontend, api = servers
    path, options = SCENARIOS[name]
    page.goto(frontend + "/")
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    with captured_events() as logs:
        outcome = page.evaluate(
            f"""async () => {{
                try {{ const r = await fetch({json.dumps(api + path)}, {options}); await r.text(); return "ok"; }}
                catch (e) {{ return "blocked"; }}
            }}"""
        )
        # The server logs a leg after the browser has its response: wait for the leg the page's request ends on.
        legs = logs.wait_for(lambda e: e["event"] in ("cors.blocked", "cors.allowed") and e["path"] == path)
    last = legs[-1]
    if outcome == "ok":
        assert [line for line in console if "blocked by CORS policy" in line] == []
        assert all(leg["verdict"] == "allowed" for leg in legs)
        return
    if not any("blocked by CORS policy" in line for line in console):
        # Console events may arrive after the fetch promise settled.
        page.wait_for_event("console", lambda message: "blocked by CORS policy" in message.text, timeout=5000)
    (printed,) = [line for line in console if "blocked by CORS policy" in line]
    if last["verdict"] == "blocked":
        assert printed == last["browser_message"]
    else:
        # The server cannot see `credentials: 'include'` without a cookie: the event says what happens if so.
        assert last["credentials"] == "unknown"
        assert printed == last["if_credentialed"]["browser_message"]
        assert last["if_credentialed"]["fix"].endswith("allow_credentials=True)")


def test_crash_event_names_the_exception_behind_the_cors_error(servers: tuple[str, str], page: Any) -> None:
    """The browser says MissingAllowOriginHeader; the event also carries the RuntimeError and its line."""
    frontend, api = servers
    page.goto(frontend + "/")
    with captured_events() as logs:
        page.evaluate(f"() => fetch({json.dumps(api + '/crash')}).catch(() => null)")
        (event,) = logs.wait_for(lambda e: e["event"] == "cors.blocked")
    assert event["reason"] == "MissingAllowOriginHeader"
    assert event["exception_type"] == "RuntimeError"
    assert event["exception_where"].startswith("tests/test_middleware_browser.py:")


def test_preflight_event_explains_what_starlette_refused(servers: tuple[str, str], page: Any) -> None:
    """Chrome says only 'not HTTP ok status'; the event names the refused header and the fix."""
    frontend, api = servers
    page.goto(frontend + "/")
    with captured_events() as logs:
        page.evaluate(
            f"() => fetch({json.dumps(api + '/me')}, {{headers: {{Authorization: 'Bearer x'}}}}).catch(() => null)"
        )
        (event,) = logs.wait_for(lambda e: e["event"] == "cors.blocked")
    assert event["preflight"] is True and event["reason"] == "PreflightInvalidStatus"
    assert "'authorization' not in allow_headers" in event["explanation"]
    assert 'allow_headers=["Content-Type", "Authorization"]' in event["fix"]
    assert "abc" not in json.dumps(logs) and "Bearer x" not in json.dumps(logs)

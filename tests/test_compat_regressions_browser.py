"""The real ``asgi-cors`` package under real uvicorn, driven by real Chromium: every exchange leaves an event.

asgi-cors (PyPI ``asgi-cors``) sends its response headers as ``[name, value]`` lists, which ASGI allows, and
its ``max_age`` as a str value. Issue 14 item 1: corstrace lost the legs' events (5 of 6 exchanges). A
separate module from tests/test_compat_regressions.py: Playwright's sync API must not share a module with
anyio tests (see the ``browser`` fixture).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from asgi_cors import asgi_cors
from starlette.responses import HTMLResponse

from corstrace import CORSTraceMiddleware
from tests.support import captured_events, run_server

pytestmark = pytest.mark.browser

LEG_EVENTS = ("cors.allowed", "cors.blocked")
# What the page does: six exchanges, two of them repeats of an earlier one (the legs the caches serve).
EXCHANGES = [
    ("/items", "{}"),
    ("/items", "{}"),
    ("/items/1", "{method: 'PUT', headers: {'Content-Type': 'application/json'}, body: '{}'}"),
    ("/items/1", "{method: 'PUT', headers: {'Content-Type': 'application/json'}, body: '{}'}"),
    ("/notes", "{method: 'POST', body: 'hello'}"),
    ("/me", "{headers: {'X-Custom': '1'}}"),
]


class LegCounter:
    """ASGI layer between corstrace and asgi-cors: the cross-origin legs the server really handled."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.legs: list[tuple[str, str, bool]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if b"origin" in headers:
                preflight = scope["method"] == "OPTIONS" and b"access-control-request-method" in headers
                self.legs.append((scope["method"], scope["path"], preflight))
        await self.app(scope, receive, send)


async def _api(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers everything, OPTIONS included (asgi-cors only adds headers; the app must answer the preflight)."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [[b"content-type", b"application/json"]]})
    await send({"type": "http.response.body", "body": b'{"ok": true}'})


def _page_app() -> Any:
    async def index(scope: Any, receive: Any, send: Any) -> None:
        await HTMLResponse("<!doctype html><title>frontend</title><p>frontend</p>")(scope, receive, send)

    return index


@pytest.fixture(scope="module")
def frontend() -> Iterator[str]:
    """The page on http://localhost:P; the APIs run on 127.0.0.1: another origin."""
    with run_server(_page_app(), host="127.0.0.1") as url:
        yield url.replace("127.0.0.1", "localhost")


def _run_page(page: Any, frontend: str, api: str) -> list[str]:
    page.goto(frontend + "/")
    calls = ", ".join(f"[{json.dumps(api + path)}, {options}]" for path, options in EXCHANGES)
    return list(
        page.evaluate(
            f"""async () => {{
                const out = [];
                for (const [url, options] of [{calls}]) {{
                    try {{ const r = await fetch(url, options); await r.text(); out.push("ok"); }}
                    catch (e) {{ out.push("blocked"); }}
                }}
                return out;
            }}"""
        )
    )


def _assert_every_leg_logged(logs: Any, counter: LegCounter) -> None:
    # Every fetch has settled, so every leg is in counter.legs; its event follows the response by microseconds.
    expected = len(counter.legs)
    logs.wait_for(lambda _: len([e for e in logs if e["event"] in LEG_EVENTS]) >= expected, timeout=5)
    events = [e for e in logs if e["event"] in LEG_EVENTS]
    assert sorted((e["method"], e["path"], e["preflight"]) for e in events) == sorted(counter.legs)
    # asgi-cors allows only Content-Type: the X-Custom preflight to /me is the one leg Chromium blocks.
    assert {(e["path"], e["verdict"]) for e in events} == {
        (path, "blocked" if path == "/me" else "allowed") for _, path, _ in counter.legs
    }
    assert [e for e in logs if e["event"] == "corstrace.internal_error"] == []


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="Issue 14 item 1: asgi-cors's [name, value] list headers make corstrace lose the legs' events",
)
def test_every_exchange_through_asgi_cors_in_chromium_is_logged(frontend: str, page: Any) -> None:
    """Six exchanges (preflights, repeats) through asgi-cors: Chromium allows all, corstrace logs every leg."""
    counter = LegCounter(asgi_cors(_api, hosts=[frontend], methods=["GET", "PUT", "POST"], headers=["content-type"]))
    app = CORSTraceMiddleware(counter, inspector=False, aggregate_window=0)
    with captured_events() as logs, run_server(app) as api:
        outcomes = _run_page(page, frontend, api)
        assert outcomes == ["ok"] * 5 + ["blocked"]
        _assert_every_leg_logged(logs, counter)


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason=(
        "Issue 14 item 1, then a str header value: asgi-cors sends max_age as [b'access-control-max-age', "
        "'600'] (uvicorn's h11 server sends it on), and corstrace's header decoding raises on it"
    ),
)
def test_asgi_cors_with_max_age_under_h11_is_logged(frontend: str, page: Any) -> None:
    """asgi-cors with ``max_age`` (a str header value) under uvicorn's h11: still every leg logged."""
    counter = LegCounter(
        asgi_cors(_api, hosts=[frontend], methods=["GET", "PUT", "POST"], headers=["content-type"], max_age=600)
    )
    app = CORSTraceMiddleware(counter, inspector=False, aggregate_window=0)
    with captured_events() as logs, run_server(app, http="h11") as api:
        outcomes = _run_page(page, frontend, api)
        assert outcomes == ["ok"] * 5 + ["blocked"]
        _assert_every_leg_logged(logs, counter)

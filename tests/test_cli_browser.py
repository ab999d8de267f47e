"""`corstrace check` against the truth: what real Chromium sends, and whether it accepts check's fix.

Uses the module-scoped Playwright browser, so no anyio test may live in this module.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from corstrace.__main__ import main
from tests.support import run_server
from tests.test_cli_fix import applying, demo_like_app

pytestmark = pytest.mark.browser


class CaptureServer:
    """A raw socket server that records each request's method, path and header bytes as they came off the wire.

    It allows every CORS request (echoing the Origin, with credentials), so the browser sends its actual requests.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, bytes]]] = []
        self._arrived = threading.Condition()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(32)
        self.url = f"http://localhost:{self._listener.getsockname()[1]}"  # another origin than 127.0.0.1 pages
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            method, path, _ = head[0].decode("latin-1").split(" ", 2)
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(b":")
                headers[name.decode("latin-1").lower()] = value.strip()
            origin = headers.get("origin", b"*")
            allow = (
                b"Access-Control-Allow-Origin: " + origin + b"\r\nAccess-Control-Allow-Credentials: true\r\n"
                b"Access-Control-Allow-Methods: GET, POST\r\nAccess-Control-Allow-Headers: x-name, content-type\r\n"
            )
            if path.endswith(".woff2") or path.endswith(".js") or path.endswith(".png"):
                allow += b"Content-Type: application/octet-stream\r\n"
            status = b"204 No Content" if method == "OPTIONS" else b"200 OK"
            body = b"" if method == "OPTIONS" else b"ok"
            try:
                conn.sendall(
                    b"HTTP/1.1 "
                    + status
                    + b"\r\n"
                    + allow
                    + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                    + body
                )
            except OSError:
                pass
            with self._arrived:
                self.requests.append((method, path, headers))
                self._arrived.notify_all()

    def wait_for(self, method: str, path: str, timeout: float = 15.0) -> dict[str, bytes]:
        """The headers of the last `method path` request, once one has arrived."""

        def found() -> list[dict[str, bytes]]:
            return [headers for m, p, headers in self.requests if (m, p) == (method, path)]

        with self._arrived:
            seen = self._arrived.wait_for(found, timeout)
        assert seen, f"no {method} {path} arrived; got {[(m, p) for m, p, _ in self.requests]}"
        return found()[-1]

    def close(self) -> None:
        self._listener.close()


@pytest.fixture(scope="module")
def capture() -> Iterator[CaptureServer]:
    server = CaptureServer()
    yield server
    server.close()


async def _blank(request: Request) -> Response:
    return HTMLResponse("<!doctype html><title>page</title><body>text</body>")


@pytest.fixture(scope="module")
def page_url() -> Iterator[str]:
    """A page on 127.0.0.1: cross-site to every API reached as `localhost`."""
    with run_server(Starlette(routes=[Route("/", _blank)])) as url:
        yield url


@pytest.fixture
def on_page(page: Any, page_url: str) -> Any:
    page.goto(page_url + "/")
    return page


def test_chromium_sends_a_latin1_header_value_as_check_does(
    on_page: Any, capture: CaptureServer, page_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """fetch() with `X-Name: café` sends the byte 0xE9 (not UTF-8); `check -H 'X-Name: café'` sends the same bytes."""
    on_page.evaluate("url => fetch(url, {headers: {'X-Name': 'café'}}).then(r => r.status)", capture.url + "/b1")
    browser_bytes = capture.wait_for("GET", "/b1")["x-name"]
    assert main(["check", capture.url + "/c1", "--origin", page_url, "-H", "X-Name: café"]) == 0
    capsys.readouterr()
    assert browser_bytes == capture.wait_for("GET", "/c1")["x-name"] == b"caf\xe9"


def test_chromium_refuses_a_header_value_beyond_latin1_as_check_does(
    on_page: Any, capture: CaptureServer, page_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """fetch() throws on `X-Name: 日本` before sending anything; check refuses it with the same words."""
    thrown = on_page.evaluate(
        "url => fetch(url, {headers: {'X-Name': '日本'}}).then(() => 'sent', e => String(e))", capture.url + "/b2"
    )
    assert "non ISO-8859-1 code point" in thrown
    assert main(["check", capture.url + "/c2", "--origin", page_url, "-H", "X-Name: 日本"]) == 2
    assert "non ISO-8859-1 code point" in capsys.readouterr().err
    assert not [path for _, path, _ in capture.requests if path in ("/b2", "/c2")]


# (check's --initiator and extra arguments, the page script making that request, the method it sends)
INITIATORS = [
    ("fetch", [], "url => fetch(url)", "GET"),
    ("xhr", [], "url => new Promise(done => { const x = new XMLHttpRequest(); x.open('GET', url); "
                "x.onloadend = done; x.send(); })", "GET"),
    ("script", [], "url => { const s = document.createElement('script'); s.crossOrigin = 'anonymous'; s.src = url; "
                   "document.head.append(s); }", "GET"),
    ("image", [], "url => { const i = new Image(); i.crossOrigin = 'anonymous'; i.src = url; }", "GET"),
    ("font", [], "url => { const s = document.createElement('style'); "
                 "s.textContent = `@font-face { font-family: F; src: url(${url}); }`; document.head.append(s); "
                 "return document.fonts.load('16px F').catch(() => null).then(() => 1); }", "GET"),
    ("eventsource", [], "url => { const e = new EventSource(url); setTimeout(() => e.close(), 3000); }", "GET"),
    ("beacon", [], "url => navigator.sendBeacon(url, 'data')", "POST"),
    ("beacon", ["-H", "Content-Type: application/json"],
     "url => navigator.sendBeacon(url, new Blob(['{}'], {type: 'application/json'}))", "POST"),
]  # fmt: skip
_COMPARED = ("sec-fetch-dest", "sec-fetch-mode", "sec-fetch-site", "sec-fetch-storage-access", "accept",
             "cache-control", "pragma", "content-type", "origin")  # fmt: skip


@pytest.mark.parametrize(
    ("initiator", "extra", "script", "method"),
    INITIATORS,
    ids=[f"{row[0]}{'-json' if row[1] else ''}" for row in INITIATORS],
)
def test_check_initiator_sends_what_chromium_sends(
    on_page: Any,
    capture: CaptureServer,
    page_url: str,
    capsys: pytest.CaptureFixture[str],
    initiator: str,
    extra: list[str],
    script: str,
    method: str,
) -> None:
    """For each page API, the headers that tell the server what made the request are Chromium's, byte for byte."""
    name = f"/{initiator}{len(extra)}"
    on_page.evaluate(script, capture.url + name + ".browser")
    browser = capture.wait_for(method, name + ".browser")
    main(["check", capture.url + name + ".check", "--origin", page_url, "--initiator", initiator, *extra])
    capsys.readouterr()
    checked = capture.wait_for(method, name + ".check")
    assert {key: checked.get(key) for key in _COMPARED} == {key: browser.get(key) for key in _COMPARED}


_AUTHED_FETCH = """async url => {
  try { return (await fetch(url, {credentials: 'include', headers: {Authorization: 'Bearer t0ken'}})).status; }
  catch (e) { return 'blocked'; }
}"""
_CREDENTIALED_FETCH = """async url => {
  try { return (await fetch(url, {credentials: 'include'})).status; } catch (e) { return 'blocked'; }
}"""


@pytest.mark.parametrize(
    ("path", "args", "script"),
    [
        ("/me", ["-H", "Authorization: Bearer t0ken", "--credentials"], _AUTHED_FETCH),
        ("/items/", ["--credentials"], _CREDENTIALED_FETCH),
    ],
    ids=["authorization-and-credentials", "redirect-with-credentials"],
)
def test_chromium_allows_the_fetch_once_checks_fix_is_applied(
    on_page: Any, page_url: str, capsys: pytest.CaptureFixture[str], path: str, args: list[str], script: str
) -> None:
    """Blocked in Chromium as the app stands; with check's proposed headers on every leg, Chromium lets it through."""
    with run_server(demo_like_app()) as url:
        api = url.replace("127.0.0.1", "localhost")
        assert on_page.evaluate(script, api + path) == "blocked"
        assert main(["check", api + path, "--origin", page_url, *args, "--json"]) == 1
        data = json.loads(capsys.readouterr().out)
    assert data["fix_verified"] is True
    with run_server(applying(demo_like_app(), data["fix_legs"])) as url:
        assert on_page.evaluate(script, url.replace("127.0.0.1", "localhost") + path) == 200

"""The inspector behind a reverse proxy: real nginx in front of a real uvicorn, and raw sockets for what nginx
would not send.

nginx's default ``proxy_pass`` adds no ``Forwarded``/``X-Forwarded-For``/``X-Real-IP``, rewrites ``Host`` to
the upstream's loopback address and connects from 127.0.0.1, so every older check passed. It does speak
HTTP/1.0 upstream, which no browser does: that is what gives it away. A proxy configured for WebSockets
(HTTP/1.1, no forwarding headers) cannot be told from a browser at all: then the token is the only guard.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from websockets.sync.client import connect

from corstrace import CORSTraceMiddleware
from tests.support import run_server

TOKEN = "Px4vN8-qW2mK7_rT5bL9cY3hJ6fD1sZ0"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def _api(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[str]:
    """The app with the inspector on, under uvicorn (``http`` implementation from the test's parameter)."""
    http = getattr(request, "param", "auto")
    if http == "httptools":
        pytest.importorskip(
            "httptools", reason="uvicorn's httptools parser is not installed (pip install -e '.[test]')"
        )
    monkeypatch.setenv("CORSTRACE_INSPECTOR_TOKEN", TOKEN)
    app = CORSTraceMiddleware(Starlette(routes=[Route("/api", _api)]), inspector=True)
    with run_server(app, http=http) as base:
        yield base


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _nginx(tmp_path: Path, upstream: str, location: str) -> Iterator[str]:
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install -y nginx)")
    port = _free_port()
    for folder in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (tmp_path / folder).mkdir()
    (tmp_path / "nginx.conf").write_text(
        f"""
daemon off;
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/logs/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass {upstream};
            {location}
        }}
    }}
}}
"""
    )
    process = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "logs" / "error.log")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read().decode() if process.stdout else ""
                    raise AssertionError(f"nginx did not start: {output}") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.fixture
def default_proxy(tmp_path: Path, upstream: str) -> Iterator[str]:
    """nginx with the default `location / { proxy_pass ...; }` and nothing else."""
    yield from _nginx(tmp_path, upstream, "")


@pytest.fixture
def websocket_proxy(tmp_path: Path, upstream: str) -> Iterator[str]:
    """nginx set up for WebSockets the way its documentation shows: HTTP/1.1, Upgrade passed on, no other header."""
    yield from _nginx(
        tmp_path,
        upstream,
        'proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";',
    )


def ws_status(proxy: str, upstream: str, token: str | None) -> int:
    """The status of an inspector WebSocket handshake made through ``proxy`` by a non-browser client.

    It forges the Origin the upstream expects (nginx rewrote Host to the upstream's address): a remote client
    can, so only the token remains.
    """
    protocols: Any = ["corstrace.v1"] + (["corstrace.auth." + token.encode().hex()] if token else [])
    url = proxy.replace("http://", "ws://") + "/_corstrace/ws"
    try:
        with connect(url, origin=websockets.Origin(upstream), subprotocols=protocols, open_timeout=10) as ws:
            assert json.loads(ws.recv())["type"] == "hello"
            return 101
    except websockets.InvalidStatus as refused:
        return refused.response.status_code


def raw(base: str, request: bytes) -> bytes:
    """Send ``request`` (which asks for ``Connection: close``) as is and return the whole answer."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


@pytest.mark.slow
def test_nginx_default_proxy_pass_is_refused_for_its_http_1_0(default_proxy: str) -> None:
    """Through nginx's default proxy_pass the app still answers, the inspector does not, and says why."""
    assert httpx.get(default_proxy + "/api").status_code == 200
    for path in ("/_corstrace/", "/_corstrace/app.js", f"/_corstrace/?token={TOKEN}"):
        response = httpx.get(default_proxy + path)
        assert response.status_code == 403, path
        assert "HTTP/1.0" in response.text and "proxy" in response.text
        assert "set-cookie" not in response.headers


@pytest.mark.slow
def test_a_proxy_adding_nothing_is_invisible_so_the_token_alone_guards_the_websocket(
    websocket_proxy: str, upstream: str
) -> None:
    """nginx set up for WebSockets sends what a local client sends: only the token keeps the stream closed.

    This is the limit the README states (turn the inspector off behind any proxy).
    """
    assert ws_status(websocket_proxy, upstream, None) == 403
    assert ws_status(websocket_proxy, upstream, "wrong-" + TOKEN) == 403
    assert ws_status(websocket_proxy, upstream, TOKEN) == 101


@pytest.mark.slow
def test_a_proxy_adding_x_forwarded_for_is_refused(tmp_path: Path, upstream: str) -> None:
    """The usual `proxy_set_header X-Forwarded-For ...` line is enough for the inspector to refuse."""
    proxy = _nginx(tmp_path, upstream, "proxy_http_version 1.1; proxy_set_header X-Forwarded-For $remote_addr;")
    base = next(proxy)
    try:
        response = httpx.get(base + "/_corstrace/")
        assert response.status_code == 403 and "x-forwarded-for" in response.text
    finally:
        proxy.close()


# --- raw sockets: what a proxy (or anything) may send -------------------------------------------------------


@pytest.mark.parametrize("upstream", ["httptools", "h11"], indirect=True)
def test_http_1_0_is_refused(upstream: str) -> None:
    """What nginx's default proxy_pass sends, byte for byte in its essentials: HTTP/1.0, loopback Host."""
    host = upstream.removeprefix("http://")
    answer = raw(upstream, f"GET /_corstrace/ HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    assert answer.startswith((b"HTTP/1.1 403", b"HTTP/1.0 403")), answer[:200]
    assert b"HTTP/1.0" in answer.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize("upstream", ["httptools"], indirect=True)
@pytest.mark.parametrize("order", ["loopback first", "loopback second"])
def test_two_host_headers_are_refused(upstream: str, order: str) -> None:
    """httptools passes both Host headers through; the inspector refuses rather than pick one."""
    host = upstream.removeprefix("http://")
    hosts = [host, "rebind.attacker.example"]
    if order == "loopback second":
        hosts.reverse()
    lines = "".join(f"Host: {name}\r\n" for name in hosts)
    answer = raw(upstream, f"GET /_corstrace/ HTTP/1.1\r\n{lines}Connection: close\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    assert b"more than one Host header" in answer


@pytest.mark.parametrize("http_version", ["1.0", "0.9"])
def test_http_1_0_is_refused_at_the_asgi_level(http_version: str) -> None:
    """Whatever the server: an HTTP/1.0 scope is refused with the reason (h11 and httptools both pass it on)."""
    status, body = _asgi_get([(b"host", b"127.0.0.1:8000")], http_version)
    assert status == 403 and b"HTTP/1.0" in body


def test_two_host_headers_are_refused_at_the_asgi_level() -> None:
    """What httptools passes through (h11 itself answers 400), refused even when both name loopback."""
    status, body = _asgi_get([(b"host", b"127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")], "1.1")
    assert status == 403 and b"more than one Host header" in body


def _asgi_get(headers: list[tuple[bytes, bytes]], http_version: str) -> tuple[int, bytes]:
    import anyio

    from corstrace._inspector import Hub, Inspector

    inspector = Inspector(Hub(), token=TOKEN)
    scope = {
        "type": "http",
        "http_version": http_version,
        "method": "GET",
        "scheme": "http",
        "path": "/_corstrace/",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    anyio.run(inspector, scope, receive, send)
    return sent[0]["status"], sent[1]["body"]

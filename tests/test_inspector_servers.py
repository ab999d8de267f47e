"""The inspector end to end under every server corstrace claims: uvicorn (h11, httptools, wsproto), hypercorn
(asyncio and trio workers), granian, and gunicorn with two uvicorn workers.

Each server runs this module's ``app`` (the default setup: ``Middleware(CORSTraceMiddleware)``, no options) in
a subprocess with a fresh cache directory. The test reads the inspector URL from the startup log as a person
would, opens the WebSocket as the page does, sees a cross-origin request arrive live, then stops the server
with the socket still open: the server must exit cleanly, with no ``corstrace.internal_error`` and no
traceback in its output.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from corstrace import CORSTraceMiddleware

ROOT = Path(__file__).resolve().parent.parent
FRONTEND = "http://localhost:5173"
STARTUP_SECONDS = 30


async def _items(request: Request) -> JSONResponse:
    if "hold" in request.query_params:
        # A slow synchronous handler: this worker accepts nothing meanwhile, so a connection made while it holds
        # goes to the other worker (left to itself, the kernel may hand every connection to the same one).
        time.sleep(float(request.query_params["hold"]))
    return JSONResponse({"items": [], "pid": os.getpid()})


# What the servers below import: the README's default setup.
app = Starlette(
    routes=[Route("/items", _items)],
    middleware=[
        Middleware(CORSTraceMiddleware),
        Middleware(CORSMiddleware, allow_origins=[FRONTEND]),
    ],
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


TARGET = "tests.test_inspector_servers:app"
SERVERS: dict[str, tuple[str, list[str]]] = {
    # name: (module that must be installed, command; {port} is filled in)
    "uvicorn-h11": ("uvicorn", ["-m", "uvicorn", TARGET, "--port", "{port}", "--http", "h11"]),
    "uvicorn-httptools": ("httptools", ["-m", "uvicorn", TARGET, "--port", "{port}", "--http", "httptools"]),
    "uvicorn-wsproto": ("wsproto", ["-m", "uvicorn", TARGET, "--port", "{port}", "--ws", "wsproto"]),
    "hypercorn-asyncio": ("hypercorn", ["-m", "hypercorn", TARGET, "--bind", "127.0.0.1:{port}", "-k", "asyncio"]),
    "hypercorn-trio": ("trio", ["-m", "hypercorn", TARGET, "--bind", "127.0.0.1:{port}", "-k", "trio"]),
    "granian": ("granian", ["-m", "granian", "--interface", "asgi", "--port", "{port}", TARGET]),
    "gunicorn-2-uvicorn-workers": (
        "gunicorn",
        ["-m", "gunicorn", "-w", "2", "-k", "uvicorn.workers.UvicornWorker", "-b", "127.0.0.1:{port}", TARGET],
    ),
}


# hypercorn's asyncio worker prints a CancelledError traceback of its own (asyncio/streams.py callback) for every
# connection still open at shutdown, even with a bare ASGI app that holds a WebSocket: not corstrace's to fix.
KNOWN_SERVER_TRACEBACKS = {"hypercorn-asyncio": 1}


def _tracebacks(output: str) -> list[None]:
    """One None per traceback in ``output`` that corstrace has no part in; fails on any that it has."""
    found: list[None] = []
    for block in output.split("Traceback (most recent call last):")[1:]:
        lines = block.splitlines()
        end = next((i for i, line in enumerate(lines[1:], 1) if line and not line.startswith(" ")), len(lines))
        text = "\n".join(lines[: end + 1])
        assert "corstrace" not in text, f"a traceback through corstrace:\n{text}"
        found.append(None)
    return found


@dataclass
class Served:
    process: subprocess.Popen[str]
    base: str
    output: list[str] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.output.append(line)
                self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = STARTUP_SECONDS) -> re.Match[str]:
        """The first match of ``pattern`` in the server's output (stdout and stderr), waiting for it."""
        regex = re.compile(pattern)
        with self._changed:
            found = self._changed.wait_for(lambda: regex.search("".join(self.output)), timeout)
        assert found, f"{pattern!r} never appeared in the output:\n{self.text}"
        return found

    @property
    def text(self) -> str:
        with self._changed:
            return "".join(self.output)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    started: list[Served] = []

    def start(name: str) -> Served:
        module, args = SERVERS[name]
        if not _has(module):
            pytest.skip(f"{module} is not installed (pip install -e '.[test]')")
        port = _free_port()
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
        env.pop("CORSTRACE_INSPECTOR_TOKEN", None)
        env.pop("CORSTRACE_INSPECTOR", None)
        command = [sys.executable, *[arg.format(port=port) for arg in args]]
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        served = Served(process, f"http://127.0.0.1:{port}")
        started.append(served)
        threading.Thread(target=served.pump, daemon=True).start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return served
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{name} did not start:\n{served.text}") from None
                time.sleep(0.1)

    yield start
    for served in started:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait(timeout=10)


async def _stream_one_live_request(base: str, token: str) -> dict[str, Any]:
    """Open the inspector WebSocket like the page does, send a cross-origin request, return its live record.

    With several workers, each has its own inspector: the request is retried on fresh connections until the
    worker that answers it (its pid is in the response) is the one whose WebSocket we hold.
    """
    import websockets
    from websockets.asyncio.client import connect

    protocols: Any = ["corstrace.v1", "corstrace.auth." + token.encode().hex()]
    url = base.replace("http://", "ws://") + "/_corstrace/ws"
    async with connect(url, origin=websockets.Origin(base), subprotocols=protocols) as ws:
        assert ws.subprotocol == "corstrace.v1"
        hello = json.loads(await ws.recv())
        while json.loads(await ws.recv())["type"] != "synced":
            pass
        for attempt in range(64):
            async with httpx.AsyncClient() as http:  # a new connection: any worker may take it
                response = await http.get(f"{base}/items?live={attempt}", headers={"Origin": FRONTEND})
            assert response.headers["access-control-allow-origin"] == FRONTEND
            if response.json()["pid"] == hello["pid"]:
                break
        else:
            raise AssertionError("no request reached the worker holding the WebSocket")
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "events":
                for record in message["events"]:
                    if record.get("type") == "leg" and record["url"].endswith(f"?live={attempt}"):
                        return dict(record)


async def _worker_pids(base: str, token: str, attempts: int = 32) -> set[int]:
    """The pids that answered the inspector handshake with the one token, over ``attempts`` connections."""
    import websockets
    from websockets.asyncio.client import connect

    protocols: Any = ["corstrace.v1", "corstrace.auth." + token.encode().hex()]
    pids: set[int] = set()
    for _ in range(attempts):
        # A worker busy with a held request while the handshake is made: the other one answers it. Each held
        # request on a new connection (a kept-alive one would always reach the same worker), so which worker
        # holds is the kernel's choice, and over a few attempts both answer a handshake.
        async with httpx.AsyncClient() as http:
            held = asyncio.create_task(http.get(f"{base}/items?hold=0.5", headers={"Origin": FRONTEND}))
            await asyncio.sleep(0.1)  # the held request's head start (nothing to await: it is in the worker)
            url = base.replace("http://", "ws://") + "/_corstrace/ws"
            async with connect(url, origin=websockets.Origin(base), subprotocols=protocols) as ws:
                pids.add(json.loads(await ws.recv())["pid"])
            await held
        if len(pids) > 1:
            break
    return pids


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SERVERS))
def test_inspector_streams_and_the_server_stops_cleanly(serve: Any, name: str) -> None:
    """Startup URL → WebSocket → a live cross-origin record; then a clean stop with the inspector still open."""
    served = serve(name)
    # The startup announcement (lifespan, or the first cross-origin request for servers without one).
    assert httpx.get(served.base + "/items", headers={"Origin": FRONTEND}).status_code == 200
    token = served.wait_for(r"/_corstrace/#token=([A-Za-z0-9_%.~-]+)").group(1)
    assert "?token=" not in served.text

    import websockets
    from websockets.asyncio.client import connect

    async def scenario() -> tuple[dict[str, Any], int | None]:
        record = await _stream_one_live_request(served.base, token)
        if name.startswith("gunicorn"):
            # Both workers read the one token file: the URL from the log opens either worker's inspector.
            assert len(await _worker_pids(served.base, token)) == 2
        # Stop the server while a page is connected: shutdown must close it, not hang or crash.
        protocols: Any = ["corstrace.v1", "corstrace.auth." + token.encode().hex()]
        url = served.base.replace("http://", "ws://") + "/_corstrace/ws"
        async with connect(url, origin=websockets.Origin(served.base), subprotocols=protocols) as ws:
            while json.loads(await ws.recv())["type"] != "synced":
                pass
            served.process.send_signal(signal.SIGTERM)
            try:
                while True:
                    await ws.recv()
            except websockets.ConnectionClosed as closed:
                return record, closed.rcvd.code if closed.rcvd else None

    record, close_code = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert (record["path"], record["verdict"], record["origin"]) == ("/items", "allowed", FRONTEND)
    assert close_code in (1001, 1012, 1000, None)
    # uvicorn (since 0.30) ends by re-raising the signal it handled, so its clean exit status is -SIGTERM.
    assert served.process.wait(timeout=30) in (0, -signal.SIGTERM), served.text
    output = served.text
    assert "corstrace.internal_error" not in output, output
    assert _tracebacks(output) == (KNOWN_SERVER_TRACEBACKS.get(name, 0) * [None]), output
    if name.startswith("gunicorn"):
        # Every announcement, whichever worker made it, carries the one token.
        assert set(re.findall(r"/_corstrace/#token=([A-Za-z0-9_%.~-]+)", output)) == {token}

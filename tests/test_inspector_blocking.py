"""No blocking call runs inside the event loop with the default setup: blockbuster around a real uvicorn.

The server is a subprocess (``python -m tests.test_inspector_blocking PORT``) that activates blockbuster for
every call made from corstrace's code, *then* lets uvicorn import the app from its import string (so even the
import runs inside the loop, as under ``uvicorn app:app``), with a fresh cache directory: the token file does
not exist yet. The test drives it like a person: a cross-origin request, the inspector page and its files
(twice), the WebSocket, a live record, shutdown. blockbuster raises ``BlockingError`` where corstrace blocks;
corstrace's own safety net would log that as ``corstrace.internal_error``, a server as a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from corstrace import CORSTraceMiddleware

ROOT = Path(__file__).resolve().parent.parent
FRONTEND = "http://localhost:5173"


async def _items(request: Request) -> JSONResponse:
    return JSONResponse({"items": []})


def build() -> Starlette:
    """The README's default setup: add_middleware(CORSTraceMiddleware), no options."""
    app = Starlette(routes=[Route("/items", _items)])
    app.add_middleware(CORSMiddleware, allow_origins=[FRONTEND])
    app.add_middleware(CORSTraceMiddleware)
    return app


# The server process. Nothing here may import corstrace first: uvicorn must import it, inside its loop.
SERVER = """
import sys, types, importlib.util
import uvicorn
from blockbuster import blockbuster_ctx

# corstrace's folder, found without importing it: blockbuster flags blocking calls made from its code.
corstrace = types.SimpleNamespace(__path__=importlib.util.find_spec("corstrace").submodule_search_locations)
with blockbuster_ctx([corstrace]):
    uvicorn.run("tests.test_inspector_blocking:app", port=int(sys.argv[1]), log_level="info", lifespan="on")
"""


app = build()


@pytest.mark.slow
def test_default_setup_never_blocks_the_event_loop(tmp_path: Path) -> None:
    """Startup, page, files, WebSocket, live record and shutdown with blockbuster on: no BlockingError anywhere."""
    pytest.importorskip("blockbuster")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cache = tmp_path / "fresh-cache"
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "PYTHONPATH": str(ROOT)}
    env.pop("CORSTRACE_INSPECTOR_TOKEN", None)
    env.pop("CORSTRACE_INSPECTOR", None)
    command = [sys.executable, "-c", SERVER, str(port)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        token = (cache / "corstrace" / "inspector-token-v2").read_text().strip()

        async def drive() -> None:
            import websockets
            from websockets.asyncio.client import connect

            async with httpx.AsyncClient(base_url=base) as http:
                assert (await http.get("/items", headers={"Origin": FRONTEND})).status_code == 200
                for _ in range(2):  # the first request reads the UI files, the second is served from memory
                    for path in ("/_corstrace/", "/_corstrace/app.js", "/_corstrace/style.css"):
                        assert (await http.get(path)).status_code == 200, path
                protocols: object = ["corstrace.v1", "corstrace.auth." + token.encode().hex()]
                url = base.replace("http://", "ws://") + "/_corstrace/ws"
                async with connect(url, origin=websockets.Origin(base), subprotocols=protocols) as ws:  # type: ignore[arg-type]
                    while json.loads(await ws.recv())["type"] != "synced":
                        pass
                    assert (await http.get("/items?live=1", headers={"Origin": FRONTEND})).status_code == 200
                    while json.loads(await ws.recv())["type"] != "events":
                        pass

        asyncio.run(asyncio.wait_for(drive(), 60))
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert "Application startup complete" in output, output
    assert "BlockingError" not in output, output
    assert "corstrace.internal_error" not in output, output
    assert not re.search(r"Traceback \(most recent call last\)", output), output
    assert "#token=" in output  # the startup announcement carries the token read at import

"""Real servers and a real browser for the tests.

Servers are real uvicorn instances on loopback, each on a socket bound to port 0 so tests never
collide. The browser is Debian's Chromium driven by Playwright's sync API through
``executable_path`` (this machine cannot download Playwright's own browser builds).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]


def http_scope(
    method: str, path: str, headers: list[tuple[bytes, bytes]], *, query: bytes = b"", host: bytes = b"api.test"
) -> dict[str, Any]:
    """A raw ASGI HTTP scope as uvicorn builds it, for harnesses that call the app directly."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", host), *headers],
        "client": ("127.0.0.1", 50000),
        "server": (host.decode(), 80),
    }


def chromium_path() -> str | None:
    """The Chromium binary to drive, or None when none is installed."""
    for candidate in (os.environ.get("CORSTRACE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test thread owns no signals
        pass


@contextlib.contextmanager
def run_server(app: Any, *, host: str = "127.0.0.1", **config: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on ``host`` and a free port; yield its base URL (no trailing slash)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config.setdefault("log_level", "warning")
    config.setdefault("lifespan", "auto")
    server = _Server(uvicorn.Config(app, host=host, port=port, **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    # uvicorn sets `started` once the socket is listening; a thread gives us nothing to await on.
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start for {app!r}")
        time.sleep(0.01)
    display_host = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{display_host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()

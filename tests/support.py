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

import structlog
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


async def call_asgi(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    """Call ``app`` with ``scope`` and an empty request body; the messages it sent (an app's RuntimeError, the
    tests' stand-in for a crash, is swallowed: the server would answer it with a 500)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    try:
        await app(scope, receive, send)
    except RuntimeError:
        pass
    return sent


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
    # Explicit, not uvicorn's "auto": with httptools installed, uvicorn would refuse the control bytes some tests
    # send on purpose. Tests of other protocol implementations pass http= themselves.
    config.setdefault("http", "h11")
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


class EventLog(list[dict[str, Any]]):
    """Captured structlog events, as ``structlog.testing.capture_logs`` gives them, that a test can wait for.

    A server running in another thread logs after the browser already has its response; ``wait_for``
    blocks on a condition the logging thread notifies instead of guessing with sleeps.
    """

    def __init__(self) -> None:
        super().__init__()
        self._changed = threading.Condition()

    def __call__(self, logger: Any, method_name: str, event_dict: dict[str, Any]) -> Any:
        with self._changed:
            self.append({**event_dict, "log_level": method_name})
            self._changed.notify_all()
        raise structlog.DropEvent

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The events matching ``predicate`` once at least one has been logged (AssertionError after ``timeout``)."""
        with self._changed:
            found = self._changed.wait_for(lambda: [e for e in self if predicate(e)], timeout)
        assert found, f"no matching event was logged within {timeout} s; got {[e.get('event') for e in self]}"
        return list(found)


@contextlib.contextmanager
def captured_events() -> Iterator[EventLog]:
    """Capture every structlog event (from any thread) for the duration of the block."""
    log = EventLog()
    previous = structlog.get_config()["processors"]
    structlog.configure(processors=[log])
    try:
        yield log
    finally:
        structlog.configure(processors=previous)

"""Servers other than uvicorn, in a thread of the test process (so structlog events are captured as with
:func:`tests.support.run_server`)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def run_hypercorn(app: Any, *, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` with hypercorn (asyncio worker) on a free port; yield its base URL."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.accesslog = None
    config.errorlog = None
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()

    async def main() -> None:
        started.set()
        await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(15)
    deadline = time.monotonic() + 15
    while True:  # hypercorn gives no "listening" signal to a thread: connect until it answers
        try:
            with socket.create_connection((host, port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"hypercorn did not start for {app!r}") from None
            time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=15)
        loop.close()
        with contextlib.suppress(OSError):  # hypercorn closes the socket it was handed by its fd
            sock.close()

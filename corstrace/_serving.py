"""uvicorn servers run by corstrace's own commands (`corstrace demo`, `corstrace inspector`): signals handled once."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Sequence
from types import FrameType

import uvicorn


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals to :func:`stop_on_signals`.

    uvicorn would install its own handlers per server and re-raise the signal when it is done: a Ctrl-C would
    end in a ``KeyboardInterrupt`` traceback, and two servers in one process would fight over the handlers.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def stop_on_signals(servers: Sequence[uvicorn.Server]) -> Iterator[None]:
    """SIGINT/SIGTERM ask every server to exit; a second Ctrl-C stops waiting for open connections."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled on the main thread; the caller stops the servers then
        return

    def handle(sig: int, frame: FrameType | None) -> None:
        for server in servers:
            if server.should_exit and sig == signal.SIGINT:
                server.force_exit = True
            server.should_exit = True

    handled = [signal.SIGINT, signal.SIGTERM]
    original = {sig: signal.signal(sig, handle) for sig in handled}
    try:
        yield
    finally:
        for sig, previous in original.items():
            signal.signal(sig, previous)

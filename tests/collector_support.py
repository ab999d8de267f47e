"""Helpers for the collector's tests: a collector on a chosen port, what it received, real processes.

A collector must be restartable *on the same port* (workers are configured with it), so :func:`serve_on` binds a
given port, where tests.support.run_server picks a free one.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from corstrace._inspector.collector import Collector

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 30
TOKEN = "collector-test-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # a test thread owns no signals
        pass


@contextlib.contextmanager
def serve_on(app: Any, port: int, **config: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1:``port`` in a thread; yield its base URL."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config.setdefault("log_level", "warning")
    config.setdefault("lifespan", "on")
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:  # a thread gives nothing to await on
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start for {app!r}")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


class Received:
    """What a collector published to its page, which a test can wait for (from any thread)."""

    def __init__(self, collector: Collector) -> None:
        self.records: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        hub = collector.hub
        publish = hub.publish

        def watched(record: dict[str, Any]) -> None:
            publish(record)
            with self._changed:
                self.records.append(dict(record))
                self._changed.notify_all()

        hub.publish = watched  # type: ignore[method-assign]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The records once at least ``count`` arrived (AssertionError after ``timeout``)."""
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self.records) >= count, timeout)
            records = list(self.records)
        assert arrived, f"the collector got {len(records)} of {count} records within {timeout} s"
        return records


@dataclass
class Process:
    """A subprocess whose combined output a test can wait for."""

    popen: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._changed:
                self.output.append(line)
                self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return "".join(self.output)

    def wait_for(self, pattern: str, timeout: float = STARTUP_SECONDS, count: int = 1) -> list[re.Match[str]]:
        """The first ``count`` matches of ``pattern`` in the output, waiting for them."""
        regex = re.compile(pattern)
        with self._changed:
            found = self._changed.wait_for(lambda: len(list(regex.finditer("".join(self.output)))) >= count, timeout)
        assert found, f"{pattern!r} did not appear {count} time(s) in the output:\n{self.text}"
        return list(regex.finditer(self.text))[:count]

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (by pid) and wait; the exit status."""
        if self.popen.poll() is None:
            self.popen.terminate()
        return self.popen.wait(timeout=timeout)


def environment(cache: Path, **extra: str) -> dict[str, str]:
    """A subprocess environment sharing one fresh cache directory (so one token file) and this checkout."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "PYTHONPATH": str(ROOT)}
    for name in ("CORSTRACE_INSPECTOR_TOKEN", "CORSTRACE_INSPECTOR", "CORSTRACE_COLLECTOR", "CORSTRACE_PROCESS_NAME"):
        env.pop(name, None)
    env.update(extra)
    return env


def start(command: list[str], env: dict[str, str]) -> Process:
    popen = subprocess.Popen(
        [sys.executable, *command], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return Process(popen)


def wait_listening(port: int, process: Process) -> None:
    """Until something accepts connections on ``port`` (the process's startup gives nothing to await)."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on {port}:\n{process.text}") from None
            time.sleep(0.05)


def start_collector(port: int, env: dict[str, str]) -> tuple[Process, str]:
    """``corstrace inspector --port PORT`` as a user runs it; the process and the page URL it printed."""
    process = start(["-m", "corstrace", "inspector", "--port", str(port)], env)
    url = process.wait_for(r"inspector  (http://\S+#token=\S+)")[0].group(1)
    wait_listening(port, process)
    return process, url

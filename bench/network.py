"""Over the network: the app under uvicorn on loopback, driven by ``wrk`` in another process.

Variants alternate run by run (bare, corstrace, bare, corstrace, ...) and each gets a fresh server, so
neither always runs on a warmer or quieter machine. Reported: medians over runs of requests/s and of the
p50/p99 latency, and their ratios to the bare app. Without ``wrk`` (``apt-get install -y wrk``) the section
is skipped with a note.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.apps import ALLOWED_ORIGIN

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("bare", "corstrace")


@dataclass
class NetworkResult:
    tool: str
    seconds: float
    connections: int
    # variant -> list of (requests/s, p50 ms, p99 ms), one per run
    runs: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    skipped: str | None = None

    def median(self, variant: str, index: int) -> float:
        return statistics.median(run[index] for run in self.runs[variant])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_listening(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    msg = f"uvicorn did not listen on port {port}"
    raise RuntimeError(msg)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) from ``wrk --latency`` output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    return rps, p50, p99


def _one_run(variant: str, seconds: float, connections: int) -> tuple[float, float, float]:
    port = _free_port()
    env = {**os.environ, "BENCH_VARIANT": variant, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.netapp:app", "--port", str(port), "--no-access-log"]
        + ["--log-level", "warning"],
        cwd=ROOT,
        env=env,
    )
    try:
        _wait_listening(port)
        url = f"http://127.0.0.1:{port}/items/42"
        wrk = ["wrk", "-t1", f"-c{connections}", "--latency", "-H", f"Origin: {ALLOWED_ORIGIN}"]
        subprocess.run([*wrk, "-d1s", url], check=True, capture_output=True, text=True)  # warm-up
        done = subprocess.run([*wrk, f"-d{seconds:g}s", url], check=True, capture_output=True, text=True)
        return parse_wrk(done.stdout)
    finally:
        server.terminate()
        server.wait(10)


def run(rounds: int = 3, seconds: float = 5.0, connections: int = 16) -> NetworkResult:
    result = NetworkResult("wrk", seconds, connections, {v: [] for v in VARIANTS})
    if shutil.which("wrk") is None:
        result.skipped = "wrk is not installed (apt-get install -y wrk)"
        return result
    for r in range(rounds):
        for variant in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
            result.runs[variant].append(_one_run(variant, seconds, connections))
    return result

"""Memory of a real uvicorn serving the inspector to clients that stopped reading, under large records.

``python -m bench.stalled_clients`` starts ``bench.netapp`` (FastAPI + CORSMiddleware + corstrace, inspector
on) under uvicorn in a subprocess, connects ``clients`` raw WebSocket clients that complete the handshake and
never read again (tiny receive buffers, like frozen tabs), then sends ``requests`` cross-origin requests whose
headers make every record about ``header_bytes`` large, each on its own path so no two records share their
encoding. The server's RSS is read from ``/proc`` after warm-up, along the flood, once the clients closed, and
after a second identical round: every store is bounded in bytes, so RSS must stay flat from round to round
(what the closed clients held is freed and reused; the allocator need not hand it back to the OS, which is
why tests/test_inspector_memory.py counts with tracemalloc).

Prints one JSON object: phases with RSS in MiB.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-inspector-token-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_mib(pid: int) -> float:
    """Resident set size of process ``pid`` in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _handshake(port: int, token: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    # The token both ways, so the scenario measures old (query/cookie) and new (subprotocol) servers alike.
    auth = "corstrace.auth." + token.encode().hex()
    return (
        f"GET /_corstrace/ws?token={token} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Origin: http://127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: corstrace.v1, {auth}\r\n\r\n"
    ).encode()


def stalled_client(port: int, token: str) -> socket.socket:
    """A WebSocket client that completed its handshake and will never read another byte."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.connect(("127.0.0.1", port))
    sock.sendall(_handshake(port, token))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise RuntimeError("the inspector closed the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"the inspector refused the handshake: {head.splitlines()[0]!r}")
    return sock


class _Requests:
    """Cross-origin GETs with big headers over one keep-alive connection (raw socket: no client overhead)."""

    def __init__(self, port: int, header_bytes: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.file = self.sock.makefile("rb")
        per = 500
        self.pad = "".join(f"X-Pad-{i}: {'p' * per}\r\n" for i in range(max(1, header_bytes // (per + 12))))
        self.sent = 0

    def one(self) -> None:
        self.sent += 1
        n = self.sent
        request = (
            f"GET /items/{n} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Origin: http://app{n % 5000}.example\r\n{self.pad}\r\n"
        )
        self.sock.sendall(request.encode())
        length = 0
        while True:
            line = self.file.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        self.file.read(length)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@dataclass
class StalledResult:
    clients: int
    requests: int
    header_bytes: int
    # (phase, RSS MiB)
    phases: list[tuple[str, float]] = field(default_factory=list)


def run(clients: int = 10, requests: int = 3000, header_bytes: int = 6000, rounds: int = 2) -> StalledResult:
    port = _free_port()
    env = {**os.environ, "BENCH_VARIANT": "inspector", "CORSTRACE_INSPECTOR_TOKEN": TOKEN}
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    command = [sys.executable, "-m", "uvicorn", "bench.netapp:app", "--port", str(port), "--no-access-log"]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    result = StalledResult(clients, requests, header_bytes)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("uvicorn did not start") from None
                time.sleep(0.05)
        load = _Requests(port, header_bytes)
        for _ in range(500):  # warm-up: the ring and the caches fill
            load.one()
        result.phases.append(("after warm-up, no client", rss_mib(server.pid)))
        for round_ in range(1, rounds + 1):
            stalled = [stalled_client(port, TOKEN) for _ in range(clients)]
            for i in range(requests):
                load.one()
                if (i + 1) % (requests // 3) == 0:
                    result.phases.append((f"round {round_}: {i + 1} requests, {clients} stalled", rss_mib(server.pid)))
            for sock in stalled:
                sock.close()
            for _ in range(200):  # the server notices the closed sockets on its next writes
                load.one()
            time.sleep(1.0)
            result.phases.append((f"round {round_}: stalled clients closed", rss_mib(server.pid)))
        load.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--header-bytes", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(asdict(run(args.clients, args.requests, args.header_bytes, args.rounds)), indent=1))


if __name__ == "__main__":
    main()

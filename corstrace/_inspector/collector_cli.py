"""``corstrace inspector``: run the collector, one inspector page for every worker and app, on a loopback port."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import socket
import sys
import time
from typing import Any, TextIO

import uvicorn

from corstrace import _term
from corstrace._escape import escape_control
from corstrace._inspector.collector import Collector
from corstrace._inspector.hub import MIB
from corstrace._inspector.ingest import DEFAULT_PORT, MAX_MESSAGE_BYTES, CollectorAddress, is_loopback_name
from corstrace._inspector.token import current_token
from corstrace._serving import QuietServer, stop_on_signals

# Records from every worker meet here: a bigger ring than one worker's (1,000 records, 8 MiB).
BUFFER_SIZE = 5000
BUFFER_BYTES = 32 * MIB
# Open pages and publishers are told to go (1001/1012); shutdown never waits on them longer than this.
_GRACEFUL_SHUTDOWN_SECONDS = 3


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (1-65535): {port}")
    return port


def _records(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {count}")
    return count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="loopback address to listen on: 127.0.0.1, ::1 or localhost (default: %(default)s)",
    )
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help="port to listen on (default: %(default)s)")
    parser.add_argument(
        "--buffer-size",
        type=_records,
        default=BUFFER_SIZE,
        help="records kept for pages that open or reconnect (default: %(default)s)",
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    address = "127.0.0.1" if host == "localhost" else host
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if sys.platform != "win32":
            # A restarted collector rebinds while its old connections sit in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise OSError(
                f"port {port} on {host} is already in use (another `corstrace inspector`?): stop it, or pick "
                "another port with --port and point the workers at it"
            ) from None
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def banner(address: CollectorAddress, token: str, *, colour: bool) -> str:
    def url(text: str) -> str:
        return _term.paint(text, "bold", "cyan", enabled=colour)

    return "\n".join(
        [
            _term.paint(f"corstrace inspector is collecting on {address.url}", "bold", "green", enabled=colour),
            "",
            f"  inspector  {url(address.page_url(token))}",
            f"  workers    CORSTRACE_COLLECTOR={address.url} uvicorn app:app --workers 4",
            f'             or app.add_middleware(CORSTraceMiddleware, collector="{address.url}")',
            "",
            _term.paint("Press Ctrl-C to stop.", "dim", enabled=colour),
            "",
        ]
    )


def _printer(stream: TextIO) -> Any:
    def log(what: str, fields: dict[str, Any]) -> None:
        stamp = time.strftime("%H:%M:%S")
        who = f"{escape_control(str(fields.get('name')))} (pid {fields.get('pid')})"
        if what == "dropped":
            line = f"{who} dropped {fields.get('count')} record(s) before they reached the collector"
        else:
            line = f"{who} {what}"
        with contextlib.suppress(Exception):
            print(f"{stamp}  {line}", file=stream, flush=True)

    return log


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Serve the collector until interrupted; the exit code (0 after Ctrl-C, 2 for a usage problem)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    host = str(args.host).strip().strip("[]").lower()
    if not is_loopback_name(host):
        print(
            f"corstrace inspector: error: --host {args.host!r} is not a loopback address. The collector shows your "
            "requests' headers, so it only listens on this machine: 127.0.0.1, ::1 or localhost.",
            file=err,
            flush=True,
        )
        return 2
    try:
        sock = _bind(host, args.port)
    except OSError as exc:
        print(f"corstrace inspector: error: {exc}", file=err, flush=True)
        return 2
    with sock:
        address = CollectorAddress(host, sock.getsockname()[1])
        token = current_token()
        collector = Collector(token=token, buffer_size=args.buffer_size, buffer_bytes=BUFFER_BYTES, log=_printer(err))
        config = uvicorn.Config(
            collector,
            log_level="warning",
            access_log=False,
            lifespan="on",
            server_header=False,
            ws_max_size=MAX_MESSAGE_BYTES,
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
        )
        server = QuietServer(config)
        print(banner(address, token, colour=_term.wants_colour(out)), file=out, flush=True)
        with stop_on_signals([server]):
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except KeyboardInterrupt:  # pragma: no cover - only where signal handlers could not be set
                pass
    print("corstrace inspector: stopped.", file=out, flush=True)
    return 0

"""Publishing a worker's records to a collector (``corstrace inspector``) without ever blocking a request.

The queue is the worker's own :class:`~corstrace._inspector.hub.Hub` ring: bounded by count and bytes, drop-oldest,
filled by the request path exactly as it fills for the local inspector (``Hub.publish``, synchronous, O(1)). One
background sender per process keeps its own cursor into that ring (:meth:`Hub.after`): whatever is after the
last record a collector acknowledged is what is still to send, so a collector that starts late, restarts or is
down for a while gets every record still in the ring when it is back; what fell out first is counted and
reported to it (the page shows the count).

The sender is one task, started lazily inside the running event loop (by the first record, the lint, or the
lifespan startup): ``loop.create_task`` under asyncio, ``trio.lowlevel.spawn_system_task`` under trio, no thread.
It speaks WebSocket with ``websockets``' sans-I/O client over an anyio TCP stream (protocol:
:mod:`corstrace._inspector.ingest`), reconnects with capped exponential backoff, and logs one warning when it
cannot reach (or is refused by) the collector and one info line when it connects. At shutdown (the hub closes)
it sends what is left and waits for the acknowledgement for at most :data:`FLUSH_SECONDS`, then lets go: the
hub's close never waits on a collector for longer.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import secrets
import sys
from collections import deque
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from corstrace._escape import escape_control
from corstrace._inspector.hub import Entry, Follower, Hub, dumps
from corstrace._inspector.ingest import (
    FRAME_BYTES,
    FRAME_RECORDS,
    INGEST_PATH,
    INGEST_PROTOCOL,
    MAX_MESSAGE_BYTES,
    MAX_NAME_LENGTH,
    NONCE,
    NONCE_HEADER,
    PROCESS_NAME_ENV,
    CollectorAddress,
    proof,
    proof_matches,
)
from corstrace._inspector.token import current_token_async
from corstrace._version import __version__

HANDSHAKE_SECONDS = 5.0
# At shutdown: how long the sender may still send and wait for the collector's acknowledgement.
FLUSH_SECONDS = 2.0
# An idle connection is pinged this often, and given up when nothing came back for DEAD_SECONDS.
PING_SECONDS = 10.0
DEAD_SECONDS = 30.0
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 5.0


class CollectorUnavailable(Exception):
    """Nothing accepted the connection (the collector is not running yet, or not any more)."""


class CollectorRefused(Exception):
    """Something answered but is not a collector this worker may publish to; the message says why."""


class ConnectionLost(Exception):
    """An open connection to the collector ended."""


class _Link:
    """One WebSocket connection: ``websockets``' sans-I/O client over an anyio byte stream."""

    def __init__(self, stream: anyio.abc.ByteStream, protocol: ClientProtocol) -> None:
        self._stream = stream
        self._protocol = protocol
        self._events: deque[Any] = deque()
        self._lock = anyio.Lock()
        self.received_at = anyio.current_time()
        self.sent_at = self.received_at

    async def flush(self) -> None:
        """Write whatever the protocol has to send (frames, pongs, the close handshake)."""
        async with self._lock:
            chunks = self._protocol.data_to_send()
            for chunk in chunks:
                if chunk:
                    await self._stream.send(chunk)
                else:  # the protocol is done writing: half-close
                    await self._stream.send_eof()
            if chunks:
                self.sent_at = anyio.current_time()

    async def send_text(self, text: str) -> None:
        self._protocol.send_text(text.encode("utf-8"))
        await self.flush()

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.send_text(dumps(message))

    async def ping(self) -> None:
        self._protocol.send_ping(b"")
        await self.flush()

    async def receive(self) -> Any:
        """The next event: the handshake's Response first, then Frames. Raises ConnectionLost at the end."""
        while not self._events:
            try:
                data = await self._stream.receive(65536)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                self._protocol.receive_eof()
                data = b""
            else:
                self._protocol.receive_data(data)
                self.received_at = anyio.current_time()
            self._events.extend(self._protocol.events_received())
            await self.flush()
            if not data and not self._events:
                raise ConnectionLost("the collector closed the connection")
        return self._events.popleft()

    async def receive_json(self) -> Any:
        """The next text message, decoded (None when it is not JSON)."""
        while True:
            event = await self.receive()
            if getattr(event, "opcode", None) is Opcode.TEXT:
                try:
                    return json.loads(event.data)
                except ValueError:
                    return None
            if getattr(event, "opcode", None) is Opcode.CLOSE:
                raise ConnectionLost("the collector closed the connection")

    async def close(self) -> None:
        """Say goodbye (1001) when still open, then drop the socket."""
        try:
            with anyio.move_on_after(0.5):
                self._protocol.send_close(1001, "worker shutting down")
                await self.flush()
        except Exception:  # already closing or broken: nothing more to say
            pass
        await self.aclose()

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self._stream.aclose()
            except Exception:  # the socket is gone either way
                pass


class Publisher:
    """The background sender of one worker process: its hub's records to the collector at ``address``."""

    def __init__(self, hub: Hub, address: CollectorAddress, *, token: str | None = None, name: str | None = None):
        self.hub = hub
        self.address = address
        self._token = token or None
        self._name = name
        self.running = False
        self.connected = False
        # Records that fell out of the ring before any collector acknowledged them.
        self.dropped = 0
        # The last of the hub's seqs a collector acknowledged (the cursor after a restart of the collector).
        self.acked = 0
        self._warned = False
        self._task: Any = None
        self._identity: tuple[int, str] | None = None

    # -- starting, from inside the running loop -----------------------------------------------------

    def start(self) -> None:
        """Start the sender in the running event loop unless it runs already; never blocks, never raises."""
        if self.running or self.hub.closed:
            return
        try:
            token = anyio.lowlevel.current_token()
        except Exception:  # not inside an event loop (a thread): the next record published in the loop starts it
            return
        self.running = True
        loop = token.native_token
        try:
            if isinstance(loop, asyncio.AbstractEventLoop):
                # Held, so the task is not garbage-collected while it waits.
                self._task = loop.create_task(self._run(), name="corstrace-collector-publisher")
            else:
                import trio

                trio.lowlevel.spawn_system_task(self._run, name="corstrace-collector-publisher")
        except Exception:
            self.running = False

    async def _run(self) -> None:
        try:
            await self._loop()
        except Exception as exc:  # a bug here must not crash the server's loop (a trio system task would)
            from corstrace._guard import Guard

            Guard().report(exc)
        finally:
            self.running = False
            self.connected = False
            self._task = None

    # -- the loop: connect, pump, back off ------------------------------------------------------------

    async def _loop(self) -> None:
        backoff = BACKOFF_FIRST
        with anyio.CancelScope() as flush:
            while True:
                if self.hub.closed:
                    # Shutting down: connect once more only if something is left to send, within the deadline.
                    self._arm_flush(flush)
                    entries, _ = self.hub.after(self.acked, 1, 1)
                    if not entries:
                        return
                try:
                    link, welcome = await self._open()
                except (CollectorUnavailable, CollectorRefused) as exc:
                    self._failed(exc)
                    if self.hub.closed:
                        return
                    await anyio.sleep(backoff * random.uniform(0.8, 1.2))
                    backoff = BACKOFF_MAX if isinstance(exc, CollectorRefused) else min(backoff * 2, BACKOFF_MAX)
                    continue
                backoff = BACKOFF_FIRST
                self._connected()
                try:
                    if await self._pump(link, welcome, flush):
                        return
                except (ConnectionLost, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
                finally:
                    self.connected = False
                    await link.aclose()

    def _arm_flush(self, flush: anyio.CancelScope) -> None:
        deadline = anyio.current_time() + FLUSH_SECONDS
        if flush.deadline > deadline:
            flush.deadline = deadline

    def identity(self) -> tuple[int, str]:
        """This process's pid and instance tag (new after a fork: the child is another publisher)."""
        pid = os.getpid()
        if self._identity is None or self._identity[0] != pid:
            self._identity = (pid, secrets.token_hex(8))
        return self._identity

    async def _open(self) -> tuple[_Link, dict[str, Any]]:
        """Connect, prove both sides know the token, and introduce this process."""
        token = self._token or await current_token_async()
        address = self.address
        stream: anyio.abc.ByteStream | None = None
        problem: OSError | None = None
        with anyio.move_on_after(HANDSHAKE_SECONDS):
            for host in address.connect_hosts:
                try:
                    stream = await anyio.connect_tcp(host, address.port)
                    break
                except OSError as exc:
                    problem = exc
        if stream is None:
            raise CollectorUnavailable(_os_reason(problem) if problem is not None else "timed out")
        host = f"[{address.host}]" if ":" in address.host else address.host
        protocol = ClientProtocol(
            parse_uri(f"ws://{host}:{address.port}{INGEST_PATH}"),
            subprotocols=[Subprotocol(INGEST_PROTOCOL)],
            max_size=MAX_MESSAGE_BYTES,
        )
        client_nonce = secrets.token_hex(16)
        request = protocol.connect()
        request.headers["User-Agent"] = f"corstrace/{__version__}"
        request.headers[NONCE_HEADER] = client_nonce
        protocol.send_request(request)
        link = _Link(stream, protocol)
        try:
            with anyio.fail_after(HANDSHAKE_SECONDS):
                await link.flush()
                response = await link.receive()
                if protocol.handshake_exc is not None or not isinstance(response, Response):
                    raise CollectorRefused(_refusal_text(response))
                if protocol.subprotocol != INGEST_PROTOCOL:
                    raise CollectorRefused("it does not speak corstrace's ingest protocol")
                challenge = await link.receive_json()
                if not isinstance(challenge, dict) or challenge.get("type") != "challenge":
                    raise CollectorRefused("it does not speak corstrace's ingest protocol")
                server_nonce = challenge.get("nonce")
                if not isinstance(server_nonce, str) or not NONCE.fullmatch(server_nonce):
                    raise CollectorRefused("it does not speak corstrace's ingest protocol")
                if not proof_matches(token, "collector", client_nonce, server_nonce, challenge.get("proof")):
                    raise CollectorRefused(
                        "it did not prove it knows this worker's inspector token, so nothing was sent to it (another "
                        "program on that port, or a collector started with another CORSTRACE_INSPECTOR_TOKEN or "
                        "cache directory)"
                    )
                pid, instance = self.identity()
                await link.send_json(
                    {
                        "type": "hello",
                        "proof": proof(token, "publisher", client_nonce, server_nonce),
                        "instance": instance,
                        "process": {"pid": pid, "name": self.name},
                        "version": __version__,
                    }
                )
                welcome = await link.receive_json()
                if not isinstance(welcome, dict) or welcome.get("type") != "welcome":
                    raise CollectorRefused("it did not accept this worker's token")
        except TimeoutError:
            await link.aclose()
            raise CollectorRefused("it did not answer the handshake in time") from None
        except ConnectionLost:
            await link.aclose()
            raise CollectorRefused("it closed the connection during the handshake (is the token the same?)") from None
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            await link.aclose()
            raise CollectorUnavailable(_os_reason(exc)) from None
        except BaseException:
            await link.aclose()
            raise
        return link, welcome

    @property
    def name(self) -> str:
        """How the page names this process (``CORSTRACE_PROCESS_NAME``, else the app and address from argv)."""
        if self._name is None:
            self._name = process_name(sys.argv)
        return self._name

    # -- one connection -------------------------------------------------------------------------------

    async def _pump(self, link: _Link, welcome: dict[str, Any], flush: anyio.CancelScope) -> bool:
        """Send until the connection ends (raises) or the hub closed and everything was sent (True)."""
        resume = welcome.get("resume")
        # The collector says where it stands for this process; a restarted one knows nothing: resend after the ack.
        cursor = resume if type(resume) is int and 0 <= resume <= self.hub.stats()["published"] else self.acked
        self.acked = cursor
        outcome: list[BaseException | bool] = []
        ack = _AckWatch()
        async with self.hub.follow() as follower, anyio.create_task_group() as group:

            async def read() -> None:
                try:
                    await self._read(link, ack)
                except Exception as exc:
                    outcome.append(exc)
                group.cancel_scope.cancel()

            group.start_soon(read)
            try:
                outcome.append(await self._write(link, follower, cursor, ack, flush))
            except Exception as exc:
                outcome.append(exc)
            group.cancel_scope.cancel()
        result = outcome[0] if outcome else ConnectionLost("the connection ended")
        if isinstance(result, BaseException):
            raise result
        return result

    async def _read(self, link: _Link, ack: _AckWatch) -> None:
        while True:
            message = await link.receive_json()
            if isinstance(message, dict) and message.get("type") == "ack":
                seq = message.get("seq")
                if type(seq) is int and seq > self.acked:
                    self.acked = seq
                ack.changed()

    async def _write(
        self, link: _Link, follower: Follower, cursor: int, ack: _AckWatch, flush: anyio.CancelScope
    ) -> bool:
        hub = self.hub
        lint_sent: list[dict[str, Any]] = []
        while True:
            hub.rearm(follower)
            closing = follower.closed
            if closing:
                self._arm_flush(flush)
            lint = hub.lint
            if lint != lint_sent:
                await link.send_json({"type": "lint", "findings": lint})
                lint_sent = lint
            entries, skipped = hub.after(cursor, FRAME_BYTES, FRAME_RECORDS)
            if skipped:
                cursor += skipped
                self.dropped += skipped
                await link.send_json({"type": "dropped", "count": skipped, "total": self.dropped})
            if entries:
                await link.send_text(_records_frame(entries))
                cursor = entries[-1].seq
                continue
            if closing:
                # Everything is sent: wait for the collector to have it, then say goodbye.
                while self.acked < cursor:
                    await ack.wait()
                await link.close()
                return True
            await follower.wait(PING_SECONDS)
            now = anyio.current_time()
            if now - link.received_at > DEAD_SECONDS:
                raise ConnectionLost("the collector stopped answering")
            if now - link.sent_at >= PING_SECONDS:
                await link.ping()

    # -- what is said about it ----------------------------------------------------------------------

    def _connected(self) -> None:
        self.connected = True
        self._warned = False
        from corstrace._inspector.token import cached_token
        from corstrace._log import logger

        address = self.address
        token = self._token or cached_token()
        page = address.page_url(token) if token else f"{address.url}/_corstrace/"
        logger.info(
            "corstrace.collector",
            url=page,
            collector=address.url,
            message=f"publishing to the corstrace collector at {address.url}: open {page}",
        )

    def _failed(self, exc: Exception) -> None:
        if self._warned:
            return
        self._warned = True
        from corstrace._log import logger

        address = self.address
        hub = self.hub
        keeps = f"its last {hub.buffer_size:,} records ({hub.buffer_bytes // 2**20} MiB)"
        if isinstance(exc, CollectorRefused):
            message = f"The corstrace collector at {address.url} refused this worker: {exc}."
        else:
            message = (
                f"corstrace cannot reach its collector at {address.url} ({exc}). This worker keeps {keeps} and sends "
                f"them when the collector is up; start it with `corstrace inspector --port {address.port}`."
            )
        logger.warning("corstrace.collector", collector=address.url, problem=type(exc).__name__, message=message)


class PublishingHub(Hub):
    """A worker's hub whose records also go to a collector; the first record (or lint) starts the sender.

    Only workers configured with a collector get this class: a plain :class:`Hub`'s ``publish`` is unchanged.
    """

    def __init__(
        self, address: CollectorAddress, *, token: str | None = None, name: str | None = None, **options: Any
    ) -> None:
        super().__init__(**options)
        self.publisher = Publisher(self, address, token=token, name=name)

    def publish(self, record: dict[str, Any]) -> None:
        super().publish(record)
        if not self.publisher.running:
            self.publisher.start()

    def set_lint(self, findings: list[dict[str, Any]]) -> None:
        super().set_lint(findings)
        self.publisher.start()


class _AckWatch:
    """Wakes the writer when an acknowledgement arrived (it waits for the last one at shutdown)."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def changed(self) -> None:
        event, self._event = self._event, anyio.Event()
        event.set()

    async def wait(self) -> None:
        await self._event.wait()


def _records_frame(entries: list[Entry]) -> str:
    """A ``records`` message from the hub's JSON text of each record (with the worker's seq), not re-encoded."""
    return '{"type":"records","records":[' + ",".join([entry.text for entry in entries]) + "]}"


def _os_reason(exc: BaseException) -> str:
    """ "connection refused" rather than anyio's "All connection attempts failed" (the cause says why)."""
    for candidate in (exc.__cause__, exc):
        errno = getattr(candidate, "errno", None)
        if isinstance(errno, int):
            return os.strerror(errno).lower()
    return str(exc).lower() or type(exc).__name__


def _refusal_text(response: Any) -> str:
    status = getattr(response, "status_code", None)
    body = getattr(response, "body", b"") or b""
    reason = escape_control(body.decode("utf-8", "replace").strip().splitlines()[0][:300]) if body.strip() else ""
    if status is None:
        return "it is not a WebSocket server"
    return f"it answered HTTP {status}" + (f" ({reason})" if reason else "")


# -- how the page names this process --------------------------------------------------------------------

_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*(?:\(\))?")


def process_name(argv: Sequence[str]) -> str:
    """``CORSTRACE_PROCESS_NAME``, else the ASGI target and address the command line names (``app.main:app on
    127.0.0.1:8000``), else the program's name."""
    explicit = os.environ.get(PROCESS_NAME_ENV, "").strip()
    if explicit:
        return escape_control(explicit)[:MAX_NAME_LENGTH]
    args = list(argv[1:])
    target = next((arg for arg in args if _TARGET.fullmatch(arg)), None)
    program = os.path.basename(argv[0]) if argv else ""
    if program in ("__main__.py", "__main__"):
        program = os.path.basename(os.path.dirname(argv[0]))
    name = target or program or "python"
    address = _address(args)
    if address:
        name = f"{name} on {address}"
    return escape_control(name)[:MAX_NAME_LENGTH]


def _address(args: list[str]) -> str | None:
    host = port = None
    for index, arg in enumerate(args):
        flag, _, value = arg.partition("=") if arg.startswith("--") and "=" in arg else (arg, "", "")
        if not value and index + 1 < len(args):
            value = args[index + 1]
        if flag == "--host":
            host = value
        elif flag == "--port" and value.isdigit():
            port = value
        elif flag in ("-b", "--bind") and value.rpartition(":")[2].isdigit() and ":" in value:
            host, _, port = value.rpartition(":")
    if port is None:
        return None
    return f"{host or '127.0.0.1'}:{port}"


__all__ = ["CollectorRefused", "CollectorUnavailable", "Publisher", "PublishingHub", "process_name"]

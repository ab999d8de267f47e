"""The ring buffer of recent exchanges and its fan-out to WebSocket clients.

Capturing must never wait on a browser (websockets' "Broadcasting" guide: a naive loop of
``await ws.send`` runs at the speed of the slowest client). So :meth:`Hub.publish` is synchronous
and O(clients): it appends to a bounded ring and to each client's bounded queue, and a full queue
drops its *oldest* record and counts it. One sender task per client drains its own queue.

Every record gets a monotonic ``seq``; with the hub's random ``epoch`` it forms a resume cursor
``<epoch>:<seq>``: a reconnecting client gets exactly what it missed, or a reset plus the full
buffer when the gap already fell out of the ring or the process restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import threading
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio

from corstrace._event import Common

Record = dict[str, Any]

# The keys of a leg record that differ between two legs otherwise identical (see SharedRecord).
PER_LEG_KEYS = ("seq", "ts", "exchange_id", "duration_ms")


# What records copied from one remembered event have in common: every key but PER_LEG_KEYS. Its JSON
# (``json``, the members without braces) is made once, by the first sender that needs it.
Shared = Common


class SharedRecord(dict[str, Any]):
    """A record whose keys other than :data:`PER_LEG_KEYS` are exactly those of every record sharing ``shared``."""

    __slots__ = ("shared",)

    def __init__(self, fields: Mapping[str, Any], shared: Shared) -> None:
        super().__init__(fields)
        self.shared = shared


class Subscription:
    """One client's view of the hub: a bounded queue that drops its oldest records when full.

    ``snapshot`` is what the client must be sent first (the buffer, or the gap since its cursor);
    ``reset`` says why a resume was impossible (``"epoch"``, ``"gap"``, ``"cursor"``) and ``missed``
    how many records fell out of the ring in between, when known.
    """

    def __init__(self, maxsize: int, loop: asyncio.AbstractEventLoop) -> None:
        self.maxsize = maxsize
        self.snapshot: list[Record] = []
        self.reset: str | None = None
        self.missed = 0
        self.dropped = 0  # records this client never got because it fell behind
        self.closed = False
        self._queue: deque[Record] = deque()
        self._unreported_drops = 0
        self._lint_changed = False
        self._loop = loop
        self._event = asyncio.Event()

    def _offer(self, record: Record) -> bool:
        """Queue ``record`` (the hub holds its lock); True when that dropped an older one."""
        dropped = len(self._queue) >= self.maxsize
        if dropped:
            self._queue.popleft()
            self.dropped += 1
            self._unreported_drops += 1
        self._queue.append(record)
        self._wake()
        return dropped

    def _wake(self) -> None:
        # Already set: the sender wakes anyway (set and cleared only under the hub's lock, so no wake-up is lost).
        if self._event.is_set():
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._event.set()
        else:
            # Published from another thread (a sync endpoint, a test): hand the wake-up to the client's loop.
            with contextlib.suppress(RuntimeError):  # that loop is already closed: nobody to wake
                self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float) -> None:
        """Wait until something was queued, the lint or the hub changed, or ``timeout`` seconds passed."""
        with anyio.move_on_after(timeout):
            await self._event.wait()

    def pending(self) -> int:
        """How many records are queued for this client."""
        return len(self._queue)


class Hub:
    """A bounded ring of recent records, fanned out to subscribers that can never slow the publisher."""

    def __init__(self, *, buffer_size: int = 1000, client_queue_size: int = 256) -> None:
        if buffer_size < 1:
            msg = f"`buffer_size` must be at least 1, got {buffer_size!r}."
            raise ValueError(msg)
        if client_queue_size < 1:
            msg = f"`client_queue_size` must be at least 1, got {client_queue_size!r}."
            raise ValueError(msg)
        self.buffer_size = buffer_size
        self.client_queue_size = client_queue_size
        # Identifies this process's sequence numbers: after a restart, a client's cursor means nothing.
        self.epoch = secrets.token_hex(6)
        self._ring: deque[Record] = deque(maxlen=buffer_size)
        self._seq = 0
        self._dropped = 0
        self._lint: list[dict[str, Any]] = []
        self._subscribers: set[Subscription] = set()
        self._closed = False
        self._idle: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        # publish() may be called from threads other than the server's loop (sync endpoints, tests).
        self._lock = threading.Lock()

    def publish(self, record: Record) -> None:
        """Keep ``record`` in the ring and queue it for every client; assigns ``record["seq"]``. Never raises."""
        try:
            with self._lock:
                self._seq += 1
                record["seq"] = self._seq
                self._ring.append(record)
                for subscriber in self._subscribers:
                    if subscriber._offer(record):
                        self._dropped += 1
        except Exception:  # a capture bug must never fail the request being captured
            pass

    def set_lint(self, findings: list[dict[str, Any]]) -> None:
        """Replace the startup lint findings; every client gets them on connect and on change."""
        with self._lock:
            self._lint = [dict(finding) for finding in findings]
            for subscriber in self._subscribers:
                subscriber._lint_changed = True
                subscriber._wake()

    @property
    def lint(self) -> list[dict[str, Any]]:
        """The current startup lint findings."""
        with self._lock:
            return list(self._lint)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def records(self) -> list[Record]:
        """A copy of the ring, oldest first."""
        with self._lock:
            return list(self._ring)

    def stats(self) -> dict[str, Any]:
        """Counters for the heartbeat: published, buffered, clients, records dropped for slow clients."""
        with self._lock:
            return {
                "epoch": self.epoch,
                "published": self._seq,
                "buffered": len(self._ring),
                "buffer_size": self.buffer_size,
                "clients": len(self._subscribers),
                "dropped": self._dropped,
            }

    def drain(self, subscription: Subscription) -> tuple[list[Record], int, bool]:
        """Take everything queued for ``subscription``: (records, drops since last drain, lint changed)."""
        with self._lock:
            subscription._event.clear()
            records = list(subscription._queue)
            subscription._queue.clear()
            drops, subscription._unreported_drops = subscription._unreported_drops, 0
            lint_changed, subscription._lint_changed = subscription._lint_changed, False
        return records, drops, lint_changed

    @contextlib.asynccontextmanager
    async def subscribe(self, since: str | None = None) -> AsyncIterator[Subscription]:
        """Register a client for live records; ``since="<epoch>:<seq>"`` resumes after that record.

        The snapshot and the registration happen under one lock, so no record is missed or sent twice.
        """
        subscription = Subscription(self.client_queue_size, asyncio.get_running_loop())
        with self._lock:
            self._fill_snapshot(subscription, since)
            if self._closed:
                subscription.closed = True
            else:
                self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            with self._lock:
                self._subscribers.discard(subscription)
                idle = self._idle if not self._subscribers else None
            if idle is not None:
                loop, event = idle
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(event.set)

    def _fill_snapshot(self, subscription: Subscription, since: str | None) -> None:
        ring = self._ring
        oldest = ring[0]["seq"] if ring else self._seq + 1
        if since is None:
            subscription.snapshot = list(ring)
            return
        epoch, _, raw_seq = since.partition(":")
        if epoch != self.epoch:
            subscription.reset = "epoch"
        elif not raw_seq.isdigit() or int(raw_seq) > self._seq:
            subscription.reset = "cursor"
        elif int(raw_seq) < oldest - 1:
            subscription.reset = "gap"
            subscription.missed = oldest - 1 - int(raw_seq)
        else:
            # seqs in the ring are contiguous, so the first record after the cursor sits at a known index.
            subscription.snapshot = list(itertools.islice(ring, int(raw_seq) - oldest + 1, None))
            return
        subscription.snapshot = list(ring)

    async def close(self, timeout: float = 5.0) -> None:
        """Close every client connection cleanly (code 1001) and wait up to ``timeout`` s for them to go."""
        loop = asyncio.get_running_loop()
        idle = asyncio.Event()
        with self._lock:
            self._closed = True
            self._idle = (loop, idle)
            subscribers = list(self._subscribers)
            for subscriber in subscribers:
                subscriber.closed = True
                subscriber._wake()
            if not self._subscribers:
                return
        with anyio.move_on_after(timeout):
            await idle.wait()

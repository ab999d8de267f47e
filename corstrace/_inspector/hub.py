"""The ring buffer of recent exchanges and its fan-out to WebSocket clients.

Capturing must never wait on a browser (websockets' "Broadcasting" guide: a naive loop of
``await ws.send`` runs at the speed of the slowest client). So :meth:`Hub.publish` is synchronous
and O(clients): it encodes the record once, appends it to a bounded ring and to each client's bounded
queue, and a full queue drops its *oldest* record and counts it. One sender task per client drains its
own queue.

Memory is bounded in bytes, not only in records: the ring, every client's queue and every frame have a
byte budget, and a record larger than :data:`MAX_RECORD_BYTES` has its long strings and lists cut (named
in its ``truncated`` list), or, if that is not enough, is kept as a short note saying so. The
ring holds each record's JSON text (encoded once, shared by every client) rather than the dict, so what is
counted is what is kept. A new client's snapshot is read from the ring chunk by chunk as it is sent, so a
client stalled in its snapshot holds nothing the ring has let go.

Every record gets a monotonic ``seq``; with the hub's random ``epoch`` it forms a resume cursor
``<epoch>:<seq>``: a reconnecting client gets exactly what it missed, or a reset plus the full
buffer when the gap already fell out of the ring, the process restarted, or the cursor is garbage.

Everything async goes through anyio (asyncio or trio, whichever the server runs). ``publish`` may be
called from any thread: a client's sender is woken in its own event loop.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import secrets
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import anyio
import anyio.lowlevel

from corstrace._event import Common

Record = dict[str, Any]

# The keys of a leg record that differ between two legs otherwise identical (see SharedRecord).
PER_LEG_KEYS = ("seq", "ts", "exchange_id", "duration_ms")

MIB = 2**20
# Defaults: a ring of 8 MiB holds the default 1,000 records of up to ~8 KB each; a client that stopped
# reading holds at most 2 MiB of records no longer in the ring; no record alone may take more than 256 KiB.
BUFFER_BYTES = 8 * MIB
CLIENT_QUEUE_BYTES = 2 * MIB
MAX_RECORD_BYTES = 256 * 1024

# A resume cursor as the page sends it: the epoch (hex) and a sequence number (ASCII digits, int64-sized).
_CURSOR = re.compile(r"([0-9a-f]{1,32}):([0-9]{1,19})")
_MAX_CURSOR_LENGTH = 64


# What records copied from one remembered event have in common: every key but PER_LEG_KEYS. Its JSON
# (``json``, the members without braces) is made once, by the first sender that needs it.
Shared = Common


class SharedRecord(dict[str, Any]):
    """A record whose keys other than :data:`PER_LEG_KEYS` are exactly those of every record sharing ``shared``."""

    __slots__ = ("shared",)

    def __init__(self, fields: Mapping[str, Any], shared: Shared) -> None:
        super().__init__(fields)
        self.shared = shared


# An encoder of our own, made once: not json.dumps looked up at each call, which an app (or its tests) may patch
# (FastAPI's own suite patches starlette.responses.json.dumps and counts the calls).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def dumps(message: Any) -> str:
    # default=str: a record carrying something odd must still reach the page rather than be lost.
    return _ENCODER.encode(message)


# json's own string encoder (C-accelerated), as json.dumps(..., ensure_ascii=False) uses it.
_encode_string: Callable[[str], str] = json.encoder.encode_basestring


def record_members(record: Record) -> str:
    """``record`` as JSON members without braces and without ``seq``; a shared part is encoded only once."""
    shared = record.shared if isinstance(record, SharedRecord) else None
    if shared is None:
        # No copy in the usual case: the middleware's records get their seq only from the hub.
        return dumps({k: v for k, v in record.items() if k != "seq"} if "seq" in record else record)[1:-1]
    if shared.json is None:
        shared.json = dumps({k: v for k, v in record.items() if k not in PER_LEG_KEYS})[1:-1]
    ts, exchange_id, duration = record.get("ts"), record.get("exchange_id"), record.get("duration_ms")
    if type(ts) is float and type(exchange_id) is str and type(duration) is float:
        # What json.dumps would write for these three, without its per-call set-up (~3 µs for a small dict).
        own = f'"ts":{ts!r},"exchange_id":{_encode_string(exchange_id)},"duration_ms":{duration!r}'
    else:
        own = dumps({k: record[k] for k in PER_LEG_KEYS[1:] if k in record})[1:-1]
    if own and shared.json:
        return f"{own},{shared.json}"
    return own or shared.json


# What shrink() keeps of an oversized record: strings of up to this many characters, lists of up to this many items.
SHRUNK_STRING = 2048
SHRUNK_LIST = 100
_SHRINK_DEPTH = 6


def _shrunk(value: Any, depth: int) -> tuple[Any, bool]:
    """``value`` with long strings cut (marked as the CONTRACT says) and long lists shortened; and whether it was."""
    if isinstance(value, str):
        if len(value) <= SHRUNK_STRING:
            return value, False
        cut = len(value[SHRUNK_STRING:].encode("utf-8", "surrogatepass"))
        return f"{value[:SHRUNK_STRING]}…[truncated {cut} bytes]", True
    if depth >= _SHRINK_DEPTH or not isinstance(value, (dict, list, tuple)):
        return value, False
    if isinstance(value, dict):
        items = [(key, _shrunk(item, depth + 1)) for key, item in value.items()]
        return {key: item for key, (item, _) in items}, any(changed for _, (_, changed) in items)
    kept = [_shrunk(item, depth + 1) for item in value[:SHRUNK_LIST]]
    return [item for item, _ in kept], len(value) > SHRUNK_LIST or any(changed for _, changed in kept)


def shrink(record: Record) -> Record:
    """A copy of an oversized ``record`` small enough to keep, naming what was cut in ``truncated``."""
    out: Record = {}
    truncated = [name for name in record.get("truncated") or () if isinstance(name, str)]
    for key, value in record.items():
        if key == "truncated":
            continue
        out[key], changed = _shrunk(value, 0)
        if changed and key not in truncated:
            truncated.append(key)
    out["truncated"] = truncated
    return out


# What the per-leg part of a shared record's JSON (seq, ts, exchange_id, duration_ms) and its object take, at most.
_PER_LEG_BYTES = 400


class Entry:
    """One published record as kept: its ``seq``, its JSON ``text`` and the bytes it occupies.

    A record sharing its constant part with others (a repeated exchange, see :class:`SharedRecord`) is kept
    as that small record and encoded on first use: most records are repeats, and most are never sent
    (no page open). Its ``size`` counts the shared part in full, so the bound holds either way.
    """

    __slots__ = ("_record", "_text", "seq", "size")

    def __init__(self, seq: int, text: str | None, record: SharedRecord | None, size: int) -> None:
        self.seq = seq
        self._text = text
        self._record = record
        self.size = size

    @property
    def text(self) -> str:
        text = self._text
        if text is None:
            record = self._record
            members = record_members(record) if record is not None else ""
            text = f'{{"seq":{self.seq},{members}}}' if members else f'{{"seq":{self.seq}}}'
            # Encoded once for every client; the record itself is no longer needed.
            self._text, self._record = text, None
        return text


class _Signal:
    """A wake-up for one task waiting in one event loop, which any thread may raise.

    Made inside the waiting task's loop: it remembers that loop (anyio's token) and thread, so a raise
    from another thread is handed to the loop (``run_sync_soon``) instead of touching its event directly.
    ``raise_`` and ``rearm`` run under the hub's lock, so no wake-up is lost between them.
    """

    __slots__ = ("_event", "_raised", "_thread", "_token")

    def __init__(self) -> None:
        self._token = anyio.lowlevel.current_token()
        self._thread = threading.get_ident()
        self._event = anyio.Event()
        self._raised = False

    def raise_(self) -> None:
        if self._raised:
            return
        self._raised = True
        event = self._event
        if threading.get_ident() == self._thread:
            event.set()
            return
        token = self._token
        # That loop already finished: nobody is left to wake.
        with contextlib.suppress(Exception):
            token.backend_class.run_sync_soon(event.set, (), token.native_token)

    def rearm(self) -> None:
        """After the waiter consumed a raise: the next wait blocks until the next raise."""
        if self._raised:
            self._raised = False
            self._event = anyio.Event()

    async def wait(self, timeout: float) -> None:
        with anyio.move_on_after(timeout):
            await self._event.wait()


class Subscription:
    """One client's view of the hub: where its snapshot stands, and a bounded queue of live records.

    The snapshot is the ring from ``since`` on, read chunk by chunk with :meth:`Hub.snapshot`; ``reset``
    says why a resume was impossible (``"epoch"``, ``"gap"``, ``"cursor"``) and ``missed`` how many records
    fell out of the ring in between, when known. The live queue drops its oldest records beyond
    ``maxsize`` records or ``max_bytes`` bytes.
    """

    def __init__(self, maxsize: int, max_bytes: int) -> None:
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.reset: str | None = None
        self.missed = 0
        self.dropped = 0  # records this client never got because it fell behind
        self.closed = False
        self._snapshot_next = 1
        self._snapshot_last = 0
        self._queue: deque[Entry] = deque()
        self._queued_bytes = 0
        self._unreported_drops = 0
        self._lint_changed = False
        self._signal = _Signal()

    def _offer(self, entry: Entry) -> int:
        """Queue ``entry`` (the hub holds its lock); how many older entries that dropped."""
        queue = self._queue
        queue.append(entry)
        self._queued_bytes += entry.size
        dropped = 0
        while len(queue) > self.maxsize or (self._queued_bytes > self.max_bytes and len(queue) > 1):
            self._queued_bytes -= queue.popleft().size
            dropped += 1
        if dropped:
            self._count_drops(dropped)
        self._signal.raise_()
        return dropped

    def _count_drops(self, count: int) -> None:
        self.dropped += count
        self._unreported_drops += count

    @property
    def snapshot_pending(self) -> bool:
        """True while part of the snapshot is still to be sent."""
        return self._snapshot_next <= self._snapshot_last

    async def wait(self, timeout: float) -> None:
        """Wait until something was queued, the lint or the hub changed, or ``timeout`` seconds passed."""
        await self._signal.wait(timeout)

    def pending(self) -> int:
        """How many live records are queued for this client."""
        return len(self._queue)

    def pending_bytes(self) -> int:
        """How many bytes of live records are queued for this client."""
        return self._queued_bytes


class Follower(Subscription):
    """A reader that keeps its own cursor into the ring (the collector publisher): woken on every publish, lint
    change and close, it queues nothing and drops nothing; it reads with :meth:`Hub.after`.

    Registered like a client, so :meth:`Hub.publish` needs no code of its own for it.
    """

    def __init__(self) -> None:
        super().__init__(1, 1)

    def _offer(self, entry: Entry) -> int:
        self._signal.raise_()
        return 0


class Hub:
    """A ring of recent records bounded by count and bytes, fanned out to subscribers that can never slow
    the publisher."""

    def __init__(
        self,
        *,
        buffer_size: int = 1000,
        client_queue_size: int = 256,
        buffer_bytes: int = BUFFER_BYTES,
        client_queue_bytes: int = CLIENT_QUEUE_BYTES,
        max_record_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        for name, value in (
            ("buffer_size", buffer_size),
            ("client_queue_size", client_queue_size),
            ("buffer_bytes", buffer_bytes),
            ("client_queue_bytes", client_queue_bytes),
            ("max_record_bytes", max_record_bytes),
        ):
            if value < 1:
                msg = f"`{name}` must be at least 1, got {value!r}."
                raise ValueError(msg)
        if max_record_bytes > min(buffer_bytes, client_queue_bytes):
            msg = (
                f"`max_record_bytes` ({max_record_bytes}) must not exceed `buffer_bytes` ({buffer_bytes}) "
                f"or `client_queue_bytes` ({client_queue_bytes})."
            )
            raise ValueError(msg)
        self.buffer_size = buffer_size
        self.client_queue_size = client_queue_size
        self.buffer_bytes = buffer_bytes
        self.client_queue_bytes = client_queue_bytes
        self.max_record_bytes = max_record_bytes
        # Identifies this process's sequence numbers: after a restart, a client's cursor means nothing.
        self.epoch = secrets.token_hex(6)
        self._ring: deque[Entry] = deque()
        self._ring_bytes = 0
        self._seq = 0
        self._dropped = 0
        self._oversized = 0
        self._lint: list[dict[str, Any]] = []
        self._subscribers: set[Subscription] = set()
        self._closed = False
        self._idle: _Signal | None = None
        # publish() may be called from threads other than the server's loop (sync endpoints, tests).
        self._lock = threading.Lock()

    # -- publishing ------------------------------------------------------------------------------

    def publish(self, record: Record) -> None:
        """Keep ``record`` in the ring and queue it for every client; assigns ``record["seq"]``. Never raises."""
        try:
            lazy: SharedRecord | None = None
            size = 0
            members: str | None = None
            oversized = False
            try:
                # Outside the lock: the slow part. A shared record only needs its shared part encoded (once).
                if type(record) is SharedRecord and "seq" not in record:
                    shared = record.shared.json
                    if shared is None:
                        record_members(record)
                        shared = record.shared.json
                    size = _PER_LEG_BYTES + sys.getsizeof(shared)
                    if size <= self.max_record_bytes:
                        lazy = record
                if lazy is None:
                    members = record_members(record)
                    if sys.getsizeof(members) > self.max_record_bytes:
                        # Rare (the pipeline truncates first): cut long strings and lists, say which fields.
                        oversized = True
                        members = record_members(shrink(record))
            except Exception:  # a value json cannot encode even with default=str (say, a non-string key)
                members = None
            with self._lock:
                seq = self._seq + 1
                record["seq"] = seq
                entry = Entry(seq, None, lazy, size) if lazy is not None else self._entry(seq, record, members)
                self._oversized += oversized or entry.size > self.max_record_bytes
                # Only now: the ring's seqs must stay contiguous even when a bad record raised above.
                self._seq = seq
                ring = self._ring
                ring.append(entry)
                self._ring_bytes += entry.size
                while len(ring) > self.buffer_size or (self._ring_bytes > self.buffer_bytes and len(ring) > 1):
                    self._ring_bytes -= ring.popleft().size
                for subscriber in self._subscribers:
                    self._dropped += subscriber._offer(entry)
        except Exception:  # a capture bug must never fail the request being captured
            pass

    def _entry(self, seq: int, record: Record, members: str | None) -> Entry:
        if members is not None:
            text = f'{{"seq":{seq},{members}}}' if members else f'{{"seq":{seq}}}'
            entry = Entry(seq, text, None, sys.getsizeof(text))
            if entry.size <= self.max_record_bytes:
                return entry
            problem = f"was {entry.size:,} bytes, more than the inspector keeps per record ({self.max_record_bytes:,})"
        else:
            problem = "could not be encoded as JSON"
        # Not silently lost: the page shows a note in its place; the structlog event is unaffected.
        kind, ts, exchange_id = record.get("type"), record.get("ts"), record.get("exchange_id")
        note = {
            "seq": seq,
            "type": "note",
            "ts": ts if isinstance(ts, (int, float)) else None,
            "exchange_id": exchange_id if isinstance(exchange_id, str) and len(exchange_id) <= 100 else None,
            "code": "record_too_large" if members is not None else "record_unencodable",
            "message": f"This {kind if kind in ('leg', 'note') else 'inspector'} record {problem}, "
            "so this note stands in its place.",
        }
        text = dumps(note)
        return Entry(seq, text, None, sys.getsizeof(text))

    def set_lint(self, findings: list[dict[str, Any]]) -> None:
        """Replace the startup lint findings; every client gets them on connect and on change."""
        with self._lock:
            self._lint = [dict(finding) for finding in findings]
            for subscriber in self._subscribers:
                subscriber._lint_changed = True
                subscriber._signal.raise_()

    @property
    def lint(self) -> list[dict[str, Any]]:
        """The current startup lint findings."""
        with self._lock:
            return list(self._lint)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def describe(self) -> dict[str, Any]:
        """What the page's ``hello`` says about this hub beyond its counters (a collector says it is one)."""
        return {}

    def records(self) -> list[Record]:
        """The ring, oldest first, decoded (for tests and debugging: the ring keeps only JSON)."""
        with self._lock:
            texts = [entry.text for entry in self._ring]
        return [json.loads(text) for text in texts]

    def stats(self) -> dict[str, Any]:
        """Counters for the heartbeat: published, buffered (records and bytes), clients (pages), followers (a
        collector's sender), drops, records cut or replaced because they were over the per-record limit
        (``oversized``)."""
        with self._lock:
            return {
                "epoch": self.epoch,
                "published": self._seq,
                "buffered": len(self._ring),
                "buffered_bytes": self._ring_bytes,
                "buffer_size": self.buffer_size,
                "buffer_bytes": self.buffer_bytes,
                "clients": sum(1 for subscriber in self._subscribers if not isinstance(subscriber, Follower)),
                "followers": sum(1 for subscriber in self._subscribers if isinstance(subscriber, Follower)),
                "dropped": self._dropped,
                "oversized": self._oversized,
            }

    # -- what a client's sender takes --------------------------------------------------------------

    def snapshot(self, subscription: Subscription, max_bytes: int, max_count: int) -> tuple[list[Entry], int]:
        """The next chunk of ``subscription``'s snapshot (at least one entry, then within both budgets),
        and how many snapshot records fell out of the ring before they could be sent (counted as dropped)."""
        with self._lock:
            if subscription._snapshot_next > subscription._snapshot_last:
                return [], 0
            ring = self._ring
            oldest = ring[0].seq if ring else self._seq + 1
            skipped = 0
            if subscription._snapshot_next < oldest:
                resume = min(oldest, subscription._snapshot_last + 1)
                skipped = resume - subscription._snapshot_next
                subscription._snapshot_next = resume
                subscription._count_drops(skipped)
                self._dropped += skipped
                if resume > subscription._snapshot_last:
                    return [], skipped
            entries: list[Entry] = []
            total = 0
            # seqs in the ring are contiguous, so the next snapshot entry sits at a known index.
            for entry in itertools.islice(ring, subscription._snapshot_next - oldest, None):
                if entry.seq > subscription._snapshot_last:
                    break
                if entries and (len(entries) >= max_count or total + entry.size > max_bytes):
                    break
                entries.append(entry)
                total += entry.size
            if entries:
                subscription._snapshot_next = entries[-1].seq + 1
            return entries, skipped

    def drain(self, subscription: Subscription, max_bytes: int, max_count: int) -> tuple[list[Entry], int, bool]:
        """Take queued entries for ``subscription`` (at least one, then within both budgets):
        (entries, drops since last drain, lint changed). What is left stays queued and keeps it awake."""
        with self._lock:
            queue = subscription._queue
            entries: list[Entry] = []
            total = 0
            while queue and not (entries and (len(entries) >= max_count or total + queue[0].size > max_bytes)):
                entry = queue.popleft()
                entries.append(entry)
                total += entry.size
            subscription._queued_bytes -= total
            if not queue:
                subscription._signal.rearm()
            drops, subscription._unreported_drops = subscription._unreported_drops, 0
            lint_changed, subscription._lint_changed = subscription._lint_changed, False
        return entries, drops, lint_changed

    def after(self, seq: int, max_bytes: int, max_count: int) -> tuple[list[Entry], int]:
        """The ring's entries after ``seq`` (at least one, then within both budgets), and how many records after
        ``seq`` already fell out of the ring (a reader with its own cursor, see :class:`Follower`)."""
        with self._lock:
            ring = self._ring
            oldest = ring[0].seq if ring else self._seq + 1
            skipped = max(0, oldest - 1 - seq)
            start = max(seq + 1, oldest)
            entries: list[Entry] = []
            total = 0
            for entry in itertools.islice(ring, start - oldest, None):
                if entries and (len(entries) >= max_count or total + entry.size > max_bytes):
                    break
                entries.append(entry)
                total += entry.size
            return entries, skipped

    @contextlib.asynccontextmanager
    async def follow(self) -> AsyncIterator[Follower]:
        """Register a :class:`Follower` for as long as the block runs (inside the event loop that waits on it)."""
        follower = Follower()
        with self._lock:
            if self._closed:
                follower.closed = True
            else:
                self._subscribers.add(follower)
        try:
            yield follower
        finally:
            with self._lock:
                self._subscribers.discard(follower)
                if self._idle is not None and not self._subscribers:
                    self._idle.raise_()

    def rearm(self, follower: Follower) -> None:
        """Before ``follower`` reads: its next wait blocks until the next publish, lint change or close."""
        with self._lock:
            follower._signal.rearm()

    # -- clients ---------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe(self, since: str | None = None) -> AsyncIterator[Subscription]:
        """Register a client for live records; ``since="<epoch>:<seq>"`` resumes after that record.

        The snapshot's extent and the registration are fixed under one lock, so no record is missed or sent
        twice. A malformed ``since`` is answered with a reset, never an error.
        """
        subscription = Subscription(self.client_queue_size, self.client_queue_bytes)
        with self._lock:
            self._position(subscription, since)
            if self._closed:
                subscription.closed = True
            else:
                self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            with self._lock:
                self._subscribers.discard(subscription)
                # Its queue goes with it: nothing of a gone client stays referenced.
                subscription._queue.clear()
                subscription._queued_bytes = 0
                if self._idle is not None and not self._subscribers:
                    self._idle.raise_()

    def _position(self, subscription: Subscription, since: str | None) -> None:
        ring = self._ring
        oldest = ring[0].seq if ring else self._seq + 1
        subscription._snapshot_next = oldest
        subscription._snapshot_last = self._seq
        if since is None:
            return
        cursor = _CURSOR.fullmatch(since) if len(since) <= _MAX_CURSOR_LENGTH else None
        if cursor is None:
            subscription.reset = "cursor"
            return
        epoch, seq = cursor.group(1), int(cursor.group(2))
        if epoch != self.epoch:
            subscription.reset = "epoch"
        elif seq > self._seq:
            subscription.reset = "cursor"
        elif seq < oldest - 1:
            subscription.reset = "gap"
            subscription.missed = oldest - 1 - seq
        else:
            subscription._snapshot_next = seq + 1

    async def close(self, timeout: float = 5.0) -> None:
        """Close every client connection cleanly (code 1001) and wait up to ``timeout`` s for them to go."""
        idle = _Signal()
        with self._lock:
            self._closed = True
            self._idle = idle
            for subscriber in self._subscribers:
                subscriber.closed = True
                subscriber._signal.raise_()
            if not self._subscribers:
                return
        await idle.wait(timeout)

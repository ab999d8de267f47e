"""The inspector's memory is bounded in bytes: the ring, every client's queue, every frame, every record.

Counted with tracemalloc (what Python allocated and still holds), not RSS: deterministic, and what the hub
keeps is exactly what it is responsible for. bench/stalled_clients.py measures RSS under a real uvicorn.
"""

from __future__ import annotations

import contextlib
import gc
import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import websockets
from websockets.asyncio.client import connect

from corstrace._inspector import Hub, Inspector
from tests.support import run_server
from tests.test_inspector import PREFIX, PROTOCOLS, TOKEN, make_app, make_record

MIB = 2**20
RECORD_BYTES = 100_000  # a big record: a long exception text, many headers
RING_BUDGET = 8 * MIB  # the hub's documented defaults
CLIENT_BUDGET = 2 * MIB
SLACK = 2 * MIB  # interpreter noise: tracemalloc's own tables, small objects


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def big_record(index: int, size: int = RECORD_BYTES) -> dict[str, Any]:
    # A distinct string per record: nothing is shared by accident.
    return make_record(exchange_id=f"big-{index}", explanation=f"{index}:" + "x" * size)


@contextlib.contextmanager
def held() -> Iterator[list[int]]:
    """Bytes still allocated at the end of the block (after a collection), relative to its start."""
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    result: list[int] = []
    try:
        yield result
    finally:
        gc.collect()
        result.append(tracemalloc.get_traced_memory()[0] - start)
        tracemalloc.stop()


def publish_many(hub: Hub, count: int, size: int = RECORD_BYTES) -> None:
    for index in range(count):
        hub.publish(big_record(index, size))


def test_the_ring_is_bounded_in_bytes_not_only_in_records() -> None:
    """1,000 records of 100 KB would be 100 MB in a ring of 1,000; the ring keeps what fits in its budget."""
    with held() as growth:
        hub = Hub()
        publish_many(hub, 1000)
    assert growth[0] <= RING_BUDGET + SLACK
    assert 0 < len(hub.records()) < 1000
    assert [record["exchange_id"] for record in hub.records()][-1] == "big-999"  # the newest are kept


@pytest.mark.anyio
async def test_ten_stalled_clients_hold_a_bounded_number_of_bytes_and_release_them_when_they_go() -> None:
    """Clients that never drain keep at most their byte budget each; once they leave, only the ring is left."""
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        hub = Hub()
        async with contextlib.AsyncExitStack() as stack:
            subscriptions = [await stack.enter_async_context(hub.subscribe()) for _ in range(10)]
            publish_many(hub, 600)
            assert all(s.dropped > 0 for s in subscriptions)
            gc.collect()
            stalled = tracemalloc.get_traced_memory()[0] - start
        del subscriptions
        gc.collect()
        after_leaving = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert hub.stats()["clients"] == 0
    assert stalled <= RING_BUDGET + 10 * CLIENT_BUDGET + SLACK
    assert after_leaving <= RING_BUDGET + SLACK


@pytest.mark.anyio
async def test_a_client_stalled_in_its_snapshot_pins_nothing_the_ring_let_go() -> None:
    """The snapshot is read from the ring as it is sent: what fell out meanwhile is counted as dropped, not kept."""
    hub = Hub(buffer_size=10)
    for index in range(10):
        hub.publish(make_record(exchange_id=str(index)))
    async with hub.subscribe() as subscription:
        first, skipped = hub.snapshot(subscription, 2**30, 3)
        assert ([e.seq for e in first], skipped) == ([1, 2, 3], 0)
        for index in range(10, 25):  # the ring turns over while the client sits on its first frame
            hub.publish(make_record(exchange_id=str(index)))
        rest, skipped = hub.snapshot(subscription, 2**30, 100)
        assert rest == [] and skipped == 7  # seqs 4..10 are gone; 11.. arrive through the live queue
        assert subscription.dropped == 7
        live, drops, _ = hub.drain(subscription, 2**30, 100)
        assert [e.seq for e in live][-1] == 25


def test_a_record_too_large_to_keep_is_cut_visibly_and_says_what_was_cut() -> None:
    """An oversized leg keeps its row (verdict, path, origin); its long values end with the CONTRACT's marker."""
    hub = Hub()
    record = big_record(1, 1_000_000)
    record["request_headers"] = [[f"x-h{i}", "v"] for i in range(5000)]
    hub.publish(record)
    (kept,) = hub.records()
    assert (kept["type"], kept["exchange_id"], kept["verdict"], kept["path"]) == (
        "leg",
        "big-1",
        "allowed",
        "/api/items",
    )
    assert kept["explanation"].endswith("…[truncated 997954 bytes]")
    assert len(kept["request_headers"]) == 100
    assert sorted(kept["truncated"]) == ["explanation", "request_headers"]
    assert hub.stats()["oversized"] == 1


def test_a_record_too_large_even_when_cut_becomes_a_visible_note() -> None:
    """Thousands of small fields cannot be cut by value: a note says so, in the record's place in the sequence."""
    hub = Hub()
    record = make_record(exchange_id="wide")
    record.update({f"field_{i}": "y" * 200 for i in range(5000)})
    hub.publish(record)
    (note,) = hub.records()
    assert (note["type"], note["code"], note["exchange_id"], note["seq"]) == ("note", "record_too_large", "wide", 1)
    assert "more than the inspector keeps per record" in note["message"]
    assert hub.stats()["oversized"] == 1


def test_a_record_json_cannot_encode_becomes_a_visible_note() -> None:
    """Not lost silently either: a record json refuses (a non-string key) leaves a note and its seq."""
    hub = Hub()
    hub.publish(make_record(exchange_id="odd", headers_by_tuple={("a", "b"): 1}))
    hub.publish(make_record(exchange_id="next"))
    first, second = hub.records()
    assert (first["type"], first["code"], first["exchange_id"]) == ("note", "record_unencodable", "odd")
    assert [first["seq"], second["seq"]] == [1, 2]


def test_byte_budgets_are_validated() -> None:
    """A record limit above the ring's or a client's budget could never be met: said at construction."""
    with pytest.raises(ValueError, match="max_record_bytes"):
        Hub(buffer_bytes=1000, max_record_bytes=2000)
    with pytest.raises(ValueError, match="client_queue_bytes"):
        Hub(client_queue_bytes=0)


@pytest.mark.anyio
async def test_snapshot_frames_stay_small_however_big_the_ring() -> None:
    """A new page gets the ring in frames of at most ~half a megabyte, not one frame per 200 records."""
    hub = Hub(buffer_size=200)
    publish_many(hub, 200)  # 20 MB offered; the ring keeps its 8 MiB
    with run_server(make_app(hub, Inspector(hub, prefix=PREFIX, token=TOKEN))) as base:
        url = base.replace("http://", "ws://") + f"{PREFIX}/ws"
        sizes: list[int] = []
        async with connect(
            url, origin=websockets.Origin(base), subprotocols=PROTOCOLS, max_size=None, compression=None
        ) as ws:  # type: ignore[arg-type]
            with anyio.fail_after(30):
                while True:
                    text = await ws.recv()
                    message = json.loads(text)
                    if message["type"] == "events":
                        sizes.append(len(text))
                    if message["type"] == "synced":
                        break
    assert sum(sizes) > 7 * MIB  # the whole ring arrived
    assert max(sizes) <= 1 * MIB


def test_repeated_records_count_their_shared_part_in_full() -> None:
    """Copies of one remembered event are kept unencoded until sent, yet each counts the shared part's bytes."""
    from corstrace._inspector.hub import Shared, SharedRecord

    hub = Hub()
    shared = Shared()
    template = big_record(0)
    for index in range(1000):
        copy = SharedRecord(template, shared)
        copy.update(exchange_id=f"repeat-{index}", ts=1.0 + index, duration_ms=0.5)
        hub.publish(copy)
    stats = hub.stats()
    assert stats["buffered_bytes"] <= RING_BUDGET
    assert 50 < stats["buffered"] < 1000
    assert hub.records()[-1]["exchange_id"] == "repeat-999"


def test_a_repeated_record_whose_shared_part_is_too_large_is_cut_like_any_other() -> None:
    """The lazily kept path does not skip the per-record limit."""
    from corstrace._inspector.hub import Shared, SharedRecord

    hub = Hub()
    copy = SharedRecord(big_record(0, 1_000_000), Shared())
    hub.publish(copy)
    (kept,) = hub.records()
    assert kept["truncated"] == ["explanation"] and kept["exchange_id"] == "big-0"

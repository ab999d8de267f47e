"""The hub and the inspector's WebSocket under both of anyio's backends: asyncio and trio (hypercorn -k trio).

Everything async in the inspector goes through anyio; a record published from another thread (a sync
endpoint's worker thread) wakes the client's sender in its own loop, whichever loop that is.
"""

from __future__ import annotations

import json

import anyio
import anyio.to_thread
import pytest

from corstrace._inspector import Hub, Inspector
from tests.test_inspector import PREFIX, TOKEN, _Socket, make_record, ws_scope

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    if request.param == "trio":
        pytest.importorskip("trio")
    return str(request.param)


async def test_a_record_published_from_another_thread_wakes_the_subscriber() -> None:
    """publish() in a worker thread hands the wake-up to the subscriber's loop; no timeout is what wakes it."""
    hub = Hub()
    async with hub.subscribe() as subscription:
        await anyio.to_thread.run_sync(hub.publish, make_record(exchange_id="from-a-thread"))
        with anyio.fail_after(30):  # the wait below has a 3600 s timeout: only the wake-up can end it quickly
            await subscription.wait(3600)
        entries, _, _ = hub.drain(subscription, 2**20, 100)
    assert [json.loads(entry.text)["exchange_id"] for entry in entries] == ["from-a-thread"]


async def test_close_wakes_subscribers_and_waits_for_them_to_leave() -> None:
    """Shutdown (the lifespan's hub.close()) ends every client's wait and returns once they are gone."""
    hub = Hub()
    left = anyio.Event()

    async def client() -> None:
        async with hub.subscribe() as subscription:
            while not subscription.closed:
                await subscription.wait(3600)
        left.set()

    async with anyio.create_task_group() as group:
        group.start_soon(client)
        while hub.stats()["clients"] == 0:
            await anyio.lowlevel.checkpoint()
        with anyio.fail_after(30):
            await hub.close(timeout=3600)
        assert left.is_set()


async def test_the_websocket_streams_and_closes_with_going_away() -> None:
    """The inspector's handler end to end over a raw ASGI connection: hello, snapshot, live record, close 1001."""
    hub = Hub()
    inspector = Inspector(hub, prefix=PREFIX, token=TOKEN)
    hub.publish(make_record(exchange_id="before"))
    socket = _Socket()
    async with anyio.create_task_group() as group:
        group.start_soon(inspector, ws_scope(), socket.receive, socket.send)
        with anyio.fail_after(30):
            await socket.wait_for_text('"type":"synced"')
            await anyio.to_thread.run_sync(hub.publish, make_record(exchange_id="after"))
            await socket.wait_for_text('"exchange_id":"after"')
            await hub.close()
    assert socket.sent[0] == {"type": "websocket.accept", "subprotocol": "corstrace.v1"}
    assert socket.sent[-1] == {"type": "websocket.close", "code": 1001, "reason": "server shutting down"}

"""The collector (``corstrace inspector``) and the workers' publisher: addresses, the middleware option, the ingest
protocol and its security, delivery through a late, restarting, stalled or impostor collector, under asyncio and trio.

The collector runs under a real uvicorn on loopback (a thread); publishers run in this test's own event loop with
the real sender task, over real sockets. The browser, real worker processes and gunicorn are in
tests/test_collector_servers.py and tests/test_collector_browser.py.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
import websockets
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from structlog.testing import capture_logs
from websockets.sync.client import connect

from corstrace import CORSTraceMiddleware
from corstrace.__main__ import main
from corstrace._inspector.collector import Collector
from corstrace._inspector.hub import Hub
from corstrace._inspector.ingest import (
    INGEST_PATH,
    INGEST_PROTOCOL,
    CollectorAddress,
    collector_address,
    parse_address,
    proof,
)
from corstrace._inspector.publisher import PublishingHub, process_name
from tests.collector_support import TOKEN, Received, free_port, serve_on
from tests.support import captured_events
from tests.test_inspector import _Socket, make_record

BACKENDS = ["asyncio", "trio"]


# --- addresses and the middleware option ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, ("127.0.0.1", 2677)),
        ("http://127.0.0.1:2677", ("127.0.0.1", 2677)),
        ("127.0.0.1:9000", ("127.0.0.1", 9000)),
        ("9000", ("127.0.0.1", 9000)),
        ("on", ("127.0.0.1", 2677)),
        ("http://localhost:9000/", ("localhost", 9000)),
        ("http://[::1]:9000", ("::1", 9000)),
        ("ws://127.0.0.2:9000", ("127.0.0.2", 9000)),
        ("http://127.0.0.1:9000/_corstrace/", ("127.0.0.1", 9000)),
    ],
)
def test_collector_addresses_take_the_usual_spellings(value: Any, expected: tuple[str, int]) -> None:
    address = parse_address(value)
    assert address is not None and (address.host, address.port) == expected


@pytest.mark.parametrize("value", [False, "", "off", "0", "no"])
def test_collector_off_spellings_mean_no_collector(value: Any) -> None:
    assert parse_address(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "http://example.com:2677",
        "http://10.0.0.2:2677",
        "http://127.0.0.1.nip.io:2677",  # a DNS name that resolves to loopback is what rebinding uses
        "https://127.0.0.1:2677",
        "http://127.0.0.1:2677/other",
        "http://user@127.0.0.1:2677",
        "http://127.0.0.1:99999",
        "http://:2677",
    ],
)
def test_a_collector_address_off_this_machine_or_malformed_is_refused(value: str) -> None:
    """Records carry request headers and the handshake proves the token: only a loopback collector gets them."""
    with pytest.raises(ValueError, match="collector address"):
        parse_address(value)


def test_a_bad_environment_collector_is_one_warning_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORSTRACE_COLLECTOR", "http://collector.example:2677")
    with capture_logs() as logs:
        assert collector_address(None) is None
    assert [(log["event"], log["log_level"]) for log in logs] == [("corstrace.collector", "warning")]
    assert "CORSTRACE_COLLECTOR is ignored" in logs[0]["message"]


async def _items(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def _tracer(**options: Any) -> CORSTraceMiddleware:
    app = Starlette(routes=[Route("/items", _items)])
    app.add_middleware(CORSMiddleware, allow_origins=["http://localhost:5173"])
    return CORSTraceMiddleware(app, **options)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("CORSTRACE_COLLECTOR", "CORSTRACE_INSPECTOR", "CORSTRACE_INSPECTOR_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_with_a_collector_the_worker_publishes_and_serves_no_inspector_of_its_own(clean_env: Any) -> None:
    """The collector serves the page; the worker's prefix is the app's again (no second, partial inspector)."""
    tracer = _tracer(collector="http://127.0.0.1:2677")
    assert isinstance(tracer._recorder.hub, PublishingHub)
    assert tracer.inspector_url("127.0.0.1", 8000) is None
    response = TestClient(tracer, base_url="http://127.0.0.1").get("/_corstrace/")
    assert response.status_code == 404 and "content-security-policy" not in response.headers


def test_the_environment_names_the_collector(clean_env: Any) -> None:
    clean_env.setenv("CORSTRACE_COLLECTOR", "http://127.0.0.1:2700")
    hub = _tracer()._recorder.hub
    assert isinstance(hub, PublishingHub) and hub.publisher.address == CollectorAddress("127.0.0.1", 2700)


def test_inspector_true_with_a_collector_does_both(clean_env: Any) -> None:
    tracer = _tracer(inspector=True, collector=True)
    assert isinstance(tracer._recorder.hub, PublishingHub)
    assert tracer.inspector_url("127.0.0.1", 8000) is not None


@pytest.mark.parametrize("off", ["option", "environment"])
def test_the_inspector_off_switch_turns_publishing_off_too(clean_env: Any, off: str) -> None:
    """Production's switch stays one switch: no hub, no sender, no connection attempt."""
    clean_env.setenv("CORSTRACE_COLLECTOR", "http://127.0.0.1:2677")
    if off == "environment":
        clean_env.setenv("CORSTRACE_INSPECTOR", "0")
    tracer = _tracer(inspector=False) if off == "option" else _tracer()
    assert tracer._recorder.hub is None


def test_a_collector_option_off_this_machine_raises(clean_env: Any) -> None:
    with pytest.raises(ValueError, match="not on this machine"):
        _tracer(collector="http://192.0.2.1:2677")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/venv/bin/uvicorn", "app.main:app", "--port", "8001"], "app.main:app on 127.0.0.1:8001"),
        (["/venv/lib/uvicorn/__main__.py", "api:app", "--host=127.0.0.2", "--port=9"], "api:app on 127.0.0.2:9"),
        (
            ["/venv/bin/gunicorn", "-w", "2", "-b", "127.0.0.1:8000", "svc:create_app()"],
            "svc:create_app() on 127.0.0.1:8000",
        ),
        (["/venv/bin/hypercorn", "svc:app"], "svc:app"),
        (["serve.py"], "serve.py"),
        ([], "python"),
    ],
)
def test_the_process_name_comes_from_the_command_line(clean_env: Any, argv: list[str], expected: str) -> None:
    assert process_name(argv) == expected


def test_the_process_name_can_be_set_and_is_made_terminal_safe(clean_env: Any) -> None:
    clean_env.setenv("CORSTRACE_PROCESS_NAME", "billing\x1b]0;owned\x07 api")
    assert process_name(["uvicorn", "x:app"]) == "billing\\x1b]0;owned\\x07 api"


# --- the hub's cursor reads --------------------------------------------------------------------------------


def test_a_cursor_read_gets_what_follows_and_counts_what_fell_out() -> None:
    hub = Hub(buffer_size=3)
    for index in range(5):
        hub.publish(make_record(exchange_id=f"x-{index}"))
    entries, skipped = hub.after(0, 2**20, 100)
    assert ([entry.seq for entry in entries], skipped) == ([3, 4, 5], 2)
    entries, skipped = hub.after(3, 2**20, 100)
    assert ([entry.seq for entry in entries], skipped) == ([4, 5], 0)
    assert hub.after(5, 2**20, 100) == ([], 0)
    assert [entry.seq for entry in hub.after(0, 1, 2)[0]] == [3]  # budgets: at least one, then within them


# --- the collector's security at the ASGI level -----------------------------------------------------------

NONCE = "0123456789abcdef0123456789abcdef"


def ingest_scope(headers: list[tuple[bytes, bytes]] | None = None, **overrides: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "websocket",
        "path": INGEST_PATH,
        "query_string": b"",
        "headers": headers
        if headers is not None
        else [
            (b"host", b"127.0.0.1:2677"),
            (b"sec-websocket-protocol", INGEST_PROTOCOL.encode()),
            (b"corstrace-nonce", NONCE.encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "scheme": "ws",
        "extensions": {"websocket.http.response": {}},
    }
    scope.update(overrides)
    return scope


_GOOD = [
    (b"host", b"127.0.0.1:2677"),
    (b"sec-websocket-protocol", b"corstrace.ingest.v1"),
    (b"corstrace-nonce", NONCE.encode()),
]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "client", "says"),
    [
        (_GOOD, ("192.0.2.7", 4000), "loopback clients"),
        ([(b"host", b"rebind.attacker.example:2677"), *_GOOD[1:]], ("127.0.0.1", 1), "loopback Host"),
        ([*_GOOD, (b"host", b"127.0.0.1:2677")], ("127.0.0.1", 1), "more than one Host"),
        ([*_GOOD, (b"x-forwarded-for", b"192.0.2.7")], ("127.0.0.1", 1), "through a proxy"),
        ([*_GOOD, (b"via", b"1.1 nginx")], ("127.0.0.1", 1), "through a proxy"),
        ([*_GOOD, (b"origin", b"http://127.0.0.1:2677")], ("127.0.0.1", 1), "never from a browser page"),
        ([*_GOOD, (b"origin", b"null")], ("127.0.0.1", 1), "never from a browser page"),
        ([*_GOOD, (b"sec-fetch-site", b"cross-site")], ("127.0.0.1", 1), "never from a browser page"),
        ([_GOOD[0], _GOOD[2]], ("127.0.0.1", 1), "subprotocol"),
        (_GOOD[:2], ("127.0.0.1", 1), "Corstrace-Nonce"),
        ([*_GOOD[:2], (b"corstrace-nonce", b"not-hex")], ("127.0.0.1", 1), "Corstrace-Nonce"),
        ([*_GOOD, (b"corstrace-nonce", NONCE.encode())], ("127.0.0.1", 1), "Corstrace-Nonce"),
    ],
)
async def test_ingest_handshakes_a_worker_would_not_send_are_refused_before_accept(
    headers: list[tuple[bytes, bytes]], client: tuple[str, int], says: str
) -> None:
    """Remote clients, rebinding, proxies, and anything a browser sends get an HTTP 403, never an accept."""
    socket = _Socket()
    await Collector(token=TOKEN)(ingest_scope(headers, client=client), socket.receive, socket.send)
    assert [m["type"] for m in socket.sent] == ["websocket.http.response.start", "websocket.http.response.body"]
    assert socket.sent[0]["status"] == 403
    assert says in socket.sent[1]["body"].decode()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "headers",
    [
        [(b"host", b"127.0.0.1:2677"), (b"origin", b"http://127.0.0.1:2677")],  # no token
        [(b"host", b"127.0.0.1:2677"), (b"origin", b"http://evil.example"),
         (b"sec-websocket-protocol", ("corstrace.v1, corstrace.auth." + TOKEN.encode().hex()).encode())],
        [(b"host", b"rebind.attacker.example:2677"), (b"origin", b"http://rebind.attacker.example:2677"),
         (b"sec-websocket-protocol", ("corstrace.v1, corstrace.auth." + TOKEN.encode().hex()).encode())],
    ],
)  # fmt: skip
async def test_the_collector_page_socket_keeps_the_inspector_rules(headers: list[tuple[bytes, bytes]]) -> None:
    """No token, a cross-site page holding the token, a rebound Host: 403, as for a worker's own inspector."""
    socket = _Socket()
    await Collector(token=TOKEN)(ingest_scope(headers, path="/_corstrace/ws"), socket.receive, socket.send)
    assert socket.sent[0]["type"] == "websocket.http.response.start" and socket.sent[0]["status"] == 403


@pytest.mark.anyio
async def test_a_post_a_page_can_send_to_the_ingest_path_is_answered_without_cors() -> None:
    """fetch(…, {method: "POST", mode: "no-cors", body}) needs no preflight: it must do nothing and say nothing."""
    transport = httpx.ASGITransport(app=Collector(token=TOKEN), client=("127.0.0.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:2677") as http:
        response = await http.post(
            INGEST_PATH, content='{"type":"records","records":[{}]}', headers={"content-type": "text/plain",
                                                                               "origin": "http://evil.example"}
        )  # fmt: skip
        assert response.status_code == 426
        assert not [name for name in response.headers if name.startswith("access-control-")]
        remote = httpx.ASGITransport(app=Collector(token=TOKEN), client=("192.0.2.7", 5000))
        async with httpx.AsyncClient(transport=remote, base_url="http://127.0.0.1:2677") as outside:
            assert (await outside.get("/_corstrace/")).status_code == 403
        assert (await http.get("/", headers={"host": "attacker.example"})).status_code == 403
        root = await http.get("/")
        assert (root.status_code, root.headers["location"]) == (308, "/_corstrace/")
        page = await http.get("/_corstrace/")
        assert page.status_code == 200 and "frame-ancestors 'none'" in page.headers["content-security-policy"]


# --- the handshake over a real socket ----------------------------------------------------------------------


@pytest.fixture
def collector() -> Iterator[tuple[Collector, str]]:
    app = Collector(token=TOKEN, handshake_timeout=0.5)
    with serve_on(app, free_port()) as base:
        yield app, base


def _ingest(base: str, nonce: str = NONCE) -> Any:
    return connect(
        base.replace("http://", "ws://") + INGEST_PATH,
        subprotocols=[websockets.Subprotocol(INGEST_PROTOCOL)],
        additional_headers={"Corstrace-Nonce": nonce},
    )


def _hello(token: str, server_nonce: str, **overrides: Any) -> str:
    hello = {
        "type": "hello",
        "proof": proof(token, "publisher", NONCE, server_nonce),
        "instance": "abcdef0123456789",
        "process": {"pid": 4242, "name": "raw worker"},
        "version": "test",
    }
    hello.update(overrides)
    return json.dumps(hello)


def test_the_collector_proves_it_knows_the_token_before_the_worker_says_anything(
    collector: tuple[Collector, str],
) -> None:
    """The challenge carries the collector's proof for *this* pair of nonces, which no publisher proof equals."""
    _, base = collector
    with _ingest(base) as ws:
        challenge = json.loads(ws.recv())
    assert challenge["type"] == "challenge"
    assert challenge["proof"] == proof(TOKEN, "collector", NONCE, challenge["nonce"])
    assert challenge["proof"] != proof(TOKEN, "publisher", NONCE, challenge["nonce"])
    assert TOKEN not in json.dumps(challenge)


@pytest.mark.parametrize(
    "hello",
    [
        lambda nonce: _hello("wrong-token-0123456789abcdef", nonce),
        lambda nonce: json.dumps({"type": "hello", "proof": proof(TOKEN, "collector", NONCE, nonce)}),  # reflected
        lambda nonce: _hello(TOKEN, nonce, instance="../../etc"),
        lambda nonce: _hello(TOKEN, nonce, process={"pid": "4242", "name": "x"}),
        lambda nonce: "not json",
    ],
)
def test_a_peer_without_a_valid_hello_is_closed_and_publishes_nothing(
    collector: tuple[Collector, str], hello: Any
) -> None:
    app, base = collector
    with _ingest(base) as ws:
        challenge = json.loads(ws.recv())
        ws.send(hello(challenge["nonce"]))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            ws.send(json.dumps({"type": "records", "records": [dict(make_record(), seq=1)]}))  # closed by now, or
            ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert app.hub.records() == [] and app.hub.sources == {}


def test_a_peer_that_never_answers_the_challenge_is_let_go(collector: tuple[Collector, str]) -> None:
    _, base = collector
    with _ingest(base) as ws:
        json.loads(ws.recv())
        with pytest.raises(websockets.ConnectionClosed) as closed:
            ws.recv()  # the collector's handshake timeout (0.5 s here) ends it
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_records_are_stamped_with_the_process_and_repeats_are_dropped(collector: tuple[Collector, str]) -> None:
    """The hello names the process; a record resent after a lost ack (same worker seq) is published once."""
    app, base = collector
    received = Received(app)
    with _ingest(base) as ws:
        challenge = json.loads(ws.recv())
        ws.send(_hello(TOKEN, challenge["nonce"]))
        welcome = json.loads(ws.recv())
        assert (welcome["type"], welcome["resume"]) == ("welcome", None)
        first = [
            dict(make_record(exchange_id=f"aa11bb-{n}", process={"pid": 1, "name": "spoofed"}), seq=n) for n in (1, 2)
        ]
        ws.send(json.dumps({"type": "records", "records": first}))
        assert json.loads(ws.recv()) == {"type": "ack", "seq": 2}
        again = [dict(make_record(exchange_id=f"aa11bb-{n}"), seq=n) for n in (2, 3)]
        ws.send(json.dumps({"type": "records", "records": again}))
        assert json.loads(ws.recv()) == {"type": "ack", "seq": 3}
    records = received.wait_for(3)
    assert [record["exchange_id"] for record in records] == ["aa11bb-1", "aa11bb-2", "aa11bb-3"]
    assert all(record["process"] == {"pid": 4242, "name": "raw worker"} for record in records)
    with _ingest(base) as ws:  # the same instance again: the collector says where to resume
        challenge = json.loads(ws.recv())
        ws.send(_hello(TOKEN, challenge["nonce"]))
        assert json.loads(ws.recv())["resume"] == 3


# --- publishers over real sockets, under asyncio and trio --------------------------------------------------


def _address(base: str) -> CollectorAddress:
    address = parse_address(base)
    assert address is not None
    return address


async def _until(condition: Any) -> None:
    """Until ``condition()`` holds: the publisher's state (connected, warned, acked) offers nothing to await."""
    while not condition():
        await anyio.sleep(0.01)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_publisher_delivers_its_records_with_its_process(collector: tuple[Collector, str], backend: str) -> None:
    """The sender starts itself inside the running loop (a system task under trio) and the page gets every record."""
    app, base = collector
    received = Received(app)

    async def scenario() -> None:
        hub = PublishingHub(_address(base), token=TOKEN, name="api worker", buffer_size=100)
        for index in range(3):
            hub.publish(make_record(exchange_id=f"cc22dd-{index}", path=f"/items/{index}"))
        assert hub.publisher.running
        await anyio.to_thread.run_sync(received.wait_for, 3)
        await hub.close()
        assert hub.stats()["followers"] == 0  # the sender let go of the hub before close() returned
        await _until(lambda: not hub.publisher.running)

    anyio.run(scenario, backend=backend)
    records = received.records
    assert [record["path"] for record in records] == ["/items/0", "/items/1", "/items/2"]
    assert {json.dumps(record["process"]) for record in records} == {
        json.dumps({"pid": os.getpid(), "name": "api worker"})
    }
    assert [record["seq"] for record in app.hub.records()] == [1, 2, 3]  # the collector's own sequence


@pytest.mark.parametrize("backend", BACKENDS)
def test_records_published_before_the_collector_starts_arrive_when_it_does(backend: str) -> None:
    port = free_port()
    app = Collector(token=TOKEN)
    received = Received(app)

    async def scenario() -> None:
        hub = PublishingHub(CollectorAddress("127.0.0.1", port), token=TOKEN, name="early", buffer_size=100)
        for index in range(5):
            hub.publish(make_record(exchange_id=f"ee33ff-{index}", path=f"/early/{index}"))
        await _until(lambda: hub.publisher._warned)  # it tried, failed, and keeps the records
        with serve_on(app, port):
            await anyio.to_thread.run_sync(received.wait_for, 5)
            await hub.close()

    with captured_events() as events:
        anyio.run(scenario, backend=backend)
    assert [record["path"] for record in received.records] == [f"/early/{index}" for index in range(5)]
    said = [
        (event["log_level"], event["message"].split(" ")[0])
        for event in events
        if event["event"] == "corstrace.collector"
    ]
    assert said == [("warning", "corstrace"), ("info", "publishing")]  # one warning while down, one info on connect


def test_a_restarted_collector_gets_what_was_queued_while_it_was_down_and_nothing_twice() -> None:
    port = free_port()
    first, second = Collector(token=TOKEN), Collector(token=TOKEN)
    got_first, got_second = Received(first), Received(second)

    async def scenario() -> None:
        hub = PublishingHub(CollectorAddress("127.0.0.1", port), token=TOKEN, name="w", buffer_size=100)
        with serve_on(first, port):
            for index in range(3):
                hub.publish(make_record(exchange_id=f"ab12cd-{index}", path=f"/before/{index}"))
            await anyio.to_thread.run_sync(got_first.wait_for, 3)
            await _until(lambda: hub.publisher.acked == 3)
        for index in range(4):
            hub.publish(make_record(exchange_id=f"ab12cd-{index + 3}", path=f"/while-down/{index}"))
        with serve_on(second, port):
            await anyio.to_thread.run_sync(got_second.wait_for, 4)
            await hub.close()

    anyio.run(scenario)
    assert [record["path"] for record in got_second.records] == [f"/while-down/{index}" for index in range(4)]
    assert len(got_first.records) == 3


def test_what_overflows_the_queue_is_counted_and_reported_to_the_page() -> None:
    """A worker keeps its newest records; how many it lost reaches the collector's stats (the page's banner)."""
    port = free_port()
    app = Collector(token=TOKEN, heartbeat=0.2)
    received = Received(app)

    async def scenario() -> None:
        hub = PublishingHub(CollectorAddress("127.0.0.1", port), token=TOKEN, name="small", buffer_size=5)
        for index in range(12):
            hub.publish(make_record(exchange_id=f"de45fa-{index}", path=f"/n/{index}"))
        with serve_on(app, port) as base:
            await anyio.to_thread.run_sync(received.wait_for, 5)
            await _until(lambda: app.hub.upstream_dropped == 7)
            stats = await anyio.to_thread.run_sync(_page_stats, base)
            await hub.close()
        assert hub.publisher.dropped == 7
        (source,) = stats["sources"]
        assert (stats["upstream_dropped"], source["dropped"], source["name"]) == (7, 7, "small")

    anyio.run(scenario)
    assert [record["path"] for record in received.records] == [f"/n/{index}" for index in range(7, 12)]


def _page_stats(base: str) -> dict[str, Any]:
    """The first ``stats`` heartbeat the collector's page gets."""
    protocols: Any = ["corstrace.v1", "corstrace.auth." + TOKEN.encode().hex()]
    with connect(
        base.replace("http://", "ws://") + "/_corstrace/ws", origin=websockets.Origin(base), subprotocols=protocols
    ) as ws:
        hello = json.loads(ws.recv())
        assert hello["collector"] is True
        while True:
            message: dict[str, Any] = json.loads(ws.recv())
            if message["type"] == "stats":
                return message


def test_exchange_ids_of_two_processes_never_merge(collector: tuple[Collector, str]) -> None:
    """Two processes that drew the same random id prefix (a fork after the middleware was built) stay apart."""
    app, base = collector
    received = Received(app)

    async def scenario() -> None:
        hubs = [PublishingHub(_address(base), token=TOKEN, name=f"w{n}", buffer_size=10) for n in (1, 2)]
        for number, hub in enumerate(hubs, 1):
            hub.publisher._identity = (os.getpid(), f"{number}" * 16)
            cached = {"exchange_id": "f00d00-1", "seconds": 5}
            hub.publish(make_record(exchange_id="f00d00-2", path=f"/w{number}", preflight_cached=cached))
            await anyio.to_thread.run_sync(received.wait_for, number)
        for hub in hubs:
            await hub.close()

    anyio.run(scenario)
    first, second = received.records
    assert (first["exchange_id"], first["preflight_cached"]["exchange_id"]) == ("f00d00-2", "f00d00-1")
    renamed = (second["exchange_id"], second["preflight_cached"]["exchange_id"])
    assert renamed == ("f00d00.22222222-2", "f00d00.22222222-1")


def test_every_workers_lint_reaches_the_page_once_and_goes_with_it(collector: tuple[Collector, str]) -> None:
    app, base = collector
    finding = {"code": "cors_inside", "message": "CORSMiddleware wraps corstrace.", "fix": None}

    async def scenario() -> None:
        hubs = [PublishingHub(_address(base), token=TOKEN, name=f"w{n}") for n in (1, 2)]
        for hub in hubs:
            hub.set_lint([finding])
        await _until(lambda: app.hub.lint == [finding] and len(app.hub.sources) == 2)
        for hub in hubs:
            await hub.close()
        await _until(lambda: app.hub.lint == [])

    anyio.run(scenario)


def test_shutdown_sends_what_is_left_before_the_hub_closes(collector: tuple[Collector, str]) -> None:
    app, base = collector
    received = Received(app)

    async def scenario() -> None:
        hub = PublishingHub(_address(base), token=TOKEN, name="w")
        hub.publisher.start()
        await _until(lambda: hub.publisher.connected)
        for index in range(300):  # one loop turn: nothing is sent before close()
            hub.publish(make_record(exchange_id=f"aa00bb-{index}"))
        await hub.close()
        assert len(received.records) == 300  # acknowledged, so published, before close() returned

    anyio.run(scenario)


def _stalled_collector() -> Any:
    """A collector that completes the handshake (it knows the token), then never reads again."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        headers = dict(scope["headers"])
        await receive()
        await send({"type": "websocket.accept", "subprotocol": INGEST_PROTOCOL})
        nonce = secrets.token_hex(16)
        client = headers[b"corstrace-nonce"].decode()
        challenge = {"type": "challenge", "nonce": nonce, "proof": proof(TOKEN, "collector", client, nonce)}
        await send({"type": "websocket.send", "text": json.dumps(challenge)})
        await receive()
        await send({"type": "websocket.send", "text": json.dumps({"type": "welcome", "epoch": "e", "resume": None})})
        await anyio.sleep_forever()

    return app


def test_shutdown_never_waits_long_for_a_collector_that_stopped_answering() -> None:
    """No ack ever comes: the sender gives up after its flush deadline, so close() returns with the sender gone
    (hub.close() would otherwise wait its full timeout for it, here a minute)."""

    async def scenario() -> None:
        with serve_on(_stalled_collector(), free_port()) as base:
            hub = PublishingHub(_address(base), token=TOKEN, name="w")
            hub.publish(make_record())
            await _until(lambda: hub.publisher.connected)
            await hub.close(timeout=60)
            assert hub.stats()["followers"] == 0

    anyio.run(scenario)


def _impostor(frames: list[str]) -> Any:
    """Something on the collector's port that speaks the protocol but does not know the token."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept", "subprotocol": INGEST_PROTOCOL})
        fake = {"type": "challenge", "nonce": secrets.token_hex(16), "proof": secrets.token_hex(32)}
        await send({"type": "websocket.send", "text": json.dumps(fake)})
        while (message := await receive())["type"] == "websocket.receive":
            frames.append(message.get("text") or "")

    return app


def test_an_impostor_on_the_port_gets_no_record_no_token_and_one_warning() -> None:
    frames: list[str] = []

    async def scenario() -> None:
        with serve_on(_impostor(frames), free_port()) as base:
            hub = PublishingHub(_address(base), token=TOKEN, name="w")
            hub.publish(make_record())
            await _until(lambda: hub.publisher._warned)
            await hub.close()

    with captured_events() as events:
        anyio.run(scenario)
    assert frames == []  # not even a hello
    warnings = [event["message"] for event in events if event["event"] == "corstrace.collector"]
    assert len(warnings) == 1 and "did not prove it knows this worker's inspector token" in warnings[0]
    assert TOKEN not in warnings[0]


def test_a_server_that_is_no_collector_is_named_in_the_warning() -> None:
    async def scenario() -> None:
        with serve_on(Starlette(routes=[Route("/items", _items)]), free_port()) as base:
            hub = PublishingHub(_address(base), token=TOKEN, name="w")
            hub.publish(make_record())
            await _until(lambda: hub.publisher._warned)
            await hub.close()

    with captured_events() as events:
        anyio.run(scenario)
    (warning,) = [event["message"] for event in events if event["event"] == "corstrace.collector"]
    assert "refused this worker: it answered HTTP 403" in warning or "HTTP 404" in warning


# --- the command --------------------------------------------------------------------------------------------


def test_the_inspector_command_refuses_a_non_loopback_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspector", "--host", "0.0.0.0"]) == 2
    assert "is not a loopback address" in capsys.readouterr().err


def test_the_inspector_command_says_when_its_port_is_taken(capsys: pytest.CaptureFixture[str]) -> None:
    with serve_on(Starlette(), free_port()) as base:
        port = base.rsplit(":", 1)[1]
        assert main(["inspector", "--port", port]) == 2
    assert f"port {port} on 127.0.0.1 is already in use" in capsys.readouterr().err

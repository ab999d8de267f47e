"""The live inspector's server side: ring buffer, per-client queues, token, access checks, WebSocket."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from corstrace._inspector import Hub, Inspector, Subscription, inspector_enabled
from corstrace._inspector.resources import read_asset, ui_dir
from corstrace._inspector.security import is_loopback_host
from tests.support import run_server

TOKEN = "inspector-test-token-0123456789"
PREFIX = "/_corstrace"


def auth_protocol(token: str) -> str:
    """The subprotocol carrying ``token``, as inspector_ui/app.js computes it: hex of its UTF-8."""
    return "corstrace.auth." + token.encode().hex()


# What the page offers in its handshake: our protocol, and the token as a second one.
PROTOCOLS = ["corstrace.v1", auth_protocol(TOKEN)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_record(**overrides: Any) -> dict[str, Any]:
    """A fake ``leg`` record shaped like the middleware's."""
    record: dict[str, Any] = {
        "type": "leg",
        "ts": time.time(),
        "exchange_id": "ex-1",
        "preflight": False,
        "verdict": "allowed",
        "reason": None,
        "browser_message": None,
        "firefox_message": None,
        "explanation": "The response allows this origin.",
        "fix": None,
        "warnings": [],
        "credentials": "unknown",
        "if_credentialed": None,
        "origin": "http://localhost:5173",
        "method": "GET",
        "requested_method": None,
        "requested_headers": [],
        "url": "http://127.0.0.1:8000/api/items",
        "path": "/api/items",
        "status": 200,
        "layer": "CORSMiddleware",
        "exception": None,
        "duration_ms": 1.5,
        "request_headers": [["origin", "http://localhost:5173"], ["cookie", "[redacted]"]],
        "response_headers": [["access-control-allow-origin", "http://localhost:5173"]],
        "decisive_headers": ["access-control-allow-origin"],
        "healed": False,
        "websocket": False,
        "count": 1,
    }
    record.update(overrides)
    return record


def make_app(hub: Hub, inspector: Inspector) -> Any:
    """A bare ASGI app routing the inspector prefix like the middleware does, plus test endpoints."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await hub.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if inspector.handles(scope):
            return await inspector(scope, receive, send)
        if scope["path"] == "/publish-many":
            # Published inside one loop turn: no sender can run in between, so drops are deterministic.
            count = int(scope["query_string"].decode().partition("=")[2] or "1")
            for index in range(count):
                hub.publish(make_record(exchange_id=f"many-{index}", path=f"/many/{index}"))
        elif scope["path"] == "/publish-big":
            hub.publish(make_record(exchange_id="big", explanation="x" * 200_000))
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


@pytest.fixture
def hub() -> Hub:
    return Hub(buffer_size=50, client_queue_size=8)


@pytest.fixture
def inspector(hub: Hub) -> Inspector:
    return Inspector(hub, prefix=PREFIX, token=TOKEN)


@pytest.fixture
def server(hub: Hub, inspector: Inspector) -> Iterator[str]:
    with run_server(make_app(hub, inspector)) as url:
        yield url


def ws_url(base: str, query: str = "") -> str:
    return base.replace("http://", "ws://") + f"{PREFIX}/ws" + (f"?{query}" if query else "")


def authed(base: str, query: str = "", **kwargs: Any) -> Any:
    """A WebSocket connection to the inspector as its page opens it: own Origin, token as a subprotocol."""
    kwargs.setdefault("subprotocols", PROTOCOLS)
    return connect(ws_url(base, query), origin=websockets.Origin(base), **kwargs)


def snapshot_seqs(hub: Hub, subscription: Subscription) -> list[int]:
    """Every seq of ``subscription``'s snapshot, read the way the sender reads it."""
    seqs: list[int] = []
    while True:
        entries, _ = hub.snapshot(subscription, 2**30, 10**6)
        if not entries:
            return seqs
        seqs.extend(entry.seq for entry in entries)


async def client(app: Any, **kwargs: Any) -> httpx.AsyncClient:
    kwargs.setdefault("base_url", "http://127.0.0.1:8000")
    transport = httpx.ASGITransport(app=app, client=kwargs.pop("client", ("127.0.0.1", 50000)))
    return httpx.AsyncClient(transport=transport, **kwargs)


async def recv_until(ws: Any, kind: str) -> dict[str, Any]:
    """Read messages until one of type ``kind`` arrives (the server always sends one; no timing involved)."""
    while True:
        message: dict[str, Any] = json.loads(await ws.recv())
        if message["type"] == kind:
            return message


# --- the hub ------------------------------------------------------------------------------------


class TestHub:
    def test_ring_keeps_only_the_newest_records(self) -> None:
        """The ring buffer is bounded by ``buffer_size`` and drops its oldest records."""
        hub = Hub(buffer_size=3)
        for index in range(5):
            hub.publish(make_record(exchange_id=str(index)))
        assert [r["exchange_id"] for r in hub.records()] == ["2", "3", "4"]

    def test_publish_assigns_monotonic_sequence_numbers(self) -> None:
        """Every published record gets the next ``seq``."""
        hub = Hub()
        records = [make_record() for _ in range(3)]
        for record in records:
            hub.publish(record)
        assert [r["seq"] for r in records] == [1, 2, 3]

    def test_publish_never_raises(self) -> None:
        """A record the hub cannot handle is ignored instead of failing the captured request."""
        Hub().publish(None)  # type: ignore[arg-type]

    def test_sizes_must_be_positive(self) -> None:
        """A zero buffer or queue is a configuration error, stated as such."""
        with pytest.raises(ValueError, match="buffer_size"):
            Hub(buffer_size=0)
        with pytest.raises(ValueError, match="client_queue_size"):
            Hub(client_queue_size=0)

    @pytest.mark.anyio
    async def test_full_client_queue_drops_its_oldest_records_and_counts_them(self) -> None:
        """A client that does not drain keeps only the newest records; the drops are counted per client and hub."""
        hub = Hub(buffer_size=100, client_queue_size=4)
        async with hub.subscribe() as subscription:
            for index in range(10):
                hub.publish(make_record(exchange_id=str(index)))
            entries, drops, _ = hub.drain(subscription, 2**30, 10**6)
        assert [json.loads(e.text)["exchange_id"] for e in entries] == ["6", "7", "8", "9"]
        assert (drops, subscription.dropped, hub.stats()["dropped"]) == (6, 6, 6)

    @pytest.mark.anyio
    async def test_new_subscriber_gets_the_buffer_as_snapshot(self) -> None:
        """A new client first receives everything still in the ring."""
        hub = Hub(buffer_size=3)
        for index in range(4):
            hub.publish(make_record(exchange_id=str(index)))
        async with hub.subscribe() as subscription:
            assert snapshot_seqs(hub, subscription) == [2, 3, 4]
            assert subscription.reset is None

    @pytest.mark.anyio
    async def test_since_resumes_right_after_the_cursor(self) -> None:
        """``since=<epoch>:<seq>`` replays only the records after ``seq``."""
        hub = Hub(buffer_size=10)
        for _ in range(5):
            hub.publish(make_record())
        async with hub.subscribe(f"{hub.epoch}:3") as subscription:
            assert snapshot_seqs(hub, subscription) == [4, 5]
            assert subscription.reset is None

    @pytest.mark.anyio
    async def test_since_at_the_newest_record_replays_nothing(self) -> None:
        """A client that saw everything resumes with an empty snapshot."""
        hub = Hub(buffer_size=10)
        for _ in range(2):
            hub.publish(make_record())
        async with hub.subscribe(f"{hub.epoch}:2") as subscription:
            assert (snapshot_seqs(hub, subscription), subscription.reset) == ([], None)

    @pytest.mark.anyio
    async def test_since_behind_the_ring_resets_with_the_full_buffer_and_counts_the_gap(self) -> None:
        """When the gap fell out of the ring the client gets a reset, how many records it missed, and the buffer."""
        hub = Hub(buffer_size=3)
        for _ in range(10):
            hub.publish(make_record())
        async with hub.subscribe(f"{hub.epoch}:2") as subscription:
            assert (subscription.reset, subscription.missed) == ("gap", 5)
            assert snapshot_seqs(hub, subscription) == [8, 9, 10]

    @pytest.mark.anyio
    async def test_since_from_another_process_resets(self) -> None:
        """A cursor from another epoch (a restarted server) means a reset and the full buffer."""
        hub = Hub()
        hub.publish(make_record())
        async with hub.subscribe("0123abcd:1") as subscription:
            assert subscription.reset == "epoch"
            assert snapshot_seqs(hub, subscription) == [1]

    @pytest.mark.anyio
    async def test_lint_change_is_flagged_for_subscribers(self) -> None:
        """set_lint marks every client so the sender pushes the new findings."""
        hub = Hub()
        async with hub.subscribe() as subscription:
            hub.set_lint([{"code": "x", "message": "m"}])
            assert hub.drain(subscription, 2**30, 10**6)[2] is True
        assert hub.lint == [{"code": "x", "message": "m"}]

    @pytest.mark.anyio
    async def test_close_wakes_subscribers_and_waits_for_them(self) -> None:
        """close() flags every client closed, returns once they left, and later subscribers start closed."""
        hub = Hub()
        seen: list[bool] = []

        async def subscriber() -> None:
            async with hub.subscribe() as subscription:
                while not subscription.closed:
                    await subscription.wait(60)
                seen.append(subscription.closed)

        async with anyio.create_task_group() as group:
            group.start_soon(subscriber)
            while hub.stats()["clients"] == 0:
                await anyio.lowlevel.checkpoint()
            await hub.close()
            assert (seen, hub.stats()["clients"]) == ([True], 0)
        async with hub.subscribe() as late:
            assert late.closed


# --- the on/off switch (the token: tests/test_inspector_token.py) --------------------------------


class TestSwitch:
    @pytest.mark.parametrize(
        ("option", "env", "expected"),
        [
            (None, None, True),
            (None, "0", False),
            (None, "false", False),
            (None, "Off", False),
            (None, "no", False),
            (None, "1", True),
            (True, "0", True),
            (False, None, False),
        ],
    )
    def test_inspector_enabled(
        self, option: bool | None, env: str | None, expected: bool, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An explicit option wins, then CORSTRACE_INSPECTOR, then on by default."""
        if env is None:
            monkeypatch.delenv("CORSTRACE_INSPECTOR", raising=False)
        else:
            monkeypatch.setenv("CORSTRACE_INSPECTOR", env)
        assert inspector_enabled(option) is expected


# --- HTTP: access checks and headers ------------------------------------------------------------


class TestHttp:
    @pytest.mark.anyio
    async def test_page_is_served_without_a_token_under_strict_security_headers(self, inspector: Inspector) -> None:
        """The page holds no data, so it needs no token; it comes under a strict CSP, frame denial, no CORS."""
        async with await client(inspector) as http:
            response = await http.get(f"{PREFIX}/", headers={"origin": "https://evil.example"})
        assert response.status_code == 200
        assert "<title>corstrace inspector</title>" in response.text
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        assert not [name for name in response.headers if name.lower().startswith("access-control-")]
        assert "set-cookie" not in response.headers

    @pytest.mark.anyio
    @pytest.mark.parametrize("path", [f"{PREFIX}/?token={TOKEN}", f"{PREFIX}?token={TOKEN}"])
    async def test_a_token_in_the_query_is_dropped_from_the_url_and_never_set_as_a_cookie(
        self, inspector: Inspector, path: str
    ) -> None:
        """An old ?token= URL is redirected to the clean page: no cookie (it would reach every port), no token."""
        async with await client(inspector) as http:
            response = await http.get(path)
        assert response.status_code in (303, 308)
        assert response.headers["location"] == f"{PREFIX}/"
        assert "set-cookie" not in response.headers

    @pytest.mark.anyio
    async def test_static_assets_are_served_with_their_types(self, inspector: Inspector) -> None:
        """app.js and style.css come with JavaScript and CSS content types."""
        async with await client(inspector) as http:
            script = await http.get(f"{PREFIX}/app.js")
            style = await http.get(f"{PREFIX}/style.css")
        assert script.headers["content-type"].startswith("text/javascript")
        assert style.headers["content-type"].startswith("text/css")

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        "path", ["/../pyproject.toml", "/..%2Fpyproject.toml", "/.hidden.js", "/nope.js", "/a/b.js"]
    )
    async def test_unknown_or_traversing_paths_are_not_found(self, inspector: Inspector, path: str) -> None:
        """Only flat asset names inside inspector_ui are served."""
        async with await client(inspector) as http:
            response = await http.get(PREFIX + path)
        assert response.status_code == 404

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("kwargs", "reason"),
        [
            ({"client": ("192.168.1.20", 4000)}, "loopback clients"),
            ({"client": ("10.0.0.1", 4000)}, "loopback clients"),
            ({"headers": {"x-forwarded-for": "203.0.113.9"}}, "x-forwarded-for"),
            ({"headers": {"x-real-ip": "203.0.113.9"}}, "x-real-ip"),
            ({"headers": {"forwarded": "for=203.0.113.9"}}, "forwarded"),
            ({"headers": {"via": "1.1 proxy"}}, "`via`"),
            ({"headers": {"x-forwarded-host": "example.com"}}, "x-forwarded-host"),
            ({"headers": {"x-forwarded-proto": "https"}}, "x-forwarded-proto"),
            ({"headers": {"x-forwarded-server": "edge"}}, "x-forwarded-server"),
            ({"headers": {"cf-connecting-ip": "203.0.113.9"}}, "cf-connecting-ip"),
            ({"headers": {"true-client-ip": "203.0.113.9"}}, "true-client-ip"),
            ({"headers": {"x-client-ip": "203.0.113.9"}}, "x-client-ip"),
            ({"headers": {"x-original-forwarded-for": "203.0.113.9"}}, "x-original-forwarded-for"),
            ({"base_url": "http://attacker.example:8000"}, "loopback Host"),
            ({"base_url": "http://127.0.0.1.nip.io:8000"}, "loopback Host"),
            ({"base_url": "http://localhost.attacker.example"}, "loopback Host"),
        ],
    )
    async def test_refusals(self, inspector: Inspector, kwargs: dict[str, Any], reason: str) -> None:
        """Non-loopback clients, every proxy marker and foreign Host names get a 403 with a reason."""
        async with await client(inspector, **kwargs) as http:
            response = await http.get(f"{PREFIX}/")
        assert response.status_code == 403
        assert reason in response.text
        assert response.headers["content-type"].startswith("text/plain")
        assert response.headers["x-frame-options"] == "DENY"
        assert "set-cookie" not in response.headers

    @pytest.mark.anyio
    async def test_only_get_is_answered(self, inspector: Inspector) -> None:
        """A POST to the inspector is refused: it has no mutating endpoint."""
        async with await client(inspector) as http:
            response = await http.post(f"{PREFIX}/")
        assert response.status_code == 405

    @pytest.mark.parametrize(
        ("host", "expected"),
        [
            ("localhost", True),
            ("localhost:8000", True),
            ("app.localhost:3000", True),
            ("127.0.0.1:8000", True),
            ("127.8.9.10", True),
            ("[::1]:8000", True),
            ("[::1]", True),
            ("LOCALHOST:8000", True),
            ("127.0.0.1.nip.io", False),
            ("localhost.evil.example", False),
            ("evil.example", False),
            ("10.0.0.1:8000", False),
            ("[::1]x", False),
            ("localhost:80a", False),
            ("", False),
        ],
    )
    def test_loopback_host_names(self, host: str, expected: bool) -> None:
        """Only loopback names and literal loopback addresses pass the Host check (DNS rebinding)."""
        assert is_loopback_host(host) is expected

    def test_handles_only_paths_under_the_prefix(self, inspector: Inspector) -> None:
        """The middleware routes the prefix and nothing else (not even a longer path sharing its start)."""
        assert inspector.handles({"type": "http", "path": PREFIX})
        assert inspector.handles({"type": "websocket", "path": f"{PREFIX}/ws"})
        assert not inspector.handles({"type": "http", "path": f"{PREFIX}x/"})
        assert not inspector.handles({"type": "http", "path": "/api"})
        assert not inspector.handles({"type": "lifespan"})

    def test_url_carries_the_token_in_its_fragment_and_a_loopback_host(self, inspector: Inspector) -> None:
        """The printed URL points at a loopback name even for a wildcard bind; the token is after `#`,
        which browsers never send to a server (so it is in no access log)."""
        assert inspector.url("0.0.0.0", 8000) == f"http://127.0.0.1:8000{PREFIX}/#token={TOKEN}"
        assert inspector.url("::", 8000) == f"http://[::1]:8000{PREFIX}/#token={TOKEN}"
        assert inspector.url("localhost", 9000) == f"http://localhost:9000{PREFIX}/#token={TOKEN}"

    def test_url_quotes_a_token_the_page_must_decode(self, hub: Hub) -> None:
        """A token with URL-special characters is percent-encoded (URLSearchParams would read `+` as a space)."""
        token = "a+b/c=d&e#f%g" + "x" * 20
        url = Inspector(hub, prefix=PREFIX, token=token).url("127.0.0.1", 8000)
        assert url.endswith("#token=a%2Bb%2Fc%3Dd%26e%23f%25g" + "x" * 20)

    def test_prefix_must_not_be_the_root(self, hub: Hub) -> None:
        """Serving the inspector at / would shadow the whole app."""
        with pytest.raises(ValueError, match="inspector_prefix"):
            Inspector(hub, prefix="/", token=TOKEN)

    def test_ui_is_found_in_the_source_tree(self) -> None:
        """In an editable install the repository's inspector_ui/ is used."""
        directory = ui_dir()
        assert directory is not None and (directory / "index.html").is_file()
        assert read_asset("app.js") is not None


# --- WebSocket, over a real uvicorn ---------------------------------------------------------------


class TestWebSocket:
    @pytest.mark.anyio
    async def test_own_origin_with_token_streams_hello_snapshot_and_live_events(self, hub: Hub, server: str) -> None:
        """A valid client gets hello, lint, the buffer, then live events."""
        hub.set_lint([{"code": "lint_code", "message": "a finding"}])
        hub.publish(make_record(exchange_id="before"))
        async with authed(server) as ws:
            hello = json.loads(await ws.recv())
            assert hello["type"] == "hello" and hello["epoch"] == hub.epoch
            assert (await recv_until(ws, "lint"))["findings"] == [{"code": "lint_code", "message": "a finding"}]
            snapshot = await recv_until(ws, "events")
            assert snapshot["snapshot"] is True
            assert [r["exchange_id"] for r in snapshot["events"]] == ["before"]
            await recv_until(ws, "synced")
            hub.publish(make_record(exchange_id="after"))
            live = await recv_until(ws, "events")
            assert [r["exchange_id"] for r in live["events"]] == ["after"]

    @pytest.mark.anyio
    async def test_the_server_selects_our_protocol_and_never_echoes_the_token(self, server: str) -> None:
        """The handshake answer names `corstrace.v1`; the protocol carrying the token stays unanswered."""
        async with authed(server) as ws:
            assert ws.subprotocol == "corstrace.v1"
            assert ws.response is not None
            assert TOKEN.encode().hex() not in str(ws.response.headers)

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("query", "headers"),
        [
            (f"token={TOKEN}", {}),
            ("", {"Cookie": f"corstrace_inspector={TOKEN}"}),
            ("", {"Authorization": f"Bearer {TOKEN}"}),
        ],
    )
    async def test_a_token_anywhere_but_the_handshake_protocol_opens_nothing(
        self, server: str, query: str, headers: dict[str, str]
    ) -> None:
        """Query strings land in access logs and cookies reach every port: neither is a credential any more."""
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with connect(ws_url(server, query), origin=websockets.Origin(server), additional_headers=headers):
                pass
        assert refused.value.response.status_code == 403

    @pytest.mark.anyio
    async def test_reconnect_with_since_resumes_where_it_left_off(self, hub: Hub, server: str) -> None:
        """?since=<epoch>:<seq> replays only the records after the cursor."""
        for index in range(4):
            hub.publish(make_record(exchange_id=str(index)))
        async with authed(server, f"since={hub.epoch}:2") as ws:
            events = await recv_until(ws, "events")
        assert [r["seq"] for r in events["events"]] == [3, 4]

    @pytest.mark.anyio
    async def test_lost_gap_sends_a_reset_with_the_missed_count(self, hub: Hub, server: str) -> None:
        """When the cursor fell out of the ring the client is told how many events it missed."""
        for _ in range(60):
            hub.publish(make_record())
        async with authed(server, f"since={hub.epoch}:1") as ws:
            reset = await recv_until(ws, "reset")
        assert (reset["reason"], reset["missed"]) == ("gap", 9)

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        "since",
        ["%C2%B2", "1" * 5000, "EPOCH:" + "9" * 5000, "EPOCH:%C2%B2", "EPOCH:-1", "EPOCH:1e3", "EPOCH:", ":", "%00"],
        ids=[
            "superscript-two",
            "5000-digits",
            "epoch-5000-digits",
            "epoch-superscript",
            "negative",
            "float",
            "empty",
            "colon",
            "nul",
        ],
    )
    async def test_a_malformed_cursor_is_answered_with_a_reset_and_the_full_buffer(
        self, hub: Hub, server: str, since: str
    ) -> None:
        """A `since` of `²`, thousands of digits or any other garbage gets a reset and the buffer, never an error."""
        hub.publish(make_record(exchange_id="kept"))
        async with authed(server, "since=" + since.replace("EPOCH", hub.epoch)) as ws:
            reset = await recv_until(ws, "reset")
            events = await recv_until(ws, "events")
        assert reset["reason"] == "cursor"
        assert [r["exchange_id"] for r in events["events"]] == ["kept"]

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("protocols", "origin", "status"),
        [
            (PROTOCOLS, "http://evil.example", 403),
            (PROTOCOLS, "null", 403),
            (PROTOCOLS, None, 403),
            (None, "SELF", 403),
            (["corstrace.v1"], "SELF", 403),
            (["corstrace.v1", auth_protocol("wrong-token-wrong-token-wrong")], "SELF", 403),
            (["corstrace.v1", "corstrace.auth.zz"], "SELF", 403),
        ],
    )
    async def test_handshake_refusals(
        self, server: str, protocols: list[str] | None, origin: str | None, status: int
    ) -> None:
        """A foreign, null or missing Origin, or a missing, wrong or garbled token, is refused before accept."""
        origin_header = server if origin == "SELF" else origin
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with connect(
                ws_url(server),
                origin=websockets.Origin(origin_header) if origin_header else None,
                subprotocols=protocols,  # type: ignore[arg-type]
            ):
                pass
        assert refused.value.response.status_code == status

    @pytest.mark.anyio
    async def test_other_paths_under_the_prefix_refuse_websockets(self, server: str) -> None:
        """Only /ws speaks WebSocket."""
        url = server.replace("http://", "ws://") + f"{PREFIX}/other"
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with connect(url, origin=websockets.Origin(server), subprotocols=PROTOCOLS):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 404

    @pytest.mark.anyio
    async def test_stalled_client_does_not_slow_requests_and_loses_its_oldest_events(
        self, hub: Hub, server: str
    ) -> None:
        """A client that never reads makes the hub drop (and count) its events while every request is answered."""
        # No compression: a padded record would otherwise shrink to a few bytes and never fill a buffer.
        async with authed(server, max_queue=1, compression=None, max_size=None) as stalled:
            assert json.loads(await stalled.recv())["type"] == "hello"  # accepted; now never read again
            answered = 0
            async with httpx.AsyncClient(base_url=server) as http:
                # Big records fill the socket buffers; then the sender blocks and the bounded queue overflows.
                for _ in range(2000):
                    response = await http.get("/publish-big")
                    assert response.status_code == 200
                    answered += 1
                    if hub.stats()["dropped"] > 0:
                        break
        assert hub.stats()["dropped"] > 0
        assert answered < 2000

    @pytest.mark.anyio
    async def test_drops_are_reported_to_the_client(self, hub: Hub, server: str) -> None:
        """A client that fell behind gets a `dropped` message with the count."""
        async with authed(server) as ws:
            await recv_until(ws, "synced")
            async with httpx.AsyncClient(base_url=server) as http:
                await http.get("/publish-many?count=20")  # queue of 8: 12 dropped within one loop turn
            dropped = await recv_until(ws, "dropped")
        assert (dropped["count"], dropped["total"]) == (12, 12)


# --- raw ASGI harness: what uvicorn cannot show ------------------------------------------------------


class _Socket:
    """A hand-driven ASGI WebSocket connection: records what the app sends, optionally never completes sends."""

    def __init__(self, stall: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.stall = stall
        self.accepted = anyio.Event()
        self.disconnect = anyio.Event()
        self._connected = False
        self._changed = anyio.Event()

    async def receive(self) -> dict[str, Any]:
        if not self._connected:
            self._connected = True
            return {"type": "websocket.connect"}
        await self.disconnect.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def wait_for_text(self, fragment: str) -> None:
        """Until the app has sent a text frame containing ``fragment``."""
        while True:
            changed = self._changed
            if any(fragment in message.get("text", "") for message in self.sent):
                return
            await changed.wait()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        self._changed.set()
        self._changed = anyio.Event()
        if message["type"] == "websocket.accept":
            self.accepted.set()
        elif self.stall and message["type"] == "websocket.send":
            await anyio.sleep_forever()


def ws_scope(**overrides: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "websocket",
        "path": f"{PREFIX}/ws",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"origin", b"http://127.0.0.1:8000"),
            (b"sec-websocket-protocol", ", ".join(PROTOCOLS).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "scheme": "ws",
        "extensions": {"websocket.http.response": {}},
    }
    scope.update(overrides)
    return scope


@pytest.fixture
async def running(inspector: Inspector) -> AsyncIterator[Any]:
    async def run(socket: _Socket, scope: dict[str, Any]) -> None:
        await inspector(scope, socket.receive, socket.send)

    yield run


class TestAsgiWebSocket:
    @pytest.mark.anyio
    @pytest.mark.parametrize(
        "headers",
        [
            [(b"host", b"rebind.attacker.example:8000"), (b"origin", b"http://rebind.attacker.example:8000")],
            [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:9999")],
            [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000"), (b"x-forwarded-for", b"1.2.3.4")],
            [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000"), (b"via", b"1.1 nginx")],
            [(b"host", b"127.0.0.1:8000"), (b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000")],
            [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000"), (b"origin", b"http://evil.example")],
        ],
    )
    async def test_rebinding_foreign_port_and_proxied_handshakes_are_refused(
        self, inspector: Inspector, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """A rebound Host, another local port's page, or a proxied handshake gets an HTTP 403, never an accept."""
        socket = _Socket()
        await inspector(ws_scope(headers=headers), socket.receive, socket.send)
        assert [m["type"] for m in socket.sent] == ["websocket.http.response.start", "websocket.http.response.body"]
        assert socket.sent[0]["status"] == 403

    @pytest.mark.anyio
    async def test_without_the_denial_extension_the_handshake_is_closed(self, inspector: Inspector) -> None:
        """Servers lacking websocket.http.response get a close before accept (they answer 403)."""
        socket = _Socket()
        await inspector(ws_scope(extensions={}, client=("8.8.8.8", 1)), socket.receive, socket.send)
        assert socket.sent == [{"type": "websocket.close", "code": 1008}]

    @pytest.mark.anyio
    async def test_stalled_socket_never_blocks_publish(self, hub: Hub, inspector: Inspector) -> None:
        """With a send that never completes, publishing stays synchronous and the client's queue drops the rest."""
        socket = _Socket(stall=True)
        async with anyio.create_task_group() as group:
            group.start_soon(inspector, ws_scope(), socket.receive, socket.send)
            await socket.accepted.wait()
            while hub.stats()["clients"] == 0:  # the subscription is registered right after accept
                await anyio.lowlevel.checkpoint()
            for _ in range(100):
                hub.publish(make_record())
            assert hub.stats()["dropped"] == 100 - 8
            group.cancel_scope.cancel()

    @pytest.mark.anyio
    async def test_hub_close_ends_connections_with_going_away(self, hub: Hub, inspector: Inspector) -> None:
        """Shutdown closes every inspector socket with code 1001 and returns once they are gone."""
        socket = _Socket()
        async with anyio.create_task_group() as group:
            group.start_soon(inspector, ws_scope(), socket.receive, socket.send)
            await socket.accepted.wait()
            while hub.stats()["clients"] == 0:
                await anyio.lowlevel.checkpoint()
            await hub.close()
        assert socket.sent[-1] == {"type": "websocket.close", "code": 1001, "reason": "server shutting down"}
        assert hub.stats()["clients"] == 0


def test_records_sharing_their_constant_part_encode_as_plain_records_do() -> None:
    """The hub's once-encoded JSON of a shared record decodes to exactly the record, like a plain one."""
    from corstrace._inspector.hub import Shared, SharedRecord

    hub = Hub()
    shared = Shared()
    plain = [make_record(exchange_id=f'ex-"{i}"\u2028é', duration_ms=i / 3, ts=1.0 + i) for i in range(3)]
    records: list[dict[str, Any]] = [SharedRecord(record, shared) for record in plain]
    records.append(make_record(exchange_id="alone", explanation="not shared: \u2028 «»"))
    for record in records:
        hub.publish(record)
    assert hub.records() == [dict(record) for record in records]
    assert shared.json is not None and '"exchange_id"' not in shared.json  # encoded once, per-leg keys apart

"""The live inspector's server side: ring buffer, per-client queues, token, access checks, WebSocket."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from corstrace._inspector import Hub, Inspector, inspector_enabled, load_token
from corstrace._inspector.resources import read_asset, ui_dir
from corstrace._inspector.security import is_loopback_host
from corstrace._inspector.server import COOKIE_NAME
from tests.support import run_server

TOKEN = "inspector-test-token-0123456789"
PREFIX = "/_corstrace"


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
            hub.publish(make_record(exchange_id="big", explanation="x" * 1_000_000))
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


def ws_url(base: str, query: str = f"token={TOKEN}") -> str:
    return base.replace("http://", "ws://") + f"{PREFIX}/ws?{query}"


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
            records, drops, _ = hub.drain(subscription)
        assert [r["exchange_id"] for r in records] == ["6", "7", "8", "9"]
        assert (drops, subscription.dropped, hub.stats()["dropped"]) == (6, 6, 6)

    @pytest.mark.anyio
    async def test_new_subscriber_gets_the_buffer_as_snapshot(self) -> None:
        """A new client first receives everything still in the ring."""
        hub = Hub(buffer_size=3)
        for index in range(4):
            hub.publish(make_record(exchange_id=str(index)))
        async with hub.subscribe() as subscription:
            assert [r["seq"] for r in subscription.snapshot] == [2, 3, 4]
            assert subscription.reset is None

    @pytest.mark.anyio
    async def test_since_resumes_right_after_the_cursor(self) -> None:
        """``since=<epoch>:<seq>`` replays only the records after ``seq``."""
        hub = Hub(buffer_size=10)
        for _ in range(5):
            hub.publish(make_record())
        async with hub.subscribe(f"{hub.epoch}:3") as subscription:
            assert [r["seq"] for r in subscription.snapshot] == [4, 5]
            assert subscription.reset is None

    @pytest.mark.anyio
    async def test_since_at_the_newest_record_replays_nothing(self) -> None:
        """A client that saw everything resumes with an empty snapshot."""
        hub = Hub(buffer_size=10)
        for _ in range(2):
            hub.publish(make_record())
        async with hub.subscribe(f"{hub.epoch}:2") as subscription:
            assert (subscription.snapshot, subscription.reset) == ([], None)

    @pytest.mark.anyio
    async def test_since_behind_the_ring_resets_with_the_full_buffer_and_counts_the_gap(self) -> None:
        """When the gap fell out of the ring the client gets a reset, how many records it missed, and the buffer."""
        hub = Hub(buffer_size=3)
        for _ in range(10):
            hub.publish(make_record())
        async with hub.subscribe(f"{hub.epoch}:2") as subscription:
            assert (subscription.reset, subscription.missed) == ("gap", 5)
            assert [r["seq"] for r in subscription.snapshot] == [8, 9, 10]

    @pytest.mark.anyio
    async def test_since_from_another_process_resets(self) -> None:
        """A cursor from another epoch (a restarted server) means a reset and the full buffer."""
        hub = Hub()
        hub.publish(make_record())
        async with hub.subscribe("0123abcd:1") as subscription:
            assert subscription.reset == "epoch"
            assert [r["seq"] for r in subscription.snapshot] == [1]

    @pytest.mark.anyio
    async def test_lint_change_is_flagged_for_subscribers(self) -> None:
        """set_lint marks every client so the sender pushes the new findings."""
        hub = Hub()
        async with hub.subscribe() as subscription:
            hub.set_lint([{"code": "x", "message": "m"}])
            assert hub.drain(subscription)[2] is True
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


# --- token and switch ---------------------------------------------------------------------------


class TestToken:
    @pytest.fixture(autouse=True)
    def _cache(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        monkeypatch.delenv("CORSTRACE_INSPECTOR_TOKEN", raising=False)

    def test_token_file_is_created_once_private_and_reused(self, tmp_path: Path) -> None:
        """The first call creates a 0600 token file; later calls (other workers, reloads) read the same token."""
        first = load_token()
        path = tmp_path / "corstrace" / "inspector-token"
        assert path.read_text().strip() == first
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert load_token() == first
        assert len(first) >= 32

    def test_environment_variable_overrides_the_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """CORSTRACE_INSPECTOR_TOKEN wins and no file is written."""
        monkeypatch.setenv("CORSTRACE_INSPECTOR_TOKEN", "explicit-token-value")
        assert load_token() == "explicit-token-value"
        assert not (tmp_path / "corstrace").exists()

    def test_unwritable_cache_still_yields_a_token(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without a writable cache directory the token is per process, never missing."""
        blocker = tmp_path / "file"
        blocker.write_text("")
        monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
        assert len(load_token()) >= 32

    def test_inspector_without_token_loads_the_shared_one(self) -> None:
        """Inspector(token=None) uses load_token()."""
        assert Inspector(Hub()).token == load_token()

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
    async def test_token_is_traded_for_a_strict_cookie_and_dropped_from_the_url(self, inspector: Inspector) -> None:
        """?token= answers 303 to the clean URL with an HttpOnly SameSite=Strict cookie scoped to the prefix."""
        async with await client(inspector) as http:
            response = await http.get(f"{PREFIX}/?token={TOKEN}")
        assert response.status_code == 303
        assert response.headers["location"] == f"{PREFIX}/"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE_NAME}={TOKEN};")
        for attribute in ("HttpOnly", "SameSite=Strict", f"Path={PREFIX}"):
            assert attribute in cookie

    @pytest.mark.anyio
    async def test_page_is_served_with_the_cookie_and_strict_security_headers(self, inspector: Inspector) -> None:
        """The page loads with the cookie, under a strict CSP, frame denial and no CORS headers."""
        async with await client(inspector, cookies={COOKIE_NAME: TOKEN}) as http:
            response = await http.get(f"{PREFIX}/", headers={"origin": "https://evil.example"})
        assert response.status_code == 200
        assert "<title>corstrace inspector</title>" in response.text
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        assert not [name for name in response.headers if name.lower().startswith("access-control-")]

    @pytest.mark.anyio
    async def test_prefix_without_slash_redirects_keeping_the_token(self, inspector: Inspector) -> None:
        """/_corstrace?token=… redirects to /_corstrace/?token=…."""
        async with await client(inspector) as http:
            response = await http.get(f"{PREFIX}?token={TOKEN}")
        assert (response.status_code, response.headers["location"]) == (308, f"{PREFIX}/?token={TOKEN}")

    @pytest.mark.anyio
    async def test_static_assets_are_served_with_their_types(self, inspector: Inspector) -> None:
        """app.js and style.css come with JavaScript and CSS content types."""
        async with await client(inspector, cookies={COOKIE_NAME: TOKEN}) as http:
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
        async with await client(inspector, cookies={COOKIE_NAME: TOKEN}) as http:
            response = await http.get(PREFIX + path)
        assert response.status_code == 404

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("kwargs", "path", "reason"),
        [
            ({}, f"{PREFIX}/", "needs its token"),
            ({}, f"{PREFIX}/app.js", "needs its token"),
            ({}, f"{PREFIX}/?token=wrong-token", "not valid"),
            ({"cookies": {COOKIE_NAME: "wrong-token"}}, f"{PREFIX}/", "needs its token"),
            ({"client": ("192.168.1.20", 4000)}, f"{PREFIX}/?token={TOKEN}", "loopback clients"),
            ({"client": ("10.0.0.1", 4000), "cookies": {COOKIE_NAME: TOKEN}}, f"{PREFIX}/", "loopback clients"),
            ({"headers": {"x-forwarded-for": "203.0.113.9"}}, f"{PREFIX}/?token={TOKEN}", "x-forwarded-for"),
            ({"headers": {"x-real-ip": "203.0.113.9"}}, f"{PREFIX}/?token={TOKEN}", "x-real-ip"),
            ({"headers": {"forwarded": "for=203.0.113.9"}}, f"{PREFIX}/?token={TOKEN}", "forwarded"),
            ({"base_url": "http://attacker.example:8000"}, f"{PREFIX}/?token={TOKEN}", "loopback Host"),
            ({"base_url": "http://127.0.0.1.nip.io:8000"}, f"{PREFIX}/?token={TOKEN}", "loopback Host"),
            ({"base_url": "http://localhost.attacker.example"}, f"{PREFIX}/?token={TOKEN}", "loopback Host"),
        ],
    )
    async def test_refusals(self, inspector: Inspector, kwargs: dict[str, Any], path: str, reason: str) -> None:
        """Non-loopback clients, proxies, foreign Host names and missing or wrong tokens get a 403 with a reason."""
        async with await client(inspector, **kwargs) as http:
            response = await http.get(path)
        assert response.status_code == 403
        assert reason in response.text
        assert response.headers["content-type"].startswith("text/plain")
        assert response.headers["x-frame-options"] == "DENY"
        assert "set-cookie" not in response.headers

    @pytest.mark.anyio
    async def test_only_get_is_answered(self, inspector: Inspector) -> None:
        """A POST to the inspector is refused: it has no mutating endpoint."""
        async with await client(inspector, cookies={COOKIE_NAME: TOKEN}) as http:
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

    def test_url_carries_the_token_and_a_loopback_host(self, inspector: Inspector) -> None:
        """The printed URL points at a loopback name even for a wildcard bind."""
        assert inspector.url("0.0.0.0", 8000) == f"http://127.0.0.1:8000{PREFIX}/?token={TOKEN}"
        assert inspector.url("::", 8000) == f"http://[::1]:8000{PREFIX}/?token={TOKEN}"
        assert inspector.url("localhost", 9000) == f"http://localhost:9000{PREFIX}/?token={TOKEN}"

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
        async with connect(ws_url(server), origin=websockets.Origin(server)) as ws:
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
    async def test_cookie_authorizes_the_websocket(self, server: str) -> None:
        """The cookie the page got is enough; no token in the WebSocket URL."""
        async with connect(
            ws_url(server, ""),
            origin=websockets.Origin(server),
            additional_headers={"Cookie": f"{COOKIE_NAME}={TOKEN}"},
        ) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"

    @pytest.mark.anyio
    async def test_reconnect_with_since_resumes_where_it_left_off(self, hub: Hub, server: str) -> None:
        """?since=<epoch>:<seq> replays only the records after the cursor."""
        for index in range(4):
            hub.publish(make_record(exchange_id=str(index)))
        async with connect(
            ws_url(server, f"token={TOKEN}&since={hub.epoch}:2"), origin=websockets.Origin(server)
        ) as ws:
            events = await recv_until(ws, "events")
        assert [r["seq"] for r in events["events"]] == [3, 4]

    @pytest.mark.anyio
    async def test_lost_gap_sends_a_reset_with_the_missed_count(self, hub: Hub, server: str) -> None:
        """When the cursor fell out of the ring the client is told how many events it missed."""
        for _ in range(60):
            hub.publish(make_record())
        async with connect(
            ws_url(server, f"token={TOKEN}&since={hub.epoch}:1"), origin=websockets.Origin(server)
        ) as ws:
            reset = await recv_until(ws, "reset")
        assert (reset["reason"], reset["missed"]) == ("gap", 9)

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("query", "origin", "status"),
        [
            (f"token={TOKEN}", "http://evil.example", 403),
            (f"token={TOKEN}", "null", 403),
            (f"token={TOKEN}", None, 403),
            ("", "SELF", 403),
            ("token=wrong-token", "SELF", 403),
        ],
    )
    async def test_handshake_refusals(self, server: str, query: str, origin: str | None, status: int) -> None:
        """A foreign, null or missing Origin, or a missing or wrong token, is refused before accept."""
        origin_header = server if origin == "SELF" else origin
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with connect(
                ws_url(server, query), origin=websockets.Origin(origin_header) if origin_header else None
            ):
                pass
        assert refused.value.response.status_code == status

    @pytest.mark.anyio
    async def test_other_paths_under_the_prefix_refuse_websockets(self, server: str) -> None:
        """Only /ws speaks WebSocket."""
        url = server.replace("http://", "ws://") + f"{PREFIX}/other?token={TOKEN}"
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with connect(url, origin=websockets.Origin(server)):
                pass
        assert refused.value.response.status_code == 404

    @pytest.mark.anyio
    async def test_stalled_client_does_not_slow_requests_and_loses_its_oldest_events(
        self, hub: Hub, server: str
    ) -> None:
        """A client that never reads makes the hub drop (and count) its events while every request is answered."""
        # No compression: a padded record would otherwise shrink to a few bytes and never fill a buffer.
        async with connect(
            ws_url(server), origin=websockets.Origin(server), max_queue=1, compression=None, max_size=None
        ) as stalled:
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
        async with connect(ws_url(server), origin=websockets.Origin(server)) as ws:
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

    async def receive(self) -> dict[str, Any]:
        if not self._connected:
            self._connected = True
            return {"type": "websocket.connect"}
        await self.disconnect.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message["type"] == "websocket.accept":
            self.accepted.set()
        elif self.stall and message["type"] == "websocket.send":
            await anyio.sleep_forever()


def ws_scope(**overrides: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "websocket",
        "path": f"{PREFIX}/ws",
        "query_string": f"token={TOKEN}".encode(),
        "headers": [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000")],
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


def test_no_os_specific_token_path_leaks_into_the_prefix() -> None:
    """The cookie path is the prefix, so the token cookie is never sent to the application's own routes."""
    assert os.path.sep not in PREFIX[1:]


def test_records_sharing_their_constant_part_encode_as_plain_records_do() -> None:
    from corstrace._inspector.hub import Shared, SharedRecord
    from corstrace._inspector.server import _dumps, _events_frame

    shared = Shared()
    plain = [make_record(exchange_id=f'ex-"{i}"\u2028é', duration_ms=i / 3, ts=1.0 + i) | {"seq": i} for i in range(3)]
    records: list[dict[str, Any]] = [SharedRecord(record, shared) for record in plain]
    records.append(make_record(exchange_id="alone", explanation="not shared: \u2028 «»"))
    frame = _events_frame(records, snapshot=False)
    assert json.loads(frame) == json.loads(_dumps({"type": "events", "events": records, "snapshot": False}))
    assert shared.json is not None and '"exchange_id"' not in shared.json  # encoded once, per-leg keys apart

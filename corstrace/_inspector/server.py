"""The inspector's ASGI handler: the page, its static files and the live WebSocket, under one prefix.

Written at the raw ASGI level because the middleware wraps *any* ASGI app: no router to mount on.

The page and its files are public (they hold no data); the WebSocket needs the token, presented as the
subprotocol ``corstrace.auth.<hex>`` beside ``corstrace.v1`` (see security.py for why not a cookie or
the query string). The printed URL carries the token in its fragment, which never reaches any server.

WebSocket protocol (server → client, JSON text frames; the client sends nothing it needs answered):

- ``{"type": "hello", "epoch", "seq", "buffer_size", "pid", "version", "heartbeat"}`` first (a collector adds
  ``"collector": true`` and ``"processes"``, how many publish to it now);
- ``{"type": "reset", "reason": "epoch"|"gap"|"cursor", "missed"}`` when ``?since=`` could not resume;
- ``{"type": "lint", "findings": [...]}`` on connect and whenever the findings change;
- ``{"type": "events", "events": [record, ...], "snapshot": bool}``: records in ``seq`` order, batched,
  each frame within :data:`FRAME_BYTES` (plus one record) and :data:`FRAME_RECORDS`;
- ``{"type": "synced", "seq"}`` once the snapshot has been sent;
- ``{"type": "dropped", "count", "total"}`` when this client fell behind and lost its oldest records;
- ``{"type": "stats", ...hub counters, "client_dropped", "queued"}`` as a heartbeat every ``heartbeat`` s.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any
from urllib.parse import parse_qs, quote

import anyio
from starlette.types import Receive, Scope, Send

from corstrace._inspector.hub import Entry, Hub, Subscription, dumps
from corstrace._inspector.resources import cached_assets
from corstrace._inspector.security import (
    PROTOCOL,
    SECURITY_HEADERS,
    header_count,
    headers_of,
    is_own_origin,
    offered_protocols,
    presents_token,
    refusal,
)
from corstrace._inspector.token import current_token, current_token_async
from corstrace._version import __version__

# One frame stays small for the browser and for the server's write buffer, however big the records.
FRAME_BYTES = 512 * 1024
FRAME_RECORDS = 200
_CLOSE_GOING_AWAY = 1001


def _events_frame(entries: list[Entry], snapshot: bool) -> str:
    """The ``events`` message, from the records' JSON as the hub keeps it."""
    events = ",".join([entry.text for entry in entries])
    return f'{{"type":"events","events":[{events}],"snapshot":{"true" if snapshot else "false"}}}'


class Inspector:
    """Serves the inspector page and its WebSocket under ``prefix`` for loopback clients holding the token.

    ``token=None`` uses the process's shared token (token.py), loaded without blocking the event loop.
    """

    def __init__(
        self,
        hub: Hub,
        *,
        prefix: str = "/_corstrace",
        token: str | None = None,
        heartbeat: float = 10.0,
        batch_interval: float = 0.05,
    ) -> None:
        normalized = "/" + prefix.strip("/")
        if normalized == "/":
            msg = f"`inspector_prefix` must be a path below the root, like '/_corstrace', got {prefix!r}."
            raise ValueError(msg)
        self.hub = hub
        self.prefix = normalized
        self._token = token or None
        self.heartbeat = heartbeat
        self.batch_interval = batch_interval

    @property
    def token(self) -> str:
        """The token the WebSocket requires (the shared one is read at import, so this rarely blocks)."""
        return self._token or current_token()

    async def current_token(self) -> str:
        """The token, loaded without blocking the event loop."""
        return self._token or await current_token_async()

    def handles(self, scope: Scope) -> bool:
        """True when ``scope`` is an HTTP or WebSocket request under the inspector's prefix."""
        if scope["type"] not in ("http", "websocket"):
            return False
        path: str = scope.get("path", "")
        return path == self.prefix or path.startswith(self.prefix + "/")

    def url(self, host: str, port: int) -> str:
        """The URL to open for a server bound to ``host``:``port``; the token rides in the fragment."""
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}{self.prefix}/#token={quote(self.token, safe='')}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = headers_of(scope)
        refused = refusal(scope, headers)
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send, headers, refused)
        else:
            await self._http(scope, send, refused)

    def _query(self, scope: Scope) -> dict[str, str]:
        raw = scope.get("query_string", b"").decode("latin-1")
        return {name: values[0] for name, values in parse_qs(raw, keep_blank_values=True).items()}

    # -- HTTP -----------------------------------------------------------------------------------

    async def _http(self, scope: Scope, send: Send, refused: str | None) -> None:
        method = scope.get("method", "GET")
        if refused is not None:
            return await respond(send, 403, refused, method=method)
        if method not in ("GET", "HEAD"):
            return await respond(send, 405, "The corstrace inspector only answers GET.", method=method, allow="GET")
        rest = scope["path"][len(self.prefix) :]
        if rest == "" or (rest == "/" and "token" in self._query(scope)):
            # The page needs no query; a token in one (an old URL) is dropped from the address bar and history.
            return await respond(send, 308 if rest == "" else 303, "", method=method, location=self.prefix + "/")
        if rest == "/ws":
            return await respond(send, 426, "This is the inspector's WebSocket endpoint.", method=method)
        name = "index.html" if rest == "/" else rest[1:]
        asset = (await cached_assets()).get(name)
        if asset is None:
            return await respond(send, 404, "Not found.", method=method)
        body, content_type = asset
        await respond(send, 200, body, method=method, content_type=content_type)

    # -- WebSocket ------------------------------------------------------------------------------

    async def _websocket(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], refused: str | None
    ) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if refused is None and scope["path"] != self.prefix + "/ws":
            refused = "Not found."
        if refused is None and (
            header_count(scope, b"origin") != 1
            or not is_own_origin(headers.get("origin"), headers.get("host"), scope.get("scheme", "ws"))
        ):
            # Cross-site WebSocket hijacking: browsers let any page open a socket here and only tell us its Origin.
            refused = "The corstrace inspector's WebSocket only accepts its own page's Origin."
        protocols = offered_protocols(scope)
        if refused is None and not presents_token(protocols, await self.current_token()):
            refused = _MISSING_TOKEN
        if refused is not None:
            return await deny_websocket(scope, send, refused)
        # Select ours, never the one carrying the token: the answer must not echo it.
        await send({"type": "websocket.accept", "subprotocol": PROTOCOL if PROTOCOL in protocols else None})
        since = self._query(scope).get("since") or None
        try:
            async with self.hub.subscribe(since) as subscription, anyio.create_task_group() as group:

                async def watch_disconnect() -> None:
                    # Nothing the page sends matters; reading is how a closed or dead socket is noticed.
                    while (await receive())["type"] != "websocket.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch_disconnect)
                try:
                    await self._stream(subscription, send)
                except OSError:  # uvicorn's ClientDisconnected: the page went away mid-send
                    pass
                group.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():
            # The server cancelled us (hypercorn does at shutdown, before the lifespan's): say "going away",
            # so the page reconnects quietly instead of reporting the server's 1011.
            with anyio.move_on_after(1, shield=True), contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": _CLOSE_GOING_AWAY, "reason": "server shutting down"})
            raise

    async def _stream(self, subscription: Subscription, send: Send) -> None:
        async def send_json(message: dict[str, Any]) -> None:
            await send({"type": "websocket.send", "text": dumps(message)})

        hub = self.hub
        stats = hub.stats()
        await send_json(
            {
                "type": "hello",
                "epoch": hub.epoch,
                "seq": stats["published"],
                "buffer_size": hub.buffer_size,
                "pid": os.getpid(),
                "version": _version(),
                "heartbeat": self.heartbeat,
                **hub.describe(),
            }
        )
        if subscription.reset is not None:
            await send_json({"type": "reset", "reason": subscription.reset, "missed": subscription.missed})
        await send_json({"type": "lint", "findings": hub.lint})
        last_sent: int | None = None
        while True:
            # Read from the ring as it is sent: a client stalled here holds nothing the ring let go.
            entries, _ = hub.snapshot(subscription, FRAME_BYTES, FRAME_RECORDS)
            if not entries:
                break
            await send({"type": "websocket.send", "text": _events_frame(entries, snapshot=True)})
            last_sent = entries[-1].seq
        await send_json({"type": "synced", "seq": last_sent})
        last_beat = time.monotonic()
        while True:
            if subscription.closed:
                await send({"type": "websocket.close", "code": _CLOSE_GOING_AWAY, "reason": "server shutting down"})
                return
            await subscription.wait(self.heartbeat)
            entries, drops, lint_changed = hub.drain(subscription, FRAME_BYTES, FRAME_RECORDS)
            if drops:
                await send_json({"type": "dropped", "count": drops, "total": subscription.dropped})
            if lint_changed:
                await send_json({"type": "lint", "findings": hub.lint})
            if entries:
                await send({"type": "websocket.send", "text": _events_frame(entries, snapshot=False)})
            if time.monotonic() - last_beat >= self.heartbeat:
                last_beat = time.monotonic()
                beat = {"type": "stats", **hub.stats(), "client_dropped": subscription.dropped}
                await send_json({**beat, "queued": subscription.pending()})
            if entries and not subscription.closed and not subscription.pending():
                # Coalesce bursts: whatever arrives meanwhile goes out as one frame.
                await anyio.sleep(self.batch_interval)


_MISSING_TOKEN = (
    "The corstrace inspector's WebSocket needs its token: open the inspector URL printed in the application's "
    "startup log (it ends with #token=...)."
)


def _version() -> str:
    return __version__


async def respond(
    send: Send,
    status: int,
    body: str | bytes,
    *,
    method: str,
    content_type: str = "text/plain; charset=utf-8",
    location: str | None = None,
    allow: str | None = None,
) -> None:
    payload = body.encode() if isinstance(body, str) else body
    if status >= 400 and payload and not payload.endswith(b"\n"):
        payload += b"\n"
    headers = [(name.encode(), value.encode()) for name, value in SECURITY_HEADERS]
    headers.append((b"content-type", content_type.encode()))
    headers.append((b"content-length", str(len(payload)).encode()))
    if location is not None:
        headers.append((b"location", location.encode("latin-1")))
    if allow is not None:
        headers.append((b"allow", allow.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else payload})


async def deny_websocket(scope: Scope, send: Send, reason: str) -> None:
    """Refuse the handshake with an HTTP 403 (never accept first, so a hostile page learns nothing)."""
    status = 404 if reason == "Not found." else 403
    if "websocket.http.response" in scope.get("extensions", {}):
        payload = (reason + "\n").encode()
        headers = [(name.encode(), value.encode()) for name, value in SECURITY_HEADERS]
        headers += [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": payload})
    else:
        # Servers without the denial-response extension turn a close before accept into a 403.
        await send({"type": "websocket.close", "code": 1008})

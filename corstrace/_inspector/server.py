"""The inspector's ASGI handler: the page, its static files and the live WebSocket, under one prefix.

Written at the raw ASGI level because the middleware wraps *any* ASGI app: no router to mount on.

WebSocket protocol (server → client, JSON text frames; the client sends nothing it needs answered):

- ``{"type": "hello", "epoch", "seq", "buffer_size", "pid", "version", "heartbeat"}`` first;
- ``{"type": "reset", "reason": "epoch"|"gap"|"cursor", "missed"}`` when ``?since=`` could not resume;
- ``{"type": "lint", "findings": [...]}`` on connect and whenever the findings change;
- ``{"type": "events", "events": [record, ...], "snapshot": bool}``: records in ``seq`` order, batched;
- ``{"type": "synced", "seq"}`` once the snapshot has been sent;
- ``{"type": "dropped", "count", "total"}`` when this client fell behind and lost its oldest records;
- ``{"type": "stats", ...hub counters, "client_dropped", "queued"}`` as a heartbeat every ``heartbeat`` s.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote

import anyio
from starlette.types import Receive, Scope, Send

from corstrace._inspector.hub import PER_LEG_KEYS, Hub, Record, SharedRecord, Subscription
from corstrace._inspector.resources import read_asset, ui_dir
from corstrace._inspector.security import SECURITY_HEADERS, headers_of, is_own_origin, refusal
from corstrace._inspector.token import load_token
from corstrace._version import __version__

COOKIE_NAME = "corstrace_inspector"
# The token is stable across restarts (see token.py), so the cookie may outlive the browser session.
_COOKIE_MAX_AGE = 30 * 24 * 3600
# Keeps one frame comfortably small even when the whole ring is replayed.
_SNAPSHOT_CHUNK = 200
_CLOSE_GOING_AWAY = 1001


def _dumps(message: dict[str, Any]) -> str:
    # default=str: a record carrying something odd must still reach the page rather than kill the sender.
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=str)


# json's own string encoder (C-accelerated), as json.dumps(..., ensure_ascii=False) uses it.
_encode_string: Callable[[str], str] = json.encoder.encode_basestring


def _record_json(record: Record) -> str:
    """One record as JSON; the part it shares with other records (see hub.Shared) is encoded only once."""
    shared = record.shared if isinstance(record, SharedRecord) else None
    if shared is None:
        return _dumps(record)
    if shared.json is None:
        shared.json = _dumps({k: v for k, v in record.items() if k not in PER_LEG_KEYS})[1:-1]
    seq, ts, exchange_id, duration = (record.get(key) for key in PER_LEG_KEYS)
    if type(seq) is int and type(ts) is float and type(exchange_id) is str and type(duration) is float and shared.json:
        # What json.dumps would write for these four, without its per-call set-up (~3 µs for a small dict).
        exchange = _encode_string(exchange_id)
        return f'{{"seq":{seq},"ts":{ts!r},"exchange_id":{exchange},"duration_ms":{duration!r},{shared.json}}}'
    own = _dumps({k: record[k] for k in PER_LEG_KEYS if k in record})
    if not shared.json:
        return own
    return f"{own[:-1]}{',' if len(own) > 2 else ''}{shared.json}}}"


def _events_frame(records: list[Record], snapshot: bool) -> str:
    """The ``events`` message: the JSON ``_dumps`` would make of it (a shared record's keys come in another order)."""
    events = ",".join([_record_json(record) for record in records])
    return f'{{"type":"events","events":[{events}],"snapshot":{"true" if snapshot else "false"}}}'


def _cookies(header: str | None) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for part in (header or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            cookies.setdefault(name, value.strip().strip('"'))
    return cookies


class Inspector:
    """Serves the inspector page and its WebSocket under ``prefix`` for loopback clients holding the token."""

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
        self.token = token or load_token()
        self.heartbeat = heartbeat
        self.batch_interval = batch_interval

    def handles(self, scope: Scope) -> bool:
        """True when ``scope`` is an HTTP or WebSocket request under the inspector's prefix."""
        if scope["type"] not in ("http", "websocket"):
            return False
        path: str = scope.get("path", "")
        return path == self.prefix or path.startswith(self.prefix + "/")

    def url(self, host: str, port: int) -> str:
        """The URL to open, token included, for a server bound to ``host``:``port``."""
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}{self.prefix}/?token={quote(self.token, safe='')}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = headers_of(scope)
        refused = refusal(scope, headers)
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send, headers, refused)
        else:
            await self._http(scope, send, headers, refused)

    # -- access ---------------------------------------------------------------------------------

    def _token_ok(self, candidate: str | None) -> bool:
        return candidate is not None and secrets.compare_digest(candidate.encode(), self.token.encode())

    def _query(self, scope: Scope) -> dict[str, str]:
        raw = scope.get("query_string", b"").decode("latin-1")
        return {name: values[0] for name, values in parse_qs(raw, keep_blank_values=True).items()}

    def _authorized(self, scope: Scope, headers: dict[str, str]) -> bool:
        query_token = self._query(scope).get("token")
        return self._token_ok(query_token) or self._token_ok(_cookies(headers.get("cookie")).get(COOKIE_NAME))

    # -- HTTP -----------------------------------------------------------------------------------

    async def _http(self, scope: Scope, send: Send, headers: dict[str, str], refused: str | None) -> None:
        method = scope.get("method", "GET")
        if refused is not None:
            return await _respond(send, 403, refused, method=method)
        if method not in ("GET", "HEAD"):
            return await _respond(send, 405, "The corstrace inspector only answers GET.", method=method, allow="GET")
        rest = scope["path"][len(self.prefix) :]
        query = self._query(scope)
        if rest == "":
            location = self.prefix + "/"
            if scope.get("query_string"):
                location += "?" + scope["query_string"].decode("latin-1")
            return await _respond(send, 308, "", method=method, location=location)
        if rest == "/" and "token" in query:
            if not self._token_ok(query["token"]):
                return await _respond(send, 403, _WRONG_TOKEN, method=method)
            # Trade the token for a cookie and drop it from the URL, so it does not linger in history or screenshots.
            cookie = (
                f"{COOKIE_NAME}={self.token}; Path={self.prefix}; Max-Age={_COOKIE_MAX_AGE}; HttpOnly; SameSite=Strict"
            )
            return await _respond(send, 303, "", method=method, location=self.prefix + "/", set_cookie=cookie)
        if not self._authorized(scope, headers):
            return await _respond(send, 403, _MISSING_TOKEN, method=method)
        if rest == "/ws":
            return await _respond(send, 426, "This is the inspector's WebSocket endpoint.", method=method)
        name = "index.html" if rest == "/" else rest[1:]
        asset = read_asset(name, ui_dir())
        if asset is None:
            return await _respond(send, 404, "Not found.", method=method)
        body, content_type = asset
        await _respond(send, 200, body, method=method, content_type=content_type)

    # -- WebSocket ------------------------------------------------------------------------------

    async def _websocket(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], refused: str | None
    ) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if refused is None and scope["path"] != self.prefix + "/ws":
            refused = "Not found."
        if refused is None and not self._authorized(scope, headers):
            refused = _MISSING_TOKEN
        if refused is None and not is_own_origin(headers.get("origin"), headers.get("host"), scope.get("scheme", "ws")):
            # Cross-site WebSocket hijacking: browsers let any page open a socket here and only tell us its Origin.
            refused = "The corstrace inspector's WebSocket only accepts its own page's Origin."
        if refused is not None:
            return await _deny_websocket(scope, send, refused)
        await send({"type": "websocket.accept"})
        since = self._query(scope).get("since") or None
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

    async def _stream(self, subscription: Subscription, send: Send) -> None:
        async def send_json(message: dict[str, Any]) -> None:
            await send({"type": "websocket.send", "text": _dumps(message)})

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
            }
        )
        if subscription.reset is not None:
            await send_json({"type": "reset", "reason": subscription.reset, "missed": subscription.missed})
        await send_json({"type": "lint", "findings": hub.lint})
        snapshot, subscription.snapshot = subscription.snapshot, []
        for start in range(0, len(snapshot), _SNAPSHOT_CHUNK):
            chunk = snapshot[start : start + _SNAPSHOT_CHUNK]
            await send({"type": "websocket.send", "text": _events_frame(chunk, snapshot=True)})
        await send_json({"type": "synced", "seq": snapshot[-1]["seq"] if snapshot else None})
        last_beat = time.monotonic()
        while True:
            if subscription.closed:
                await send({"type": "websocket.close", "code": _CLOSE_GOING_AWAY, "reason": "server shutting down"})
                return
            await subscription.wait(self.heartbeat)
            records, drops, lint_changed = hub.drain(subscription)
            if drops:
                await send_json({"type": "dropped", "count": drops, "total": subscription.dropped})
            if lint_changed:
                await send_json({"type": "lint", "findings": hub.lint})
            if records:
                await send({"type": "websocket.send", "text": _events_frame(records, snapshot=False)})
            if time.monotonic() - last_beat >= self.heartbeat:
                last_beat = time.monotonic()
                beat = {"type": "stats", **hub.stats(), "client_dropped": subscription.dropped}
                await send_json({**beat, "queued": subscription.pending()})
            if records and not subscription.closed:
                # Coalesce bursts: whatever arrives meanwhile goes out as one frame.
                await anyio.sleep(self.batch_interval)


_MISSING_TOKEN = (
    "The corstrace inspector needs its token: open the inspector URL printed in the application's startup log "
    "(it ends with ?token=...)."
)
_WRONG_TOKEN = "This inspector token is not valid: open the inspector URL printed in the application's startup log."


def _version() -> str:
    return __version__


async def _respond(
    send: Send,
    status: int,
    body: str | bytes,
    *,
    method: str,
    content_type: str = "text/plain; charset=utf-8",
    location: str | None = None,
    set_cookie: str | None = None,
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
    if set_cookie is not None:
        headers.append((b"set-cookie", set_cookie.encode("latin-1")))
    if allow is not None:
        headers.append((b"allow", allow.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else payload})


async def _deny_websocket(scope: Scope, send: Send, reason: str) -> None:
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

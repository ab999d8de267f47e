"""The collector: one inspector page for every worker process and app that publishes to it.

An ASGI app (``corstrace inspector`` runs it under uvicorn on a loopback port) made of the ordinary
:class:`~corstrace._inspector.server.Inspector` over a :class:`CollectorHub`, plus the ingest endpoint workers
publish to (protocol: :mod:`corstrace._inspector.ingest`). The page and its WebSocket follow the inspector's
rules unchanged (loopback client, Host allow-list, no proxy, own-Origin WebSocket, the token); the ingest
endpoint follows the same first three, refuses anything a browser sends (any ``Origin``, any ``Sec-Fetch-*``),
and takes records only from a peer that proved it knows the token.

Each record is stamped with the ``process`` (``{"pid", "name"}``) its connection introduced itself as, and
keeps its exchange id unless another process already used the same random prefix (then the id gets that
process's instance tag, so two processes' exchanges never merge on the page).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.types import Receive, Scope, Send

from corstrace._escape import escape_control
from corstrace._inspector.hub import BUFFER_BYTES, Hub, dumps
from corstrace._inspector.ingest import (
    INGEST_PATH,
    INGEST_PROTOCOL,
    INSTANCE,
    MAX_NAME_LENGTH,
    NONCE,
    NONCE_HEADER,
    PAGE_PREFIX,
    proof,
    proof_matches,
)
from corstrace._inspector.security import header_count, headers_of, offered_protocols, refusal
from corstrace._inspector.server import Inspector, deny_websocket, respond

# Unauthenticated sockets (accepted, proof not yet shown) and authenticated publishers, at most.
MAX_PENDING = 16
MAX_PUBLISHERS = 256
HANDSHAKE_SECONDS = 5.0
# What the collector remembers per publisher instance (resume points, exchange-id prefixes, the page's list).
_MAX_REMEMBERED = 4096
_MAX_LISTED = 64
_MAX_FINDINGS = 64
_MAX_FINDING_TEXT = 4000

_CLOSE_POLICY = 1008
_CLOSE_TRY_AGAIN = 1013
_CLOSE_GOING_AWAY = 1001


@dataclass
class Source:
    """One connected (or once connected) publishing process, as the page's stats list it."""

    instance: str
    pid: int
    name: str
    connected: bool = True
    records: int = 0
    dropped: int = 0
    since: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "name": self.name, "connected": self.connected, "records": self.records,
                "dropped": self.dropped}  # fmt: skip


class CollectorHub(Hub):
    """The collector's ring, plus who publishes to it: what the page's ``hello`` and ``stats`` carry."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.sources: OrderedDict[str, Source] = OrderedDict()
        # Records the workers dropped before they reached the collector (their queue overflowed).
        self.upstream_dropped = 0

    def describe(self) -> dict[str, Any]:
        return {"collector": True, "processes": sum(1 for p in self.sources.values() if p.connected)}

    def stats(self) -> dict[str, Any]:
        stats = super().stats()
        listed = list(self.sources.values())[-_MAX_LISTED:]
        stats.update(self.describe())
        stats["sources"] = [publisher.as_dict() for publisher in listed]
        stats["upstream_dropped"] = self.upstream_dropped
        return stats


_BROWSER_HEADERS = ("origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest", "sec-fetch-user")


def ingest_refusal(scope: Scope, headers: dict[str, str]) -> str | None:
    """Why this handshake may not publish (before any token is checked), or None."""
    refused = refusal(scope, headers)
    if refused is not None:
        return refused.replace("corstrace inspector", "corstrace collector")
    marker = next((name for name in _BROWSER_HEADERS if name in headers), None)
    if marker is not None:
        return (
            f"The corstrace collector takes records from corstrace workers only, never from a browser page "
            f"(the handshake carries `{marker}`)."
        )
    if INGEST_PROTOCOL not in offered_protocols(scope):
        return f"The corstrace collector's ingest endpoint speaks the subprotocol {INGEST_PROTOCOL} only."
    nonce = headers.get(NONCE_HEADER, "")
    if header_count(scope, NONCE_HEADER.encode()) != 1 or not NONCE.fullmatch(nonce):
        return "The corstrace collector needs one Corstrace-Nonce header (32 hex digits) in the handshake."
    return None


class Collector:
    """The ASGI app of ``corstrace inspector``: the page and its WebSocket, and the workers' ingest endpoint.

    ``token=None`` uses the shared inspector token (token.py), the same every worker of this user reads.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        buffer_size: int = 1000,
        buffer_bytes: int = BUFFER_BYTES,
        heartbeat: float = 10.0,
        handshake_timeout: float = HANDSHAKE_SECONDS,
        log: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.hub = CollectorHub(buffer_size=buffer_size, buffer_bytes=buffer_bytes)
        self.inspector = Inspector(self.hub, prefix=PAGE_PREFIX, token=token, heartbeat=heartbeat)
        self.handshake_timeout = handshake_timeout
        self._log = log or _log
        self._pending = 0
        self._connected = 0
        # instance -> the last worker seq published: a reconnect resumes right after it.
        self._resume: OrderedDict[str, int] = OrderedDict()
        # exchange-id prefix -> the instance that used it first.
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._lint: dict[str, list[dict[str, Any]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            return await self._lifespan(receive, send)
        path: str = scope.get("path", "")
        if kind == "websocket" and path == INGEST_PATH:
            return await self._ingest(scope, receive, send)
        if kind == "http" and path == INGEST_PATH:
            headers = headers_of(scope)
            refused = refusal(scope, headers)
            method = scope.get("method", "GET")
            if refused is not None:
                return await respond(send, 403, refused, method=method)
            return await respond(send, 426, "Workers publish here over a WebSocket.", method=method)
        if kind in ("http", "websocket") and self.inspector.handles(scope):
            return await self.inspector(scope, receive, send)
        if kind == "http":
            headers = headers_of(scope)
            refused = refusal(scope, headers)
            method = scope.get("method", "GET")
            if refused is not None:
                return await respond(send, 403, refused, method=method)
            if path == "/" and method in ("GET", "HEAD"):
                # The page is under the prefix; a bare http://127.0.0.1:2677/ leads there (a fragment survives).
                return await respond(send, 308, "", method=method, location=PAGE_PREFIX + "/")
            return await respond(send, 404, "Not found.", method=method)
        if kind == "websocket":
            if (await receive())["type"] == "websocket.connect":
                await deny_websocket(scope, send, "Not found.")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.hub.close(timeout=2.0)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- ingest ---------------------------------------------------------------------------------

    async def _ingest(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        headers = headers_of(scope)
        refused = ingest_refusal(scope, headers)
        if refused is None and self._pending >= MAX_PENDING:
            refused = "The corstrace collector has too many connections still authenticating; try again."
        if refused is not None:
            return await deny_websocket(scope, send, refused)

        async def send_json(message: dict[str, Any]) -> None:
            await send({"type": "websocket.send", "text": dumps(message)})

        self._pending += 1
        try:
            await send({"type": "websocket.accept", "subprotocol": INGEST_PROTOCOL})
            token = await self.inspector.current_token()
            client_nonce, server_nonce = headers[NONCE_HEADER], secrets.token_hex(16)
            collector_proof = proof(token, "collector", client_nonce, server_nonce)
            await send_json({"type": "challenge", "nonce": server_nonce, "proof": collector_proof})
            hello: Any = None
            with anyio.move_on_after(self.handshake_timeout):
                hello = await _receive_json(receive)
            publisher = self._introduce(hello, token, client_nonce, server_nonce)
        finally:
            self._pending -= 1
        if publisher is None:
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": _CLOSE_POLICY, "reason": "not authenticated"})
            return
        if self._connected >= MAX_PUBLISHERS:
            await send({"type": "websocket.close", "code": _CLOSE_TRY_AGAIN, "reason": "too many publishers"})
            return
        self._connected += 1
        self._register(publisher)
        try:
            await send_json(
                {"type": "welcome", "epoch": self.hub.epoch, "resume": self._resume.get(publisher.instance)}
            )
            await self._serve_publisher(publisher, receive, send_json)
        except OSError:  # the worker went away mid-send
            pass
        except anyio.get_cancelled_exc_class():
            with anyio.move_on_after(1, shield=True), contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": _CLOSE_GOING_AWAY, "reason": "collector shutting down"})
            raise
        finally:
            self._connected -= 1
            self._unregister(publisher)

    def _introduce(self, hello: Any, token: str, client_nonce: str, server_nonce: str) -> Source | None:
        """The publisher a hello introduces, or None when it is not a valid, authenticated hello."""
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            return None
        if not proof_matches(token, "publisher", client_nonce, server_nonce, hello.get("proof")):
            return None
        instance, process = hello.get("instance"), hello.get("process")
        if not isinstance(instance, str) or not INSTANCE.fullmatch(instance) or not isinstance(process, dict):
            return None
        pid = process.get("pid")
        if type(pid) is not int or not 0 <= pid < 2**32:
            return None
        raw_name = process.get("name")
        name = escape_control(raw_name)[:MAX_NAME_LENGTH].strip() if isinstance(raw_name, str) else ""
        return Source(instance=instance, pid=pid, name=name or f"pid {pid}")

    def _register(self, publisher: Source) -> None:
        hub = self.hub
        previous = hub.sources.pop(publisher.instance, None)
        if previous is not None:
            publisher.records, publisher.dropped = previous.records, previous.dropped
        hub.sources[publisher.instance] = publisher
        while len(hub.sources) > _MAX_REMEMBERED:
            gone = next((key for key, p in hub.sources.items() if not p.connected), None)
            if gone is None:
                break
            del hub.sources[gone]
        self._log("connected", {"pid": publisher.pid, "name": publisher.name})

    def _unregister(self, publisher: Source) -> None:
        publisher.connected = False
        if self._lint.pop(publisher.instance, None) is not None:
            self._merge_lint()
        self._log("disconnected", {"pid": publisher.pid, "name": publisher.name})

    async def _serve_publisher(self, publisher: Source, receive: Receive, send_json: Any) -> None:
        process = {"pid": publisher.pid, "name": publisher.name}
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if not isinstance(text, str):
                continue
            try:
                frame = json.loads(text)
            except ValueError:
                continue
            if not isinstance(frame, dict):
                continue
            kind = frame.get("type")
            if kind == "records" and isinstance(frame.get("records"), list):
                last = self._take(publisher, process, frame["records"])
                await send_json({"type": "ack", "seq": last})
            elif kind == "lint" and isinstance(frame.get("findings"), list):
                self._lint[publisher.instance] = _findings(frame["findings"])
                self._merge_lint()
            elif kind == "dropped":
                count = frame.get("count")
                if type(count) is int and 0 < count < 2**53:
                    publisher.dropped += count
                    self.hub.upstream_dropped += count
                    self._log("dropped", {"pid": publisher.pid, "name": publisher.name, "count": count,
                                          "total": publisher.dropped})  # fmt: skip

    def _take(self, publisher: Source, process: dict[str, Any], records: list[Any]) -> int | None:
        """Publish the records this collector does not have yet; the last worker seq it now has."""
        instance = publisher.instance
        last = self._resume.get(instance, 0)
        for record in records:
            if not isinstance(record, dict):
                continue
            seq = record.pop("seq", None)
            if type(seq) is not int or seq <= last:
                continue  # already published (a resend after a lost ack), or not a worker's record
            last = seq
            record["process"] = process
            self._distinct(instance, record)
            publisher.records += 1
            self.hub.publish(record)
        self._remember(self._resume, instance, last)
        return last or None

    def _distinct(self, instance: str, record: dict[str, Any]) -> None:
        """Keep exchange ids of different processes apart (their random prefixes could, rarely, be equal)."""
        for holder in (record, record.get("preflight_cached")):
            if not isinstance(holder, dict):
                continue
            exchange_id = holder.get("exchange_id")
            if not isinstance(exchange_id, str):
                continue
            prefix, dash, number = exchange_id.rpartition("-")
            if not dash or not prefix:
                continue
            owner = self._owners.get(prefix)
            if owner is None:
                self._remember(self._owners, prefix, instance)
            elif owner != instance:
                holder["exchange_id"] = f"{prefix}.{instance[:8]}-{number}"

    @staticmethod
    def _remember(store: OrderedDict[str, Any], key: str, value: Any) -> None:
        store[key] = value
        store.move_to_end(key)
        while len(store) > _MAX_REMEMBERED:
            store.popitem(last=False)

    def _merge_lint(self) -> None:
        merged: list[dict[str, Any]] = []
        seen: set[tuple[Any, ...]] = set()
        for findings in self._lint.values():
            for finding in findings:
                key = (finding.get("code"), finding.get("message"), finding.get("fix"))
                if key not in seen:
                    seen.add(key)
                    merged.append(finding)
        self.hub.set_lint(merged[:_MAX_FINDINGS])


def _findings(raw: list[Any]) -> list[dict[str, Any]]:
    """Lint findings as the page renders them, bounded: ``code``, ``message``, ``fix`` (strings or null)."""
    findings: list[dict[str, Any]] = []
    for item in raw[:_MAX_FINDINGS]:
        if not isinstance(item, dict):
            continue
        finding = {}
        for key in ("code", "message", "fix"):
            value = item.get(key)
            finding[key] = value[:_MAX_FINDING_TEXT] if isinstance(value, str) else None
        findings.append(finding)
    return findings


async def _receive_json(receive: Receive) -> Any:
    message = await receive()
    text = message.get("text") if message["type"] == "websocket.receive" else None
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _log(what: str, fields: dict[str, Any]) -> None:
    from corstrace._log import logger

    name = fields.get("name")
    pid = fields.get("pid")
    if what == "dropped":
        message = f"{name} (pid {pid}) dropped {fields['count']} record(s) before they reached the collector"
        logger.warning("corstrace.collector.source", event_kind=what, **fields, message=message)
    else:
        logger.info("corstrace.collector.source", event_kind=what, **fields, message=f"{name} (pid {pid}) {what}")


__all__ = ["Collector", "CollectorHub", "Source", "ingest_refusal"]

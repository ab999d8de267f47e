"""One traced leg: the only code that reads the ASGI scope and messages.

A :class:`Leg` lives for one request. It wraps the server's ``send`` and ``receive`` to see the response
start, the end of the body and a disconnecting client, and keeps the raw bytes it saw. Everything later in
the pipeline (the decision, the linking, the event) reads the leg through its methods, which decode once and
only when asked: most legs are never decoded at all.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from starlette.types import Message, Receive, Scope, Send

from corstrace._fetch import DEFAULT_PORTS
from corstrace._limits import URL_LIMIT, truncate
from corstrace._redact import redact_url

Pair = tuple[bytes, bytes]
TextHeaders = tuple[tuple[str, str], ...]

ORIGIN = b"origin"
_HOST = b"host"
_ACRM = b"access-control-request-method"
_COOKIE = b"cookie"
# A Cookie header is kept without its value: only its presence decides anything.
_COOKIE_PRESENT = (_COOKIE, b"")
_WS_SCHEMES = {"ws": "http", "wss": "https"}
_new_tuple = tuple.__new__
_SECURE_SCHEMES = frozenset({"https", "wss"})
# ":80" for http, as a Host header spells a default port.
_DEFAULT_PORT_SUFFIX = {scheme: f":{port}".encode() for scheme, port in DEFAULT_PORTS.items()}


# How linking finds a leg's partner: (raw Origin, scheme, raw Host, raw path, query, method). A plain tuple of
# what the scope already holds, nothing decoded: made for every preflight and for every actual request while
# one waits. The method is the one the actual request uses (a preflight's Access-Control-Request-Method).
LinkKey = tuple[bytes, str, bytes, "bytes | str", bytes, str]


def link_url(key: LinkKey) -> str:
    """The URL a :data:`LinkKey` names (for messages; not redacted)."""
    _, scheme, host, path, query, _ = key
    return Target(scheme, host.decode("latin-1"), path, query).url()


class Target(NamedTuple):
    """Where a request went, as raw scope parts: cheap to build, compare and hash (no URL string)."""

    scheme: str
    host: str
    path: bytes | str
    query: bytes

    def url(self) -> str:
        scheme = _WS_SCHEMES.get(self.scheme, self.scheme)
        path = self.path.decode("latin-1") if isinstance(self.path, bytes) else self.path
        return f"{scheme}://{self.host}{path}" + (f"?{self.query.decode('latin-1')}" if self.query else "")


def scan(headers: Iterable[Sequence[bytes]], keyed_names: frozenset[bytes]) -> tuple[bytes | None, list[Pair]]:
    """The request headers named in ``keyed_names`` (those that decide a verdict, and Host), and Host's value.

    Runs for every cross-origin request: one set test per header. ASGI servers lower-case request header names
    (the spec requires it). A Cookie is kept without its value: only its presence decides anything, and its
    value would make every user's decision a different one. A plain loop: in CPython 3.11 a comprehension
    costs a function call of its own, more than it saves on a dozen headers.
    """
    keyed: list[Any] = []
    host = None
    for pair in headers:
        if pair[0] in keyed_names:
            name = pair[0]
            if name == _HOST:
                host = pair[1]
            elif name == _COOKIE:
                pair = _COOKIE_PRESENT
            keyed.append(pair)
    return host, keyed


def same_origin(origin: bytes, host: bytes | None, scheme: str) -> bool:
    """Whether ``Origin`` names this server itself, as the browser serialises its own origin."""
    if host is None:
        return False
    prefix = b"https://" if scheme in _SECURE_SCHEMES else b"http://"
    if not origin.startswith(prefix):
        return False
    rest = origin[len(prefix) :].lower()
    host = host.lower()
    if rest == host:
        return True
    default = _DEFAULT_PORT_SUFFIX.get(scheme, b"")
    return bool(default) and host.endswith(default) and rest == host[: -len(default)]


def pairs(headers: Iterable[Sequence[bytes]]) -> tuple[Pair, ...]:
    """Headers as a tuple of ``(name, value)`` tuples, whatever two-item sequences the app or server used."""
    return tuple([pair if type(pair) is tuple else (pair[0], pair[1]) for pair in headers])


def decoded(headers: Iterable[Sequence[bytes]]) -> TextHeaders:
    """Header pairs as text (latin-1: one character per byte); a ``str`` name or value (asgi-cors sends some) as is."""
    return tuple([(_text(pair[0]), _text(pair[1])) for pair in headers])


def _text(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.decode("latin-1")


class Leg:
    """Per-request state of one traced leg.

    Its bound ``send``/``receive`` methods wrap the server's: cheaper than two fresh closures per request.
    The fields most legs never change are class-level defaults, so creating a leg sets only seven.
    """

    status: int | None = None
    # As the app sent them (a list or tuple of two-item sequences): see response_pairs().
    response_headers: Sequence[Sequence[bytes]] = ()
    exception: BaseException | None = None
    # "completed", "exception", "cancelled" or "client_disconnected".
    outcome = "completed"
    healed = False
    complete = False
    _request_text: TextHeaders | None = None
    _response_text: TextHeaders | None = None
    _url_text: str | None = None
    _origin: str | None = None

    def __init__(
        self, scope: Scope, origin: bytes, host: bytes | None, keyed: list[Pair], receive: Receive, send: Send
    ) -> None:
        self.scope = scope
        self.method: str = scope.get("method", "GET")  # a WebSocket handshake is a GET
        # Raw bytes: most legs are decided without ever decoding them (see origin() and host()).
        self.raw_origin = origin
        self.raw_host = host
        self.keyed = keyed
        self.started = time.perf_counter()
        self.server_send = send
        self.server_receive = receive

    # --- what the request was -----------------------------------------------------------------

    # Plain methods, not properties: the request path calls them, and a property costs a call the interpreter
    # cannot inline.

    def origin(self) -> str:
        """The ``Origin`` header (the first one), decoded."""
        if self._origin is None:
            self._origin = self.raw_origin.decode("latin-1")
        return self._origin

    def host(self) -> str:
        """The ``Host`` header, decoded ("" when the request has none)."""
        return self.raw_host.decode("latin-1") if self.raw_host else ""

    def is_preflight(self) -> bool:
        """OPTIONS with Access-Control-Request-Method: what CORSMiddleware (and the browser) call a preflight."""
        if self.method != "OPTIONS":
            return False
        for name, _ in self.keyed:
            if name == _ACRM:
                return True
        return False

    def path(self) -> str:
        """The path as the app sees it (root_path included), decoded."""
        scope = self.scope
        root: str = scope.get("root_path", "")
        path: str = scope["path"]
        return root + path if root else path

    def client(self) -> str | None:
        """The client's address (without its port: a browser opens several connections)."""
        client = self.scope.get("client")
        return str(client[0]) if client else None

    def target(self) -> Target:
        host = self.host()
        scope = self.scope
        if not host:
            server = scope.get("server")
            host = f"{server[0]}:{server[1]}" if server else "localhost"
        path = scope.get("raw_path") or scope.get("root_path", "") + scope["path"]
        # tuple.__new__ directly: calling the NamedTuple class runs its Python __new__ in a frame of its own.
        return _new_tuple(Target, (self.scheme(), host, path, scope.get("query_string", b"")))

    def scheme(self) -> str:
        """The URL scheme; optional in ASGI (``http``, ``ws`` for a WebSocket)."""
        scheme: str = self.scope.get("scheme") or ("ws" if self.scope["type"] == "websocket" else "http")
        return scheme

    def link_key(self, method: str) -> LinkKey:
        """The :data:`LinkKey` of this leg, for ``method``."""
        scope = self.scope
        path = scope.get("raw_path") or scope.get("root_path", "") + scope["path"]
        return (self.raw_origin, self.scheme(), self.raw_host or b"", path, scope.get("query_string", b""), method)

    def url(self) -> str:
        """The request's URL, redacted; built once, and only for the legs that need it."""
        if self._url_text is None:
            self._url_text = truncate(redact_url(self.target().url()), URL_LIMIT)
        return self._url_text

    def absolute_path(self) -> bool:
        """Whether the URL is ``scheme://Host`` plus a path: only then is the request's origin known from Host."""
        raw_path = self.scope.get("raw_path")
        return bool(self.raw_host) and (
            raw_path.startswith(b"/") if raw_path else str(self.scope["path"]).startswith("/")
        )

    def request_pairs(self) -> tuple[Pair, ...]:
        return pairs(self.scope["headers"])

    def request_text(self) -> TextHeaders:
        """The request headers decoded (once: the verdict and the event both need them)."""
        if self._request_text is None:
            self._request_text = decoded(self.scope["headers"])
        return self._request_text

    # --- what the app answered ----------------------------------------------------------------

    def response_pairs(self) -> tuple[Pair, ...]:
        return pairs(self.response_headers)

    def response_text(self) -> TextHeaders:
        if self._response_text is None:
            self._response_text = decoded(self.response_headers)
        return self._response_text

    def duration_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)

    def failed(self, exc: BaseException, outcome: str) -> None:
        """The app raised ``exc``; ``outcome`` unless the client had already left."""
        self.exception = exc
        if self.outcome == "completed":
            self.outcome = outcome

    # --- the ASGI wrappers --------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            headers: Any = message.get("headers", ())
            if not isinstance(headers, (list, tuple)):
                # A one-shot iterable would be used up by the server before the leg is recorded: hand the server
                # the same headers as a list instead.
                headers = message["headers"] = list(headers)
            # Kept, not copied: the server has consumed the message by the time the leg is recorded.
            self.response_headers = headers
        elif kind == "http.response.body" and not message.get("more_body", False):
            self.complete = True
        try:
            await self.server_send(message)
        except OSError:
            self.outcome = "client_disconnected"
            raise

    async def receive(self) -> Message:
        message = await self.server_receive()
        if message["type"] == "http.disconnect" and not self.complete:
            self.outcome = "client_disconnected"
        return message

"""The network under ``corstrace check``: one deadline for the whole exchange, header bytes as the browser sends them.

httpx's timeouts bound each socket operation, so a server that trickles one byte a second never trips
them. Here every connect, TLS handshake, read and write of every leg is given only what is left of one
deadline (an httpcore network backend that clamps each operation's timeout), so ``--timeout N`` ends
the exchange after N seconds whatever the server does.

Header values are ``str`` holding one character per byte (as everywhere in corstrace) and go on the
wire as those bytes (Latin-1), which is what fetch() does with a header value: ``café`` is sent as
``caf\\xe9``. Requests through a proxy from the environment use httpx's own transport, whose
timeouts are per operation; the deadline is still checked before every leg.
"""

from __future__ import annotations

import errno
import socket
import ssl
import time
import typing
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from corstrace._check import Answer, CheckError, Send
from corstrace.engine import Headers

BODY_SNIPPET = 512  # bytes of each body kept: Starlette's CORSMiddleware says in it what it refused
# httpcore's errors share no base class beyond Exception; these are the ones a request can raise.
_HTTPCORE_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.ProxyError,
    httpcore.UnsupportedProtocol,
)


class Deadline:
    """A point in time shared by every socket operation of one exchange."""

    __slots__ = ("_end", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self._end - time.monotonic()

    def clamp(self, timeout: float | None, expired: type[Exception]) -> float:
        """``timeout`` cut to what is left; raises ``expired`` when nothing is."""
        left = self.remaining()
        if left <= 0:
            raise expired(f"the {self.seconds:g} s deadline passed")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        # CPython bounds the whole handshake by the socket timeout, so one clamp covers it.
        wrapped = self._inner.start_tls(
            ssl_context, server_hostname, self._deadline.clamp(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(wrapped, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, deadline: Deadline) -> None:
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = self._deadline.clamp(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        timeout = self._deadline.clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, timeout, socket_options), self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class DeadlineTransport(httpx.BaseTransport):
    """An httpx transport over an httpcore pool whose sockets all obey one :class:`Deadline`."""

    def __init__(self, deadline: Deadline) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(), network_backend=_DeadlineBackend(deadline)
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=typing.cast(Iterable[bytes], request.stream),
            extensions=request.extensions,
        )
        answer = self._pool.handle_request(core)
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_Body(typing.cast(Iterable[bytes], answer.stream)),
            extensions=answer.extensions,
        )

    def close(self) -> None:
        self._pool.close()


def latin1_headers(headers: Headers) -> list[tuple[bytes, bytes]]:
    """Header pairs as the bytes that go on the wire: one byte per character, as fetch() sends them."""
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def _decoded(raw: Iterable[tuple[bytes, bytes]]) -> Headers:
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in raw)


def _body_start(response: httpx.Response) -> bytes:
    kept = b""
    for chunk in response.iter_bytes():
        kept += chunk
        if len(kept) >= BODY_SNIPPET:
            break  # the rest is never read: a huge body costs neither time nor memory
    return kept[:BODY_SNIPPET]


def wire_sender(client: httpx.Client, deadline: Deadline) -> Send:
    """A ``send`` over ``client`` that bounds the exchange by ``deadline`` and reports failures in one line.

    The client's cookie jar stays empty: the CLI's browser starts with no cookies of its own, and the
    cookies the user gives (``-H 'Cookie: …'``) go only on credentialed legs.
    """

    def send(method: str, url: str, headers: Headers, with_cookies: bool) -> Answer:
        parts = urlsplit(url)
        where = f"{parts.scheme}://{parts.netloc}"
        expired = CheckError(
            f"{where} did not answer {method} {url} within {deadline.seconds:g} s, the deadline for the whole "
            "exchange (every leg and redirect; raise it with --timeout)"
        )
        if deadline.remaining() <= 0:
            raise expired
        sent = headers if with_cookies else tuple((n, v) for n, v in headers if n.lower() != "cookie")
        try:
            request = client.build_request(
                method, url, headers=latin1_headers(sent), timeout=httpx.Timeout(deadline.remaining())
            )
            response = client.send(request, stream=True, follow_redirects=False)
            try:
                body = _body_start(response)
            finally:
                response.close()
        except (httpx.TimeoutException, httpcore.TimeoutException):
            raise expired from None
        except (httpx.RequestError, *_HTTPCORE_ERRORS) as exc:
            raise CheckError(f"cannot reach {where}: {network_reason(exc)}") from None
        finally:
            client.cookies.clear()
        return Answer(response.status_code, _decoded(response.headers.raw), _decoded(request.headers.raw), body)

    return send


def network_reason(exc: BaseException) -> str:
    """A short human reason for a transport error, from the OS error underneath when there is one."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, socket.gaierror):
            return "the host name does not resolve"
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"TLS certificate rejected ({seen.verify_message})"
        if isinstance(seen, ssl.SSLError):
            return f"TLS error ({seen.reason or seen})"
        if isinstance(seen, OSError) and seen.errno is not None:
            if seen.errno == errno.ECONNREFUSED:
                return "connection refused"
            return (seen.strerror or str(seen)).lower()
        seen = seen.__cause__ or seen.__context__
    text = str(exc).lower()
    if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return "the host name does not resolve"
    if "connection refused" in text:
        return "connection refused"
    if "certificate" in text or "ssl" in text:
        return f"TLS error ({exc})"
    return str(exc) or type(exc).__name__


def client(deadline: Deadline, user_agent: str | None) -> httpx.Client:
    """The CLI's client: no redirects followed for it (the exchange follows them hop by hop), one deadline."""
    headers = {"User-Agent": user_agent} if user_agent else {}
    return httpx.Client(
        transport=DeadlineTransport(deadline),
        timeout=deadline.seconds,
        follow_redirects=False,
        headers=headers,
    )

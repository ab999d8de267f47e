"""Pin a project's CORS setup in its own test suite.

::

    from corstrace.testing import assert_cors_allowed

    def test_the_frontend_may_update_items():
        assert_cors_allowed(app, "/items/1", origin="https://app.example.com", method="PUT",
                            headers={"Content-Type": "application/json"}, credentials=True)

The helpers play what Chromium does for ``fetch(path, {method, headers, credentials})`` from a page
at ``origin`` (the preflight when one is needed, then the actual request, redirects hop by hop),
exactly as ``corstrace check`` does over the network, but in-process against:

- an ASGI app (FastAPI, Starlette, any other), driven through ``httpx.ASGITransport`` on an event
  loop of its own, so the helpers also work from inside an async test; lifespan is not run;
- a ``starlette.testclient.TestClient`` or an ``httpx.Client`` (with a ``base_url``): its cookie
  jar is the browser's, sent only when ``credentials=True``.

A failed assertion prints the browser's console message, the explanation and the fix.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from corstrace import _output
from corstrace._check import Answer, CheckError, Exchange, Send, answer_from, client_sender, run_exchange
from corstrace.engine import Headers, Verdict

__all__ = ["CORSResult", "CheckError", "assert_cors_allowed", "assert_cors_blocked", "check_cors"]

_TEST_BASE_URL = "http://testserver"


@dataclass(frozen=True, slots=True)
class CORSResult:
    """What the browser does with the request: the deciding leg's verdict, and every leg's."""

    verdict: str  # "allowed" or "blocked"
    reason: str | None  # Chrome's Network.CorsError name, e.g. "PreflightInvalidStatus"; None when allowed
    browser_message: str | None  # Chromium's console message, exactly
    explanation: str
    fix: str | None
    legs: tuple[Verdict, ...]  # preflight, actual request, redirect hops, in order
    exchange: Exchange

    @property
    def allowed(self) -> bool:
        return self.verdict == "allowed"

    def report(self) -> str:
        """The same plain-text report ``corstrace check`` prints."""
        return _output.render_exchange(self.exchange, colour=False)


def check_cors(
    client_or_app: Any,
    path: str,
    *,
    origin: str,
    method: str = "GET",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    credentials: bool = False,
) -> CORSResult:
    """What the browser does with ``fetch(path, {method, headers, credentials})`` from a page at ``origin``.

    ``credentials=True`` is ``credentials: 'include'``. Raises :class:`CheckError` when the browser
    would fail for a reason that is not CORS (more than 20 redirects, a redirect to a non-HTTP URL).
    """
    pairs: Headers = tuple((headers.items() if isinstance(headers, Mapping) else headers) or ())
    send, url = _sender(client_or_app, path)
    exchange = run_exchange(send, url, origin=origin, method=method, headers=pairs, credentials=credentials)
    deciding = exchange.deciding.verdict
    return CORSResult(
        verdict=deciding.verdict,
        reason=deciding.reason,
        browser_message=deciding.browser_message,
        explanation=deciding.explanation,
        fix=deciding.fix,
        legs=tuple(leg.verdict for leg in exchange.legs),
        exchange=exchange,
    )


def assert_cors_allowed(
    client_or_app: Any,
    path: str,
    *,
    origin: str,
    method: str = "GET",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    credentials: bool = False,
) -> CORSResult:
    """Fail, with the browser's message, the explanation and the fix, unless the browser allows the request."""
    __tracebackhide__ = True
    result = check_cors(client_or_app, path, origin=origin, method=method, headers=headers, credentials=credentials)
    if not result.allowed:
        raise AssertionError(f"the browser blocks this request ({result.reason}):\n{result.report()}")
    return result


def assert_cors_blocked(
    client_or_app: Any,
    path: str,
    *,
    origin: str,
    method: str = "GET",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    credentials: bool = False,
    reason: str | None = None,
) -> CORSResult:
    """Fail unless the browser blocks the request (for ``reason``, when given): pin that an origin stays out."""
    __tracebackhide__ = True
    result = check_cors(client_or_app, path, origin=origin, method=method, headers=headers, credentials=credentials)
    if result.allowed:
        raise AssertionError(f"the browser allows this request:\n{result.report()}")
    if reason is not None and result.reason != reason:
        raise AssertionError(f"the browser blocks this request for {result.reason}, not {reason}:\n{result.report()}")
    return result


def _sender(client_or_app: Any, path: str) -> tuple[Send, str]:
    if hasattr(client_or_app, "build_request") and hasattr(client_or_app, "send"):
        if inspect.iscoroutinefunction(client_or_app.send):
            raise TypeError(
                "check_cors needs a sync client (TestClient, httpx.Client) or an ASGI app, not an async one"
            )
        url = str(client_or_app.build_request("GET", path).url)
        return client_sender(client_or_app, keep_jar=True), url
    if not callable(client_or_app):
        raise TypeError(f"check_cors needs an ASGI app, a TestClient or an httpx.Client, not {client_or_app!r}")
    url = path if "://" in path else _TEST_BASE_URL + ("" if path.startswith("/") else "/") + path
    return _asgi_sender(client_or_app), url


def _asgi_sender(app: Callable[..., Awaitable[None]]) -> Send:
    """A ``send`` that runs ``app`` through ``httpx.ASGITransport`` on a private event loop thread.

    A private loop (anyio's blocking portal) rather than ``anyio.run`` here: it also works when the
    caller is itself inside a running event loop, such as an async test.
    """
    import anyio.from_thread
    import httpx

    async def one(method: str, url: str, headers: Headers) -> Answer:
        # The app's exception must become the 500 the server would send, as in production.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport) as client:
            request = client.build_request(method, url, headers=list(headers))
            response = await client.send(request, follow_redirects=False)
        return answer_from(response, request)

    def send(method: str, url: str, headers: Headers, with_cookies: bool) -> Answer:
        # No cookie jar here: the only cookies are a Cookie header the test passes in `headers`.
        sent = headers if with_cookies else tuple((n, v) for n, v in headers if n.lower() != "cookie")
        with anyio.from_thread.start_blocking_portal() as portal:
            return portal.call(one, method, url, sent)

    return send

"""The secrets corpus through the real middleware: no planted secret reaches an event, the console or the inspector.

A real Starlette app behind the real CORSMiddleware, CORSTraceMiddleware added last with the inspector on,
driven by TestClient. Outputs searched: the structlog events (``capture_logs``), the same events as
structlog's ConsoleRenderer prints them, and the inspector's ``events`` frame built from the hub's records.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from corstrace import CORSTraceMiddleware
from corstrace._inspector.server import _events_frame
from tests.secrets_corpus import CORPUS, FRONTEND, Corpus, assert_no_leaks

_SECRET_RESPONSE_HEADERS = [pair for pair in CORPUS.response_headers if pair not in CORPUS.kept_response]


async def _answer(request: Request) -> Response:
    if request.url.path.startswith("/crash"):
        raise RuntimeError(CORPUS.exception_message)
    response = Response("ok")
    response.raw_headers += [(name.lower().encode(), value.encode()) for name, value in _SECRET_RESPONSE_HEADERS]
    return response


def _app() -> Starlette:
    app = Starlette(routes=[Route("/{rest:path}", _answer, methods=["GET", "POST", "PUT"])])
    app.add_middleware(
        CORSMiddleware, allow_origins=[FRONTEND], allow_credentials=True, allow_methods=["*"], allow_headers=["*"]
    )
    app.add_middleware(CORSTraceMiddleware, inspector=True)
    return app


def _tracer(app: Starlette) -> CORSTraceMiddleware:
    node: Any = app.middleware_stack
    while not isinstance(node, CORSTraceMiddleware):
        node = node.app
    return node


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def _outputs(app: Starlette, logs: list[dict[str, Any]]) -> list[Any]:
    """Everything a developer or a log shipper sees: events, console text, inspector frames."""
    legs = [event for event in logs if event["event"].startswith("cors.")]
    assert legs, "the requests produced no event: the test would prove nothing"
    renderer = structlog.dev.ConsoleRenderer(colors=False)
    console = [renderer(None, event.get("log_level", "info"), dict(event)) for event in legs]
    inspector = _tracer(app)._inspector
    assert inspector is not None
    hub = inspector.hub
    assert hub.records()
    return [legs, console, _events_frame(hub.records(), snapshot=True)]


def _only(*places: str) -> Corpus:
    """The corpus with only the secrets planted in ``places`` searched for."""
    return dataclasses.replace(CORPUS, planted=[p for p in CORPUS.planted if p.place.startswith(places)])


def _send(client: TestClient, target: str) -> None:
    client.get(target, headers=CORPUS.request_headers)
    requested = "authorization, x-api-key, x-auth-key, dpop, x-csrf"
    preflight = {
        "Origin": FRONTEND,
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": requested,
    }
    client.options(target, headers=preflight)


def test_no_header_secret_reaches_events_console_or_inspector(logs: list[dict[str, Any]]) -> None:
    """Request and response headers go through Redactor.headers() today: every planted header secret is gone."""
    app = _app()
    with TestClient(app) as client:
        _send(client, "/api/orders")
    assert_no_leaks(*_outputs(app, logs), corpus=_only("request header", "response header"))


def test_cors_values_reach_events_exactly(logs: list[dict[str, Any]]) -> None:
    """The redaction that hides the secrets leaves the origin and the CORS headers as the browser saw them."""
    app = _app()
    with TestClient(app) as client:
        _send(client, "/api/orders")
    leg = next(event for event in logs if event["event"].startswith("cors.") and not event["preflight"])
    assert leg["origin"] == FRONTEND
    assert ["access-control-allow-origin", FRONTEND] in leg["response_headers"]
    assert ["sec-fetch-mode", "cors"] in leg["request_headers"]


def test_no_url_secret_reaches_events_console_or_inspector(logs: list[dict[str, Any]]) -> None:
    app = _app()
    with TestClient(app) as client:
        _send(client, CORPUS.target)
    assert_no_leaks(*_outputs(app, logs), corpus=_only("path ", "query "))


def test_no_secret_quoted_in_an_exception_reaches_events_console_or_inspector(logs: list[dict[str, Any]]) -> None:
    app = _app()
    with TestClient(app, raise_server_exceptions=False) as client:
        client.get("/crash", headers=CORPUS.request_headers)
    assert_no_leaks(*_outputs(app, logs))

"""The pipeline is safe to change: every event field, verdict rule and redaction flows through one place.

Each test is one of the ordinary changes a maintainer makes, done the way the layout asks for it:

- a field read from the scope (``client``) is per request, even when the event's body is remembered;
- a new engine rule that reads a response header is honoured with the decision cache warm;
- redacting a header changes what is shown, never what is concluded;
- every event the pipeline builds has exactly the shape of the ``LegEvent`` TypedDict (the README's table).
"""

from __future__ import annotations

import logging
import types
import typing
from typing import Any, Literal, get_args, get_origin

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from corstrace import CORSTraceMiddleware, engine
from corstrace._event import LegEvent
from corstrace._inspector.hub import Hub
from tests.support import call_asgi as _call
from tests.support import http_scope

FRONTEND = "http://localhost:3000"
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _app(**trace: Any) -> Any:
    async def items(request: Any) -> Response:
        return PlainTextResponse("ok")

    async def crash(request: Any) -> Response:
        raise RuntimeError("database is down")

    return Starlette(
        routes=[Route("/items", items, methods=["GET", "PUT"]), Route("/crash", crash)],
        middleware=[
            Middleware(CORSTraceMiddleware, **({"inspector": False} | trace)),
            Middleware(CORSMiddleware, allow_origins=[FRONTEND], allow_methods=["GET", "PUT"]),
        ],
    )


def _scope(method: str = "GET", path: str = "/items", headers: list[tuple[bytes, bytes]] | None = None,
           client: str = "127.0.0.1") -> dict[str, Any]:  # fmt: skip
    scope = http_scope(method, path, headers if headers is not None else [(b"origin", FRONTEND.encode())])
    scope["client"] = (client, 50000)
    return scope


def _legs(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] in ("cors.blocked", "cors.allowed")]


# --- a field from the scope is per request ----------------------------------------------------------


async def test_each_leg_reports_its_own_client_in_the_log() -> None:
    app = _app()
    with structlog.testing.capture_logs() as logs:
        for client in ("10.0.0.1", "10.0.0.2", "10.0.0.1"):
            await _call(app, _scope(client=client))
    assert [event["client"] for event in _legs(logs)] == ["10.0.0.1", "10.0.0.2", "10.0.0.1"]


async def test_each_leg_reports_its_own_client_in_the_inspector() -> None:
    app = _app(inspector=True)
    with structlog.testing.capture_logs():
        for client in ("10.0.0.1", "10.0.0.2"):
            await _call(app, _scope(client=client))
    hub = _hub(app)
    assert [record["client"] for record in hub.records() if record["type"] == "leg"] == ["10.0.0.1", "10.0.0.2"]


def _hub(app: Any) -> Hub:
    node = app.middleware_stack
    while not isinstance(node, CORSTraceMiddleware):
        node = node.app
    hub = node._recorder.hub
    assert hub is not None
    return hub


# --- a new engine rule is honoured on a warm cache ----------------------------------------------------


@pytest.fixture
def blocking_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new engine rule: a response carrying `X-Block` is blocked (the way a real new rule would be added)."""
    monkeypatch.setattr(engine, "DECISIVE_RESPONSE_HEADERS", engine.DECISIVE_RESPONSE_HEADERS | {"x-block"})
    judge_actual = engine._judge_actual

    def judged(exchange: Any, include: bool) -> Any:
        if "x-block" in exchange.decisive:
            return engine._Finding("MissingAllowOriginHeader")
        return judge_actual(exchange, include)

    monkeypatch.setattr(engine, "_judge_actual", judged)


def _blockable_app() -> Any:
    async def items(request: Any) -> Response:
        blocked = request.query_params.get("block") == "1"
        return PlainTextResponse("ok", headers={"X-Block": "yes"} if blocked else {})

    return Starlette(
        routes=[Route("/items", items)],
        middleware=[Middleware(CORSTraceMiddleware, inspector=False), Middleware(CORSMiddleware, allow_origins=["*"])],
    )


@pytest.mark.usefixtures("blocking_rule")
async def test_a_new_rule_reading_a_response_header_is_honoured_with_a_warm_cache() -> None:
    app = _blockable_app()
    with structlog.testing.capture_logs() as logs:
        for query in (b"", b"", b"block=1"):
            scope = _scope()
            scope["query_string"] = query
            await _call(app, scope)
    names = [event["event"] for event in _legs(logs)]
    assert names == ["cors.allowed", "cors.allowed", "cors.blocked"]
    assert _legs(logs)[-1]["verdict"] == "blocked"


@pytest.mark.usefixtures("blocking_rule", "restore_structlog")
async def test_a_new_rule_reading_a_response_header_is_logged_in_production() -> None:
    app = _blockable_app()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    with structlog.testing.capture_logs() as logs:
        for query in (b"", b"", b"block=1"):
            scope = _scope()
            scope["query_string"] = query
            await _call(app, scope)
    assert [event["event"] for event in _legs(logs)] == ["cors.blocked"]


# --- redaction changes what is shown, never what is concluded ------------------------------------------

_CONCLUSIONS = ("verdict", "reason", "layer", "server_reason", "fix", "preflight", "status", "outcome")


def _conclusions(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: event.get(key) for key in _CONCLUSIONS} for event in events]


def _layered_app(redact: list[str]) -> Any:
    async def items(request: Any) -> Response:
        return PlainTextResponse("ok")

    async def auth(request: Any, call_next: Any) -> Response:
        if request.headers.get("authorization") is None:
            return PlainTextResponse("no", status_code=401)
        response: Response = await call_next(request)
        return response

    return Starlette(
        routes=[Route("/items", items, methods=["GET", "PUT"])],
        middleware=[
            Middleware(CORSTraceMiddleware, inspector=False, redact_headers=redact),
            Middleware(BaseHTTPMiddleware, dispatch=auth),
            Middleware(CORSMiddleware, allow_origins=[FRONTEND], allow_methods=["GET"], allow_headers=["x-a"]),
        ],
    )


_REQUESTS = [
    ("GET", [(b"origin", FRONTEND.encode()), (b"authorization", b"Bearer t")]),
    ("GET", [(b"origin", FRONTEND.encode())]),
    ("GET", [(b"origin", b"http://evil.example"), (b"authorization", b"Bearer t")]),
    ("OPTIONS", [(b"origin", FRONTEND.encode()), (b"access-control-request-method", b"PUT"),
                 (b"authorization", b"Bearer t")]),
    ("OPTIONS", [(b"origin", FRONTEND.encode()), (b"access-control-request-method", b"GET"),
                 (b"access-control-request-headers", b"x-b"), (b"authorization", b"Bearer t")]),
    ("OPTIONS", [(b"origin", FRONTEND.encode()), (b"access-control-request-method", b"GET")]),
]  # fmt: skip
_REDACTABLE = [
    "vary",
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-max-age",
    "origin",
    "access-control-request-method",
    "content-type",
    "location",
]


async def _conclusions_with(redact: list[str]) -> list[dict[str, Any]]:
    app = _layered_app(redact)
    with structlog.testing.capture_logs() as logs:
        for method, headers in _REQUESTS:
            await _call(app, _scope(method, headers=headers))
    return _conclusions(_legs(logs))


async def test_redacting_vary_keeps_the_layer_that_answered() -> None:
    plain = await _conclusions_with([])
    assert [event["layer"] for event in plain][:2] == ["CORSMiddleware", "BaseHTTPMiddleware(auth)"]
    assert await _conclusions_with(["vary"]) == plain


@settings(max_examples=25, deadline=None)
@given(redact=st.lists(st.sampled_from(_REDACTABLE), max_size=4))
def test_no_redaction_changes_a_conclusion(redact: list[str]) -> None:
    import anyio

    assert anyio.run(_conclusions_with, redact) == anyio.run(_conclusions_with, [])


# --- every built event has the TypedDict's shape ------------------------------------------------------


def _matches(value: Any, annotation: Any) -> bool:
    origin = get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arm) for arm in get_args(annotation))
    if origin is Literal:
        return value in get_args(annotation)
    if origin is list:
        (item,) = get_args(annotation)
        return isinstance(value, list) and all(_matches(entry, item) for entry in value)
    if annotation is type(None):
        return value is None
    if typing.is_typeddict(annotation):
        return _shape_errors(value, annotation) == []
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _shape_errors(value: Any, typed: Any) -> list[str]:
    if not isinstance(value, dict):
        return [f"not a dict: {value!r}"]
    hints = typing.get_type_hints(typed)
    errors = [f"missing key {key!r}" for key in typed.__required_keys__ if key not in value]
    errors += [f"unknown key {key!r}" for key in value if key not in hints]
    errors += [
        f"{key!r}: {value[key]!r} is not {hints[key]}"
        for key in value
        if key in hints and not _matches(value[key], hints[key])
    ]
    return errors


_LEG_KEYS = set(typing.get_type_hints(LegEvent))
# What the log adds to a leg's event: the crash's parts as separate keys, flood-control counts, structlog's own.
_LOG_ONLY = {"event", "log_level", "exception_type", "exception_message", "exception_where", "repeats_suppressed",
             "other_origins_suppressed"}  # fmt: skip


async def test_every_built_event_matches_the_typeddict() -> None:
    app = _app(inspector=True, heal_errors=True)
    requests = [
        _scope(),
        _scope(headers=[(b"origin", b"http://evil.example")]),
        _scope("OPTIONS", headers=[(b"origin", FRONTEND.encode()), (b"access-control-request-method", b"PUT")]),
        _scope("OPTIONS", headers=[(b"origin", FRONTEND.encode()), (b"access-control-request-method", b"DELETE")]),
        _scope(path="/crash"),
        _scope(path="/crash", headers=[(b"origin", b"http://evil.example"), (b"cookie", b"a=b")]),
    ]
    with structlog.testing.capture_logs() as logs:
        for scope in requests:
            await _call(app, scope)
    records = [record for record in _hub(app).records() if record["type"] == "leg"]
    assert len(records) == len(requests)
    for record in records:
        shown = {key: value for key, value in record.items() if key not in ("type", "ts", "seq")}
        assert _shape_errors(shown, LegEvent) == [], record
    for event in _legs(logs):
        assert set(event) - _LEG_KEYS <= _LOG_ONLY, event
        assert LegEvent.__required_keys__ <= set(event)

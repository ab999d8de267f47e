"""OpenTelemetry: a leg's verdict on its request's span, and legs counted in ``cors.legs``.

Real instrumentations (``OpenTelemetryMiddleware``, ``FastAPIInstrumentor``, FastAPI's native tracing) with the
SDK's in-memory span exporter, each given an explicit tracer provider: the test process never has a global one
(FastAPI's native tracing would switch itself on for every app in it). The counter reports through the global
meter provider, as in an app; the tests that read it set one and put the API's globals back afterwards.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import baggage, context, metrics, trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.metrics import _internal as metrics_globals
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Sum
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind
from opentelemetry.util._once import Once
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from corstrace import CORSTraceMiddleware, _otel
from tests.support import captured_events

FRONTEND = "http://localhost:3000"
STRANGER = "http://evil.example"
ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.anyio
# Builds the app's own spans and metrics nowhere: only corstrace's counter reaches the test's reader.
NO_METRICS = NoOpMeterProvider()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def no_global_tracer_provider() -> Iterator[None]:
    """Neither a test nor corstrace leaves a global tracer provider behind (corstrace never sets one)."""
    yield
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"


class Tracing:
    """An SDK tracer provider exporting to memory; handed to instrumentations explicitly, never made global."""

    def __init__(self, **provider: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(**provider)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def server_spans(self) -> list[ReadableSpan]:
        return [span for span in self.exporter.get_finished_spans() if span.kind is SpanKind.SERVER]

    def server_span(self) -> ReadableSpan:
        (span,) = self.server_spans()
        return span


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    tracing = Tracing()
    yield tracing
    tracing.provider.shutdown()


class Legs:
    """``cors.legs`` as the app's metric reader sees it, through the global meter provider."""

    def __init__(self, reader: InMemoryMetricReader) -> None:
        self.reader = reader

    def metric(self) -> Any:
        data = self.reader.get_metrics_data()
        found = [
            metric
            for resource in (data.resource_metrics if data is not None else [])
            for scope in resource.scope_metrics
            if scope.scope.name == "corstrace"
            for metric in scope.metrics
            if metric.name == "cors.legs"
        ]
        return found[0] if found else None

    def counts(self) -> dict[frozenset[tuple[str, Any]], int]:
        metric = self.metric()
        if metric is None:
            return {}
        return {frozenset(point.attributes.items()): point.value for point in metric.data.data_points}


@contextlib.contextmanager
def fresh_meter_globals() -> Iterator[None]:
    """The metrics API's globals as in a new process (no meter provider yet), and as they were afterwards.

    The API lets a process set its meter provider once; its own test utilities reset the same three names.
    """
    saved = (
        metrics_globals._METER_PROVIDER_SET_ONCE,
        metrics_globals._METER_PROVIDER,
        metrics_globals._PROXY_METER_PROVIDER,
    )
    metrics_globals._METER_PROVIDER_SET_ONCE = Once()
    metrics_globals._METER_PROVIDER = None
    metrics_globals._PROXY_METER_PROVIDER = metrics_globals._ProxyMeterProvider()
    try:
        yield
    finally:
        (
            metrics_globals._METER_PROVIDER_SET_ONCE,
            metrics_globals._METER_PROVIDER,
            metrics_globals._PROXY_METER_PROVIDER,
        ) = saved


@pytest.fixture
def legs() -> Iterator[Legs]:
    """A global SDK meter provider with an in-memory reader, for this test only."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    with fresh_meter_globals():
        metrics.set_meter_provider(provider)
        try:
            yield Legs(reader)
        finally:
            provider.shutdown()


def _key(**attributes: Any) -> frozenset[tuple[str, Any]]:
    return frozenset((f"cors.{name}", value) for name, value in attributes.items())


def _routes() -> list[Route]:
    async def items(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def crash(request: Request) -> Response:
        raise RuntimeError("database is down")

    async def stream(request: Request) -> Response:
        async def chunks() -> Any:
            for chunk in (b"one ", b"two ", b"three"):
                yield chunk

        return StreamingResponse(chunks())

    return [
        Route("/items", items, methods=["GET", "PUT"]),
        Route("/crash", crash),
        Route("/stream", stream),
    ]


_CORS = Middleware(CORSMiddleware, allow_origins=[FRONTEND], allow_methods=["GET", "PUT"], allow_headers=["x-token"])


def _starlette(*, traced: bool = True) -> Starlette:
    """corstrace wrapping CORSMiddleware, as the README says; ``traced=False``: no corstrace at all."""
    middleware = [Middleware(CORSTraceMiddleware, inspector=False)] if traced else []
    return Starlette(routes=_routes(), middleware=[*middleware, _CORS])


def _instrumented(tracing: Tracing, app: Any | None = None) -> Any:
    """The app inside OpenTelemetry's ASGI middleware, as ``app = OpenTelemetryMiddleware(app)`` makes it."""
    return OpenTelemetryMiddleware(app or _starlette(), tracer_provider=tracing.provider, meter_provider=NO_METRICS)


async def _get(app: Any, path: str = "/items", *, method: str = "GET", **headers: str) -> httpx.Response:
    # An exception the app lets escape is the server's to log (the client gets a 500), as under uvicorn.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        return await client.request(method, path, headers=headers)


async def _preflight(app: Any, origin: str = FRONTEND) -> httpx.Response:
    return await _get(
        app,
        method="OPTIONS",
        origin=origin,
        **{"access-control-request-method": "PUT", "access-control-request-headers": "x-token"},
    )


def _cors_events(span: ReadableSpan) -> list[dict[str, Any]]:
    return [{"name": event.name, **event.attributes} for event in span.events if event.name.startswith("cors.")]


def _cors_attributes(span: ReadableSpan) -> dict[str, Any]:
    return {name: value for name, value in span.attributes.items() if name.startswith("cors.")}


# --- the span of a request traced by OpenTelemetry's ASGI middleware -------------------------------------


async def test_a_blocked_leg_adds_a_cors_blocked_event_with_the_logged_verdict_to_the_server_span(
    tracing: Tracing,
) -> None:
    with captured_events() as log:
        await _get(_instrumented(tracing), origin=STRANGER)
    (logged,) = log.wait_for(lambda event: event["event"] == "cors.blocked")
    span = tracing.server_span()
    assert _cors_attributes(span) == {
        "cors.verdict": "blocked",
        "cors.reason": "MissingAllowOriginHeader",
        "cors.preflight": False,
        "cors.exchange.id": logged["exchange_id"],
    }
    assert _cors_events(span) == [
        {
            "name": "cors.blocked",
            "cors.reason": "MissingAllowOriginHeader",
            "cors.exchange.id": logged["exchange_id"],
            "cors.origin": STRANGER,
            "cors.browser_message": logged["browser_message"],
            "cors.firefox_message": logged["firefox_message"],
            "cors.explanation": logged["explanation"],
            "cors.fix": logged["fix"],
        }
    ]
    assert "allow_origins" in span.events[-1].attributes["cors.fix"]


async def test_an_allowed_leg_sets_the_verdict_attributes_and_adds_no_event(tracing: Tracing) -> None:
    response = await _get(_instrumented(tracing), origin=FRONTEND)
    assert response.headers["access-control-allow-origin"] == FRONTEND
    span = tracing.server_span()
    assert _cors_attributes(span) == {
        "cors.verdict": "allowed",
        "cors.preflight": False,
        "cors.exchange.id": _cors_attributes(span)["cors.exchange.id"],
    }
    assert _cors_events(span) == []


async def test_a_preflight_and_its_actual_request_carry_one_exchange_id_on_their_two_spans(tracing: Tracing) -> None:
    app = _instrumented(tracing)
    await _preflight(app)
    await _get(app, method="PUT", origin=FRONTEND, **{"x-token": "1"})
    preflight, actual = tracing.server_spans()
    assert preflight.attributes["cors.preflight"] is True
    assert actual.attributes["cors.preflight"] is False
    assert preflight.attributes["cors.exchange.id"] == actual.attributes["cors.exchange.id"]


async def test_a_blocked_preflight_is_on_the_preflight_span(tracing: Tracing) -> None:
    await _preflight(_instrumented(tracing), origin=STRANGER)
    span = tracing.server_span()
    assert span.attributes["cors.preflight"] is True
    ((event),) = _cors_events(span)
    assert event["name"] == "cors.blocked"
    assert event["cors.reason"] == span.attributes["cors.reason"]
    assert event["cors.reason"].startswith("Preflight")


async def test_a_flood_of_blocked_legs_logged_once_still_marks_every_span(tracing: Tracing) -> None:
    app = _instrumented(tracing)
    with captured_events() as log:
        for _ in range(10):
            await _get(app, origin=STRANGER)
    assert 1 <= len([event for event in log if event["event"] == "cors.blocked"]) < 10
    spans = tracing.server_spans()
    assert len(spans) == 10
    assert all([event["name"] for event in _cors_events(span)] == ["cors.blocked"] for span in spans)
    assert len({span.attributes["cors.exchange.id"] for span in spans}) == 10


async def test_an_exception_before_any_response_is_on_the_span(tracing: Tracing) -> None:
    with captured_events() as log:
        response = await _get(_instrumented(tracing), "/crash", origin=FRONTEND)
    assert response.status_code == 500
    (logged,) = log.wait_for(lambda event: event["event"] == "cors.blocked")
    span = tracing.server_span()
    assert span.attributes["cors.verdict"] == "blocked"
    ((event),) = _cors_events(span)
    assert event["cors.explanation"] == logged["explanation"]
    assert "database is down" in event["cors.explanation"]


async def test_a_streamed_response_is_recorded_once_as_its_last_chunk_goes_out(tracing: Tracing) -> None:
    with captured_events() as log:
        response = await _get(_instrumented(tracing), "/stream", origin=STRANGER)
    assert response.text == "one two three"
    assert [event["event"] for event in log] == ["cors.blocked"]
    assert tracing.server_span().attributes["cors.verdict"] == "blocked"


async def test_a_hostile_origin_leaves_every_span_event_text_bounded(tracing: Tracing) -> None:
    with captured_events() as log:
        await _get(_instrumented(tracing), origin="http://" + "a" * 10_000 + ".example")
    (logged,) = log.wait_for(lambda event: event["event"] == "cors.blocked")
    ((event),) = _cors_events(tracing.server_span())
    assert event["cors.origin"] == logged["origin"]  # as bounded as the log's
    assert all(len(value) <= _otel.MAX_TEXT for value in event.values() if isinstance(value, str))


def test_a_text_longer_than_the_cap_is_cut_with_an_ellipsis() -> None:
    event = {"reason": "MissingAllowOriginHeader", "exchange_id": "1-1", "fix": "x" * 10_000, "explanation": "ok"}
    attributes = _otel.blocked_event_attributes(event)
    assert attributes["cors.fix"] == "x" * (_otel.MAX_TEXT - 1) + "…"
    assert attributes["cors.explanation"] == "ok"
    assert "cors.browser_message" not in attributes  # None or missing: absent, never null


async def test_a_healed_500_is_recorded_as_it_goes_out(tracing: Tracing) -> None:
    app = OpenTelemetryMiddleware(
        Starlette(
            routes=_routes(),
            middleware=[Middleware(CORSTraceMiddleware, inspector=False, heal_errors=True), _CORS],
        ),
        tracer_provider=tracing.provider,
        meter_provider=NO_METRICS,
    )
    with captured_events() as log:
        response = await _get(app, "/crash", origin=FRONTEND)
    assert response.status_code == 500
    assert response.headers["access-control-allow-origin"] == FRONTEND
    (logged,) = log.wait_for(lambda event: event["event"] == "cors.allowed")
    assert logged["healed"] is True
    assert tracing.server_span().attributes["cors.verdict"] == "allowed"


async def test_a_context_without_a_span_is_not_traced(legs: Legs) -> None:
    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        await _get(_starlette(), origin=STRANGER)
    finally:
        context.detach(token)
    assert legs.counts() == {}


class _BrokenSpan(trace.NonRecordingSpan):
    """A third-party span whose every call raises: corstrace must still serve and log the request."""

    def __init__(self) -> None:
        super().__init__(trace.SpanContext(trace_id=1, span_id=1, is_remote=False))

    def is_recording(self) -> bool:
        raise RuntimeError("broken tracer")


async def _blocked_request_under(span: trace.Span) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """A blocked cross-origin GET while ``span`` is the current span: the response and the events logged."""
    token = context.attach(trace.set_span_in_context(span))
    try:
        with captured_events() as log:
            response = await _get(_starlette(), origin=STRANGER)
    finally:
        context.detach(token)
    return response, list(log)


async def test_a_span_that_raises_changes_neither_the_response_nor_the_log() -> None:
    response, log = await _blocked_request_under(_BrokenSpan())
    assert response.status_code == 200 and response.text == "ok"
    assert [event["event"] for event in log] == ["cors.blocked"]


class _RefusingSpan(_BrokenSpan):
    """A recording span that raises when corstrace writes to it."""

    def is_recording(self) -> bool:
        return True

    def set_attributes(self, attributes: Any) -> None:
        raise RuntimeError("broken exporter")

    def add_event(self, name: str, attributes: Any = None, timestamp: Any = None) -> None:
        raise RuntimeError("broken exporter")


async def test_a_span_that_refuses_its_attributes_still_leaves_the_leg_logged() -> None:
    response, log = await _blocked_request_under(_RefusingSpan())
    assert response.status_code == 200
    assert [event["event"] for event in log] == ["cors.blocked"]


# --- which order works ----------------------------------------------------------------------------------


async def test_corstrace_above_the_instrumentation_finds_the_span_inside_it(tracing: Tracing) -> None:
    app = CORSTraceMiddleware(_instrumented(tracing, _starlette(traced=False)), inspector=False)
    await _get(app, origin=STRANGER)
    span = tracing.server_span()
    assert span.attributes["cors.verdict"] == "blocked"
    assert [event["name"] for event in _cors_events(span)] == ["cors.blocked"]


async def test_the_instrumentation_added_before_corstrace_in_the_middleware_list_is_found_too(
    tracing: Tracing,
) -> None:
    app = Starlette(
        routes=_routes(),
        middleware=[
            Middleware(CORSTraceMiddleware, inspector=False),
            Middleware(OpenTelemetryMiddleware, tracer_provider=tracing.provider, meter_provider=NO_METRICS),
            _CORS,
        ],
    )
    await _get(app, origin=FRONTEND)
    assert tracing.server_span().attributes["cors.verdict"] == "allowed"


# --- FastAPI ---------------------------------------------------------------------------------------------


def _fastapi(**telemetry: Any) -> FastAPI:
    app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False, **telemetry})  # type: ignore[call-arg,unused-ignore]

    @app.get("/items")
    async def items() -> dict[str, str]:
        return {"id": "1"}

    app.add_middleware(CORSMiddleware, allow_origins=[FRONTEND])
    app.add_middleware(CORSTraceMiddleware, inspector=False)
    return app


async def test_fastapi_instrumentor_s_server_span_gets_the_verdict(tracing: Tracing) -> None:
    app = _fastapi()
    FastAPIInstrumentor.instrument_app(app, tracer_provider=tracing.provider, meter_provider=NO_METRICS)
    try:
        await _get(app, origin=STRANGER)
    finally:
        FastAPIInstrumentor.uninstrument_app(app)
    span = tracing.server_span()
    assert span.attributes["cors.verdict"] == "blocked"
    assert [event["name"] for event in _cors_events(span)] == ["cors.blocked"]


async def test_fastapi_native_tracing_s_server_span_gets_the_verdict(tracing: Tracing) -> None:
    app = _fastapi(tracing=True, tracer_provider=tracing.provider)
    await _get(app, origin=STRANGER)
    await _get(app, origin=FRONTEND)
    blocked, allowed = tracing.server_spans()
    assert blocked.attributes["cors.verdict"] == "blocked"
    assert [event["name"] for event in _cors_events(blocked)] == ["cors.blocked"]
    assert allowed.attributes["cors.verdict"] == "allowed"
    # FastAPI's own child spans (dependencies, endpoint, serialization) are left alone.
    children = [span for span in tracing.exporter.get_finished_spans() if span.kind is not SpanKind.SERVER]
    assert children
    assert all(not _cors_attributes(span) for span in children)


# --- cors.legs --------------------------------------------------------------------------------------------


async def test_legs_are_counted_by_verdict_reason_and_preflight_only(tracing: Tracing, legs: Legs) -> None:
    app = _instrumented(tracing)
    await _preflight(app)
    await _get(app, method="PUT", origin=FRONTEND, **{"x-token": "1"})
    await _get(app, origin=STRANGER)
    await _get(app, "/items?page=2", origin="http://other.example")
    assert legs.counts() == {
        _key(verdict="allowed", preflight=True): 1,
        _key(verdict="allowed", preflight=False): 1,
        _key(verdict="blocked", reason="MissingAllowOriginHeader", preflight=False): 2,
    }


async def test_the_counter_is_a_monotonic_sum_of_legs(tracing: Tracing, legs: Legs) -> None:
    await _get(_instrumented(tracing), origin=FRONTEND)
    metric = legs.metric()
    assert metric.unit == "{leg}"
    assert isinstance(metric.data, Sum)
    assert metric.data.is_monotonic


async def test_a_sampled_out_request_is_counted_and_records_no_span(legs: Legs) -> None:
    tracing = Tracing(sampler=ALWAYS_OFF)
    await _get(_instrumented(tracing), origin=STRANGER)
    assert tracing.exporter.get_finished_spans() == ()
    assert legs.counts() == {_key(verdict="blocked", reason="MissingAllowOriginHeader", preflight=False): 1}


async def test_a_request_no_instrumentation_traces_is_not_counted(legs: Legs) -> None:
    with captured_events() as log:
        await _get(_starlette(), origin=STRANGER)
    assert [event["event"] for event in log] == ["cors.blocked"]
    assert legs.counts() == {}


async def test_a_meter_provider_set_after_corstrace_started_receives_the_counts(tracing: Tracing) -> None:
    app = _instrumented(tracing)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    with fresh_meter_globals():
        await _get(app, origin=FRONTEND)  # corstrace built now, its counter a proxy: nothing to report to yet
        metrics.set_meter_provider(provider)
        await _get(app, origin=FRONTEND)
        assert Legs(reader).counts() == {_key(verdict="allowed", preflight=False): 1}
        provider.shutdown()


# --- the app owns the configuration; nothing without OpenTelemetry ---------------------------------------


async def test_corstrace_sets_no_tracer_or_meter_provider(tracing: Tracing) -> None:
    await _get(_instrumented(tracing), origin=STRANGER)
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
    assert type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"


def test_without_opentelemetry_installed_nothing_is_imported_and_logs_still_work() -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        import importlib.abc

        class NoOpenTelemetry(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ModuleNotFoundError(name)
                return None

        sys.meta_path.insert(0, NoOpenTelemetry())
        import httpx, structlog
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route
        from corstrace import CORSTraceMiddleware

        async def items(request):
            return PlainTextResponse("ok")

        app = Starlette(routes=[Route("/items", items)], middleware=[Middleware(CORSTraceMiddleware, inspector=False)])

        async def main():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
                with structlog.testing.capture_logs() as logs:
                    await client.get("/items", headers={"origin": "http://evil.example"})
            return logs

        logs = asyncio.run(main())
        tracer = app.middleware_stack.app
        assert type(tracer).__name__ == "CORSTraceMiddleware", tracer
        assert tracer._recorder.spans is None
        assert [event["event"] for event in logs if event["event"].startswith("cors.")][-1] == "cors.blocked", logs
        print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_readme_documents_every_name_of_the_contract() -> None:
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## OpenTelemetry", 1)[1].split("\n## ", 1)[0]
    names = [
        _otel.VERDICT,
        _otel.REASON,
        _otel.PREFLIGHT,
        _otel.EXCHANGE_ID,
        _otel.ORIGIN,
        _otel.BROWSER_MESSAGE,
        _otel.FIREFOX_MESSAGE,
        _otel.EXPLANATION,
        _otel.FIX,
        _otel.BLOCKED_EVENT,
        _otel.METRIC,
        _otel.METRIC_UNIT,
    ]
    assert [name for name in names if f"`{name}`" not in section] == []

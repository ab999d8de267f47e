"""OpenTelemetry end to end: an app process configured as in production exports corstrace's verdicts over OTLP/HTTP.

The app runs in its own process under uvicorn, with *global* SDK providers and the OTLP/HTTP exporters pointed at
a receiver this test serves on loopback (a small HTTP server decoding the protobuf export requests). The global
providers live and die with that process: the test process never sets one. FastAPI's native tracing switches
itself on there, because a global tracer provider is set, as it would in the user's app.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from starlette.responses import HTMLResponse

from corstrace import __version__
from tests.support import run_server

ROOT = Path(__file__).resolve().parent.parent
STRANGER = "http://evil.example"

APP = """
import contextlib
import sys

import structlog
import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from corstrace import CORSTraceMiddleware

receiver, frontend, fd = sys.argv[1], sys.argv[2], int(sys.argv[3])
resource = Resource.create({"service.name": "items-api"})
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver + "/v1/traces")))
trace.set_tracer_provider(tracer_provider)
# One export, at shutdown.
reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=receiver + "/v1/metrics"), 3_600_000)
meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
metrics.set_meter_provider(meter_provider)
structlog.configure(processors=[structlog.processors.JSONRenderer()])


@contextlib.asynccontextmanager
async def lifespan(app):
    yield
    # uvicorn ends a graceful shutdown by re-raising SIGTERM, which skips atexit: flush here, as apps do.
    tracer_provider.shutdown()
    meter_provider.shutdown()


app = FastAPI(lifespan=lifespan)


@app.get("/items")
def items() -> list[int]:
    return [1]


@app.put("/items")
def put_items() -> list[int]:
    return [1]


app.add_middleware(CORSMiddleware, allow_origins=[frontend], allow_methods=["GET"])
app.add_middleware(CORSTraceMiddleware, inspector=False, aggregate_window=0)
uvicorn.run(app, fd=fd, log_level="warning")
"""


def _value(value: AnyValue) -> Any:
    return getattr(value, value.WhichOneof("value"))


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


class Receiver:
    """An OTLP/HTTP receiver on loopback: what a collector would get, decoded."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], str, Span]] = []  # (resource attributes, scope name, span)
        self.metrics: list[tuple[dict[str, Any], Any, Any]] = []  # (resource attributes, scope, metric)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    receiver._traces(ExportTraceServiceRequest.FromString(body))
                    answer = ExportTraceServiceResponse().SerializeToString()
                elif self.path == "/v1/metrics":
                    receiver._metrics(ExportMetricsServiceRequest.FromString(body))
                    answer = ExportMetricsServiceResponse().SerializeToString()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _traces(self, request: ExportTraceServiceRequest) -> None:
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    self.spans.append((_attributes(resource.resource.attributes), scope.scope.name, span))

    def _metrics(self, request: ExportMetricsServiceRequest) -> None:
        for resource in request.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    self.metrics.append((_attributes(resource.resource.attributes), scope.scope, metric))

    def server_spans(self) -> list[Span]:
        return [span for _, _, span in self.spans if span.kind == Span.SpanKind.SPAN_KIND_SERVER]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


class Api:
    def __init__(self, url: str, process: subprocess.Popen[str]) -> None:
        self.url = url
        self.process = process
        self.logs: list[dict[str, Any]] = []


@contextlib.contextmanager
def exporting_api(receiver: Receiver, frontend: str, tmp_path: Path) -> Iterator[Api]:
    """The app process on a loopback socket already listening; on exit, stopped as uvicorn is (SIGTERM)."""
    script = tmp_path / "api.py"
    script.write_text(APP, encoding="utf-8")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, str(script), receiver.url, frontend, str(sock.fileno())],
        pass_fds=[sock.fileno()],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    api = Api(f"http://127.0.0.1:{port}", process)
    try:
        yield api
    finally:
        sock.close()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        api.logs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    # Ended by its own SIGTERM, which uvicorn re-raises once its graceful shutdown is done.
    assert process.returncode == -signal.SIGTERM, err
    assert "Traceback" not in err, err


def _cors(span: Span) -> dict[str, Any]:
    return {name: value for name, value in _attributes(span.attributes).items() if name.startswith("cors.")}


def _events(span: Span) -> list[dict[str, Any]]:
    return [{"name": event.name, **_attributes(event.attributes)} for event in span.events]


def _counts(receiver: Receiver) -> dict[frozenset[tuple[str, Any]], int]:
    (metric,) = [metric for _, scope, metric in receiver.metrics if metric.name == "cors.legs"]
    return {frozenset(_attributes(point.attributes).items()): point.as_int for point in metric.sum.data_points}


def test_verdicts_reach_a_collector_over_otlp_http(receiver: Receiver, tmp_path: Path) -> None:
    frontend = "http://localhost:3000"
    with exporting_api(receiver, frontend, tmp_path) as api, httpx.Client(base_url=api.url, timeout=30) as client:
        assert client.get("/items", headers={"origin": STRANGER}).status_code == 200
        assert client.get("/items", headers={"origin": frontend}).headers["access-control-allow-origin"] == frontend
    (logged,) = [event for event in api.logs if event["event"] == "cors.blocked"]

    blocked, allowed = receiver.server_spans()
    assert _cors(blocked) == {
        "cors.verdict": "blocked",
        "cors.reason": "MissingAllowOriginHeader",
        "cors.preflight": False,
        "cors.exchange.id": logged["exchange_id"],
    }
    ((event),) = _events(blocked)
    assert event["name"] == "cors.blocked"
    assert event["cors.browser_message"] == logged["browser_message"]
    assert event["cors.fix"] == logged["fix"]
    assert _cors(allowed)["cors.verdict"] == "allowed"
    assert _events(allowed) == []
    # The spans are FastAPI's own (native tracing, on because the app set a global tracer provider).
    assert {scope for _, scope, span in receiver.spans if span.kind == Span.SpanKind.SPAN_KIND_SERVER} == {"fastapi"}

    ((resource, scope, metric),) = [found for found in receiver.metrics if found[2].name == "cors.legs"]
    assert resource["service.name"] == "items-api"
    assert (scope.name, scope.version) == ("corstrace", __version__)
    assert metric.unit == "{leg}"
    assert metric.sum.is_monotonic
    assert metric.sum.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    blocked_key = {("cors.verdict", "blocked"), ("cors.reason", "MissingAllowOriginHeader"), ("cors.preflight", False)}
    assert _counts(receiver) == {
        frozenset(blocked_key): 1,
        frozenset({("cors.verdict", "allowed"), ("cors.preflight", False)}): 1,
    }


def _page_app() -> Any:
    async def index(scope: Any, receive: Any, send: Any) -> None:
        await HTMLResponse("<!doctype html><title>frontend</title><p>frontend</p>")(scope, receive, send)

    return index


@pytest.mark.browser
def test_the_exported_span_event_carries_what_chromium_printed(receiver: Receiver, tmp_path: Path, page: Any) -> None:
    with run_server(_page_app()) as page_url:
        frontend = page_url.replace("127.0.0.1", "localhost")
        with exporting_api(receiver, frontend, tmp_path) as api:
            page.goto(frontend + "/")
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            outcome = page.evaluate(
                f"""async () => {{
                    try {{ await fetch({json.dumps(api.url + "/items")}, {{method: "PUT"}}); return "ok"; }}
                    catch (e) {{ return "blocked"; }}
                }}"""
            )
            if not any("blocked by CORS policy" in line for line in console):
                # Console events may arrive after the fetch promise settled.
                page.wait_for_event("console", lambda message: "blocked by CORS policy" in message.text)
    assert outcome == "blocked"
    (printed,) = [line for line in console if "blocked by CORS policy" in line]
    (preflight,) = receiver.server_spans()
    assert _cors(preflight)["cors.reason"] == "PreflightInvalidStatus"
    assert _cors(preflight)["cors.preflight"] is True
    ((event),) = _events(preflight)
    assert event["cors.browser_message"] == printed
    assert "allow_methods" in event["cors.fix"]
    assert _counts(receiver) == {
        frozenset({("cors.verdict", "blocked"), ("cors.reason", "PreflightInvalidStatus"), ("cors.preflight", True)}): 1
    }

"""The verdict engine alone: ``evaluate()`` calls per second on the legs the in-process table sends."""

from __future__ import annotations

import time
from dataclasses import dataclass

from corstrace.engine import Request, Response, evaluate

_URL = "http://127.0.0.1:8000/items/42"
_HEADERS = (
    ("host", "127.0.0.1:8000"),
    ("accept", "*/*"),
    ("sec-fetch-mode", "cors"),
    ("origin", "http://localhost:3000"),
)
_ALLOWED = (
    ("content-length", "41"),
    ("content-type", "application/json"),
    ("access-control-allow-origin", "http://localhost:3000"),
    ("vary", "Origin"),
)
CASES: dict[str, tuple[Request, Response | None]] = {
    "allowed simple GET": (Request("GET", _URL, _HEADERS), Response(200, _ALLOWED)),
    "allowed preflight": (
        Request(
            "OPTIONS",
            _URL,
            (*_HEADERS, ("access-control-request-method", "PUT"), ("access-control-request-headers", "content-type")),
            preflight=True,
        ),
        Response(
            200,
            (
                ("vary", "Origin"),
                ("access-control-allow-methods", "GET, POST, PUT"),
                ("access-control-max-age", "600"),
                ("access-control-allow-headers", "authorization, content-type"),
                ("access-control-allow-origin", "http://localhost:3000"),
                ("content-length", "2"),
                ("content-type", "text/plain; charset=utf-8"),
            ),
        ),
    ),
    "blocked GET (no ACAO)": (
        Request("GET", _URL, (*_HEADERS[:3], ("origin", "http://evil.example"))),
        Response(200, (("content-length", "41"), ("content-type", "application/json"))),
    ),
    "exception before response": (Request("GET", "http://127.0.0.1:8000/boom", _HEADERS), None),
}


@dataclass
class EngineResult:
    # case -> evaluations per second (best of the repeats: the engine is pure, noise only slows it down)
    per_second: dict[str, float]


def run(n: int = 20000, repeats: int = 5) -> EngineResult:
    rates: dict[str, float] = {}
    for name, (request, response) in CASES.items():
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(n):
                evaluate(request, response)
            best = min(best, time.perf_counter() - started)
        rates[name] = n / best
    return EngineResult(rates)

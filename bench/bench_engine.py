"""Micro-benchmark for corstrace.engine.evaluate, the middleware's per-request hot path.

Run: ``python bench/bench_engine.py [--seconds 1.0]``. Prints exchanges per second and microseconds per
exchange for several leg kinds, as the median of five timed rounds after a warm-up. Not a test: timing
thresholds in the test suite would be flaky on shared two-core machines.
"""

from __future__ import annotations

import argparse
import statistics
import time

from corstrace.engine import Request, Response, evaluate

ORIGIN = "http://localhost:3000"
URL = "http://127.0.0.1:8000/items?page=2"
BROWSER_HEADERS = (
    ("host", "127.0.0.1:8000"),
    ("connection", "keep-alive"),
    ("sec-ch-ua-platform", '"Linux"'),
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0"),
    ("sec-ch-ua", '"Not:A-Brand";v="8", "Chromium";v="156"'),
    ("sec-ch-ua-mobile", "?0"),
    ("accept", "*/*"),
    ("origin", ORIGIN),
    ("sec-fetch-site", "cross-site"),
    ("sec-fetch-mode", "cors"),
    ("sec-fetch-dest", "empty"),
    ("referer", ORIGIN + "/"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("accept-language", "en-US,en;q=0.9"),
)
PREFLIGHT_HEADERS = (
    ("host", "127.0.0.1:8000"),
    ("accept", "*/*"),
    ("access-control-request-method", "PUT"),
    ("access-control-request-headers", "content-type,x-request-id"),
    ("origin", ORIGIN),
    ("sec-fetch-mode", "cors"),
    ("referer", ORIGIN + "/"),
)
JSON_RESPONSE = (("content-type", "application/json"), ("content-length", "512"))

CASES: dict[str, tuple[Request, Response | None]] = {
    "no Origin (not CORS)": (Request("GET", URL, BROWSER_HEADERS[:7]), Response(200, JSON_RESPONSE)),
    "actual, allowed (echo + Vary)": (
        Request("GET", URL, BROWSER_HEADERS),
        Response(200, (*JSON_RESPONSE, ("access-control-allow-origin", ORIGIN), ("vary", "Origin"))),
    ),
    "actual, allowed, credentials unknown": (
        Request("GET", URL, BROWSER_HEADERS),
        Response(200, (*JSON_RESPONSE, ("access-control-allow-origin", "*"), ("x-total-count", "40"))),
    ),
    "actual, blocked (missing ACAO)": (Request("GET", URL, BROWSER_HEADERS), Response(200, JSON_RESPONSE)),
    "actual, exception escaped": (Request("GET", URL, BROWSER_HEADERS), None),
    "preflight, allowed": (
        Request("OPTIONS", URL, PREFLIGHT_HEADERS, credentials="include"),
        Response(
            200,
            (
                ("access-control-allow-origin", ORIGIN),
                ("access-control-allow-credentials", "true"),
                ("access-control-allow-methods", "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"),
                ("access-control-allow-headers", "content-type, x-request-id"),
                ("access-control-max-age", "600"),
                ("vary", "Origin"),
            ),
        ),
    ),
    "preflight, blocked (Starlette 400)": (
        Request("OPTIONS", URL, PREFLIGHT_HEADERS),
        Response(400, (("access-control-allow-origin", ORIGIN), ("content-type", "text/plain; charset=utf-8"))),
    ),
    "preflight, blocked (header)": (
        Request("OPTIONS", URL, PREFLIGHT_HEADERS, credentials="omit"),
        Response(200, (("access-control-allow-origin", "*"), ("access-control-allow-methods", "PUT"))),
    ),
}


def measure(request: Request, response: Response | None, seconds: float) -> float:
    """Median exchanges per second over five rounds of roughly ``seconds / 5`` each."""
    loops = 1
    while True:  # calibrate: one batch takes at least 20 ms
        start = time.perf_counter()
        for _ in range(loops):
            evaluate(request, response)
        if time.perf_counter() - start >= 0.02:
            break
        loops *= 2
    rates = []
    for _ in range(5):
        batches = 0
        start = time.perf_counter()
        deadline = start + seconds / 5
        while time.perf_counter() < deadline:
            for _ in range(loops):
                evaluate(request, response)
            batches += 1
        rates.append(batches * loops / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=1.0, help="time budget per leg kind (default 1.0)")
    args = parser.parse_args()
    print(f"{'leg kind':<40} {'exchanges/s':>12} {'µs/exchange':>12}")
    for name, (request, response) in CASES.items():
        rate = measure(request, response, args.seconds)
        print(f"{name:<40} {rate:>12,.0f} {1e6 / rate:>12.1f}")


if __name__ == "__main__":
    main()

"""One inspector for every worker: real ``uvicorn --workers 2`` and gunicorn with two uvicorn workers behind one
``corstrace inspector``, fired at from Chromium, read from the collector's page in Chromium.

The workers start first (the collector is late), a page on another port fetches from them, the collector starts
and the inspector page shows every exchange with the process that served it; then the collector stops, the page
fetches more (the workers queue them), the collector starts again on its port and the same, never reloaded
inspector tab shows all of them: none lost, none twice. A worker pointed at a collector that never starts warns
once and stops promptly.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from corstrace import CORSTraceMiddleware
from tests.collector_support import Process, environment, free_port, start, start_collector, wait_listening
from tests.support import run_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FRONTEND_ENV = "CORSTRACE_TEST_FRONTEND"
TARGET = "tests.test_collector_servers:app"


async def _item(request: Request) -> JSONResponse:
    if "hold" in request.query_params:
        # A slow synchronous handler: this worker's loop accepts nothing meanwhile, so the requests sent while it
        # holds go to the other worker (left to itself, the kernel may hand every connection to one of them).
        time.sleep(float(request.query_params["hold"]))
    # A new connection per request: Chromium would otherwise reuse one, and so one worker, for everything.
    return JSONResponse({"n": request.path_params["n"], "pid": os.getpid()}, headers={"connection": "close"})


# What the workers import: the README's default setup, the frontend's origin from the environment.
app = Starlette(
    routes=[Route("/items/{n}", _item)],
    middleware=[
        Middleware(CORSTraceMiddleware),
        Middleware(CORSMiddleware, allow_origins=[os.environ.get(FRONTEND_ENV, "http://localhost:5173")]),
    ],
)


async def _frontend_page(request: Request) -> HTMLResponse:
    return HTMLResponse("<!doctype html><title>frontend</title><p>frontend</p>")


frontend = Starlette(routes=[Route("/", _frontend_page)])

SERVERS = {
    "uvicorn-workers-2": ("uvicorn", ["-m", "uvicorn", TARGET, "--port", "{port}", "--workers", "2"]),
    "gunicorn-2-uvicorn-workers": (
        "gunicorn",
        ["-m", "gunicorn", "-w", "2", "-k", "uvicorn.workers.UvicornWorker", "-b", "127.0.0.1:{port}", TARGET],
    ),
}


def _workers(name: str, port: int, env: dict[str, str]) -> Process:
    module, args = SERVERS[name]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[test]')")
    workers = start([arg.format(port=port) for arg in args], env)
    wait_listening(port, workers)
    return workers


def _fire(page: Any, api: str, numbers: range) -> dict[int, int]:
    """fetch() every ``/items/<n>`` at once from the page; the pid that answered each."""
    answers = page.evaluate(
        "async ([api, numbers]) => Promise.all(numbers.map((n) => fetch(`${api}/items/${n}`).then((r) => r.json())))",
        [api, list(numbers)],
    )
    return {int(answer["n"]): int(answer["pid"]) for answer in answers}


_FIRE_WHILE_ONE_HOLDS = """async ([api, held, numbers]) => {
    const holding = fetch(`${api}/items/${held}?hold=0.5`).then((r) => r.json());
    await new Promise((resolve) => setTimeout(resolve, 100));  // the held request reaches a worker first
    const rest = numbers.map((n) => fetch(`${api}/items/${n}`).then((r) => r.json()));
    return Promise.all([holding, ...rest]);
}"""


def _fire_until_both_workers_answered(page: Any, api: str, start_at: int) -> dict[int, int]:
    """Batches of fetches until both workers served some: one request holds its worker while the others go."""
    fired: dict[int, int] = {}
    for batch in range(8):
        first = start_at + batch * 6
        answers = page.evaluate(_FIRE_WHILE_ONE_HOLDS, [api, first, list(range(first + 1, first + 6))])
        fired.update({int(answer["n"]): int(answer["pid"]) for answer in answers})
        if len(set(fired.values())) > 1:
            return fired
    raise AssertionError(f"every request reached one worker: {fired}")


def _stopped_cleanly(process: Process) -> str:
    status = process.stop()
    output = process.text
    # uvicorn (since 0.30) ends by re-raising the signal it handled, so its clean exit status is -SIGTERM.
    assert status in (0, -signal.SIGTERM), output
    assert "Traceback" not in output and "corstrace.internal_error" not in output, output
    return output


def _shows(inspector: Any, fired: dict[int, int]) -> None:
    """The inspector page lists every fired exchange (each path, once) and marks which pid served it."""
    from playwright.sync_api import expect

    expect(inspector.locator("#s-exchanges")).to_have_text(str(len(fired)), timeout=30_000)
    rows = inspector.locator("#rows")
    for number, pid in fired.items():
        row = rows.locator(".row", has_text=re.compile(rf"/items/{number}(?!\d)"))
        expect(row).to_have_count(1)
        expect(row.locator(".chip-process")).to_have_text(f"pid {pid}")


@pytest.mark.parametrize("name", list(SERVERS))
def test_one_page_shows_every_workers_exchanges_through_a_late_start_and_a_restart(
    page: Any, tmp_path: Path, name: str
) -> None:
    cache = tmp_path / "cache"
    collector_port, api_port = free_port(), free_port()
    collector_url = f"http://127.0.0.1:{collector_port}"
    api = f"http://127.0.0.1:{api_port}"
    with run_server(frontend) as frontend_url:
        env = environment(cache, CORSTRACE_COLLECTOR=collector_url, **{FRONTEND_ENV: frontend_url})
        workers = _workers(name, api_port, env)
        collector: Process | None = None
        try:
            page.goto(frontend_url + "/")
            # 1. The collector is not running yet: the workers keep what they record.
            fired = _fire_until_both_workers_answered(page, api, 0)
            collector, inspector_url = start_collector(collector_port, environment(cache))
            inspector = page.context.new_page()
            inspector.set_viewport_size({"width": 1400, "height": 3200})  # every row in view (the list is virtual)
            inspector.goto(inspector_url)
            _shows(inspector, fired)
            from playwright.sync_api import expect

            expect(inspector.locator("#conn-text")).to_have_text("live · collector · 2 processes", timeout=15_000)
            # 2. The collector goes away; the page fetches more; the workers queue it.
            _stopped_cleanly(collector)
            fired.update(_fire(page, api, range(100, 112)))
            # 3. The same tab, never reloaded, shows all of it once the collector is back on its port.
            collector, _ = start_collector(collector_port, environment(cache))
            _shows(inspector, fired)
        finally:
            output = _stopped_cleanly(workers)  # first: their shutdown flushes to a running collector
            if collector is not None:
                _stopped_cleanly(collector)
    # Each worker: one warning while the collector was down (twice: late, then restarting), one info per connect.
    assert len(re.findall(r"cannot reach its collector", output)) == 4, output
    assert len(re.findall(r"publishing to the corstrace collector", output)) == 4, output


def test_a_collector_that_never_starts_costs_one_warning_per_worker_and_no_slow_shutdown(tmp_path: Path) -> None:
    api_port = free_port()
    env = environment(tmp_path / "cache", CORSTRACE_COLLECTOR=f"http://127.0.0.1:{free_port()}")
    workers = _workers("uvicorn-workers-2", api_port, env)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}") as http:
            for number in range(20):
                response = http.get(f"/items/{number}", headers={"Origin": "http://localhost:5173"})
                assert response.status_code == 200
                assert response.headers["access-control-allow-origin"] == "http://localhost:5173"
        workers.wait_for(r"cannot reach its collector", count=2)
    finally:
        output = _stopped_cleanly(workers)
    assert len(re.findall(r"cannot reach its collector", output)) == 2, output
    assert "[error" not in output, output

"""Real Chromium against every framework corstrace reads, each behind a real server, correct and imperfect.

For each framework a page on ``http://localhost:P`` makes many fetch() calls (one URL each) to the traced app
on ``http://127.0.0.1:Q``: the verdict corstrace logs for each must be the browser's, with its console text;
the imperfect setup's events must name the layer, the setting and a fix in the framework's own syntax; and
the startup lint must be the right one (none for a correct setup).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from corstrace import CORSTraceMiddleware
from tests import layer_apps
from tests.servers import run_hypercorn
from tests.support import EventLog, captured_events, run_server

pytestmark = pytest.mark.browser

NAMES = {
    "litestar": "Litestar CORSMiddleware (cors_config)",
    "quart": "quart-cors",
    "falcon": "Falcon CORSMiddleware",
    "blacksheep": "BlackSheep CORS (use_cors)",
    "asgi-cors": "asgi-cors",
    "django": "django-cors-headers CorsMiddleware",
}
SYNTAX = {
    "litestar": "cors_config=CORSConfig(",
    "quart": "app = cors(app, ",
    "falcon": "falcon.asgi.App(middleware=[falcon.CORSMiddleware(",
    "blacksheep": "app.use_cors(",
    "asgi-cors": "app = asgi_cors(app, ",
    "django": "In settings.py: CORS_",
}
# Quart runs under hypercorn (its own server), the others under uvicorn.
SERVERS = {"quart": run_hypercorn}
# The startup lint each setup must log (codes; none for a correct setup).
LINTS = {("litestar", "bad"): ["malformed_origin"]}
# fetch() options by case name.
CASES = {
    "get": ("GET", "/items", "{}"),
    "put-with-header": ("PUT", "/items", "{method: 'PUT', headers: {'X-Trace-Id': '1'}}"),
    "credentials": ("GET", "/items", "{credentials: 'include'}"),
    "crash": ("GET", "/crash", "{}"),
}


def _page_app() -> Any:
    async def index(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": b"<!doctype html><title>frontend</title>"})

    return index


@pytest.fixture(scope="module")
def frontend() -> Iterator[str]:
    with run_server(_page_app()) as url:
        yield url.replace("127.0.0.1", "localhost")


@contextlib.contextmanager
def _serve(framework: str, kind: str, frontend: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The traced app on its server, and the lint it logged at startup (startup is over once the server listens)."""
    app = CORSTraceMiddleware(layer_apps.BUILDERS[framework](kind, frontend), inspector=False, aggregate_window=0)
    runner = SERVERS.get(framework, run_server)
    with contextlib.ExitStack() as stack:
        if framework == "django":
            from django.test import override_settings

            stack.enter_context(override_settings(CORS_ALLOWED_ORIGINS=[frontend]))
        with captured_events() as startup:
            url = stack.enter_context(runner(app))
        yield url, [e for e in startup if e["event"] == "cors.lint"]


def _run(page: Any, frontend: str, api: str, logs: EventLog) -> dict[str, tuple[str, str | None, dict[str, Any]]]:
    """Each case fetched once (its own URL): case -> (the page's outcome, Chromium's console line, last event)."""
    page.goto(frontend + "/")
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    urls = {name: f"{api}{path}?case={name}" for name, (_, path, _) in CASES.items()}
    calls = ", ".join(f"[{json.dumps(name)}, {json.dumps(urls[name])}, {CASES[name][2]}]" for name in CASES)
    outcomes = page.evaluate(
        f"""async () => {{
            const out = {{}};
            for (const [name, url, options] of [{calls}]) {{
                try {{ const r = await fetch(url, options); await r.text(); out[name] = "allowed"; }}
                catch (e) {{ out[name] = "blocked"; }}
            }}
            return out;
        }}"""
    )
    results = {}
    for name, url in urls.items():
        method = CASES[name][0]
        # The leg the exchange ends on: the actual request, or the preflight that stopped it.
        last = logs.wait_for(
            lambda e, url=url, method=method: e["event"] in ("cors.blocked", "cors.allowed") and e["url"] == url
            and (e["method"] == method or e["verdict"] == "blocked")
        )[-1]  # fmt: skip
        if outcomes[name] == "blocked" and not any(url in line for line in console):
            page.wait_for_event("console", lambda m, url=url: url in m.text and "CORS policy" in m.text, timeout=5000)
        printed = next((line for line in console if url in line and "blocked by CORS policy" in line), None)
        results[name] = (outcomes[name], printed, last)
    return results


FRAMEWORKS = ["litestar", "quart", "falcon", "blacksheep", "asgi-cors", "django"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_chromium_and_corstrace_agree_on_each_framework(framework: str, frontend: str, page: Any) -> None:
    kinds = ["bad"] if framework == "django" else ["good", "bad"]  # Django's settings are process-wide
    for kind in kinds:
        with _serve(framework, kind, frontend) as (api, startup_lints):
            assert [f["code"] for f in startup_lints] == LINTS.get((framework, kind), []), startup_lints
            with captured_events() as logs:
                results = _run(page, frontend, api, logs)
        for name, (outcome, printed, event) in results.items():
            where = f"{framework}/{kind}/{name}"
            assert event["verdict"] == outcome, (where, event["explanation"])
            if outcome == "blocked":
                assert printed == event["browser_message"], where
                assert event["layer"] == NAMES[framework] or name == "crash", (where, event["layer"])
                assert "Starlette" not in event["explanation"], where
                if event["fix"] and name != "crash":
                    expected = (SYNTAX[framework], "responder", "asgi-cors cannot allow credentials")
                    assert any(text in event["fix"] for text in expected), (where, event["fix"])
        if kind == "good" and framework != "asgi-cors":  # asgi-cors has no credentials option
            assert {name: r[0] for name, r in results.items()} == dict.fromkeys(CASES, "allowed")
        if kind == "bad":
            assert results["put-with-header"][0] == "blocked"
            assert results["put-with-header"][2]["server_reason"]

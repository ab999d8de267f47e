"""The README's pictures of the inspector, made from a real run of the demo so they stay current.

The demo API (examples/app.py, real CORSMiddleware + CORSTraceMiddleware under uvicorn) is driven by its real
frontend in headless Chromium, one card after the other; the legs it logs are published to an inspector, which
is photographed: a blocked preflight selected, a crash, and dark mode. Ports, times, durations, paths and the
pid are normalised (the demo's default ports, a fixed clock) so a picture only changes when the page does.
Written to examples/screenshots/ (left out of the wheel).
"""

from __future__ import annotations

import re
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corstrace._demo import FRONTEND_ORIGIN_ENV, load_example
from corstrace._inspector import Hub, Inspector
from tests.support import captured_events, run_server
from tests.test_inspector import PREFIX, TOKEN, make_app
from tests.test_inspector_browser import expect, open_inspector

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "examples" / "screenshots"
# The demo's cards, top to bottom: the order the legs are published in.
CARDS = ["simple-get", "json-post", "put", "authorization", "credentials", "crash", "redirect"]
# 2026-01-15 10:42:07 UTC: a fixed clock for the Time column.
CLOCK = 1768473727.0


@pytest.fixture
def demo_records(monkeypatch: pytest.MonkeyPatch, browser: Any) -> Iterator[list[dict[str, Any]]]:
    """Every leg the demo API logs while its frontend's cards are clicked, as inspector records."""
    monkeypatch.setenv("CORSTRACE_INSPECTOR", "0")  # the legs are taken from the log and published below
    frontend_app = load_example("frontend").app
    with run_server(frontend_app) as frontend:
        frontend_origin = frontend.replace("127.0.0.1", "localhost")
        # examples/app.py reads the frontend's origin when it is imported, its allow_origins.
        monkeypatch.setenv(FRONTEND_ORIGIN_ENV, frontend_origin)
        api_app = load_example("app").app
        with captured_events() as log, run_server(api_app) as api:
            monkeypatch.setenv("CORSTRACE_DEMO_API_URL", api)  # read by the frontend's config.js per request
            context = browser.new_context()
            page = context.new_page()
            page.goto(f"{frontend_origin}/")
            for card in CARDS:
                section = page.locator(f'[data-request="{card}"]')
                section.get_by_role("button", name="Send").click()
                expect(section.locator("output")).not_to_have_attribute("data-outcome", "pending", timeout=10_000)
            context.close()
            # (method, path, redirected): every leg the seven cards make, the redirect's second hop marked.
            legs = [("GET", "/items", False), ("OPTIONS", "/items", False), ("POST", "/items", False)]
            legs += [("OPTIONS", "/items/1", False), ("OPTIONS", "/me", False), ("GET", "/session", False)]
            legs += [("GET", "/crash", False), ("GET", "/items/", False), ("GET", "/items", True)]
            for method, path, redirected in legs:
                log.wait_for(lambda e, m=method, p=path, r=redirected: _is_leg(e, m, p, r))
            events = [dict(e) for e in log if e.get("event") in ("cors.blocked", "cors.allowed", "cors.exchange")]
    yield normalise(events, api=api, frontend_origin=frontend_origin)


def _is_leg(event: dict[str, Any], method: str, path: str, redirected: bool) -> bool:
    if event.get("event") not in ("cors.blocked", "cors.allowed"):
        return False
    if (event.get("method"), event.get("path")) != (method, path):
        return False
    return not redirected or bool(event.get("redirected_from"))


def normalise(events: list[dict[str, Any]], *, api: str, frontend_origin: str) -> list[dict[str, Any]]:
    """Records as the middleware publishes them, with what differs between runs made fixed."""
    api_port = api.rsplit(":", 1)[1]
    frontend_port = frontend_origin.rsplit(":", 1)[1]
    replacements = [
        (f"127.0.0.1:{api_port}", "127.0.0.1:8000"),
        (f"localhost:{frontend_port}", "localhost:3000"),
        (sysconfig.get_paths()["purelib"], "/home/you/shop/.venv/lib/python3.12/site-packages"),
        (sysconfig.get_paths()["stdlib"], "/usr/lib/python3.12"),
        (str(ROOT), "/home/you/shop"),
    ]

    def fix(value: Any) -> Any:
        if isinstance(value, str):
            for old, new in replacements:
                value = value.replace(old, new)
            return value
        if isinstance(value, list):
            return [fix(item) for item in value]
        if isinstance(value, dict):
            return {key: fix(item) for key, item in value.items()}
        return value

    ids: dict[str, str] = {}
    records = []
    for index, event in enumerate(events):
        record = fix({k: v for k, v in event.items() if k not in ("event", "log_level", "timestamp")})
        if isinstance(record.get("exception"), str):
            # The log carries the traceback text (for structlog's renderers); the inspector gets the dict.
            record["exception"] = {
                "type": record.pop("exception_type"),
                "message": record.pop("exception_message"),
                "where": record.pop("exception_where"),
                "traceback": record["exception"],
            }
        record["type"] = "note" if event["event"] == "cors.exchange" else "leg"
        record["exchange_id"] = ids.setdefault(str(event.get("exchange_id")), f"demo-{len(ids) + 1}")
        record["ts"] = CLOCK + 0.137 * index
        if "duration_ms" in record:
            record["duration_ms"] = 1.2 + 0.3 * (index % 5)
        records.append(record)
    return records


@pytest.fixture
def inspector_page(demo_records: list[dict[str, Any]], browser: Any) -> Iterator[Any]:
    hub = Hub(buffer_size=100)
    with run_server(make_app(hub, Inspector(hub, prefix=PREFIX, token=TOKEN))) as base:
        context = browser.new_context(viewport={"width": 1440, "height": 900}, timezone_id="UTC", device_scale_factor=1)
        page = context.new_page()
        open_inspector(page, base)
        for record in demo_records:
            hub.publish(record)
        expect(page.locator("#rows .row")).to_have_count(7)
        # The status line names the test process's pid; the picture shows a fixed one.
        page.evaluate("document.getElementById('conn-text').textContent = 'live · pid 4242'")
        try:
            yield page
        finally:
            context.close()


def shoot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.mouse.move(0, 0)  # no hover highlight in the picture
    page.screenshot(path=str(path), animations="disabled", caret="hide")
    return path


def test_screenshots_of_the_inspector_for_the_readme(inspector_page: Any) -> None:
    page = inspector_page
    rows = page.locator("#rows .row")
    detail = page.locator("#detail")

    rows.filter(has_text="/items/1").click()
    expect(detail).to_contain_text("Response to preflight request doesn't pass access control check")
    expect(detail.get_by_role("button", name="Copy fix")).to_be_visible()
    expect(detail.locator(".verified")).to_contain_text("Verified")  # the README shows a proven fix (issue 15)
    blocked = shoot(page, "inspector-blocked-preflight.png")

    rows.filter(has_text="/crash").click()
    crash = detail.locator("section").filter(has=page.get_by_role("heading", name="Exception", exact=True))
    expect(crash).to_contain_text("RuntimeError: database is down")
    expect(crash.locator("ol.frames").first).to_contain_text("examples/app.py:110 in load_dashboard raised here")
    # The Exception section at the top of the pane, just under its sticky header.
    crash.evaluate(
        """(section) => {
            const pane = document.getElementById("detail");
            const head = pane.querySelector(".d-head").getBoundingClientRect().height;
            const top = section.getBoundingClientRect().top - pane.getBoundingClientRect().top + pane.scrollTop;
            pane.scrollTop = Math.max(0, top - head - 8);
        }"""
    )
    crashed = shoot(page, "inspector-crash.png")

    page.emulate_media(color_scheme="dark")
    rows.filter(has_text=re.compile(r"/items/ → /items")).click()
    expect(detail).to_contain_text("Hop 2 GET /items → 200")
    detail.evaluate("(pane) => { pane.scrollTop = 0; }")
    dark = shoot(page, "inspector-dark.png")

    for path in (blocked, crashed, dark):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    readme = (ROOT / "README.md").read_text()
    for path in (blocked, crashed, dark):
        assert f"examples/screenshots/{path.name}" in readme, f"the README shows {path.name}"


def test_the_demo_legs_are_normalised_so_pictures_are_stable(demo_records: list[dict[str, Any]]) -> None:
    """No port, path or clock of this run leaks into the records the pictures are made from."""
    text = repr(demo_records)
    assert re.findall(r"127\.0\.0\.1:(\d+)", text) == ["8000"] * len(re.findall(r"127\.0\.0\.1:\d+", text))
    assert set(re.findall(r"localhost:(\d+)", text)) == {"3000"}
    assert str(ROOT) not in text
    assert all(CLOCK <= record["ts"] < CLOCK + 60 for record in demo_records)

"""The inspector page under a flood, in real headless Chromium: 100,000 exchanges and the page stays responsive.

Responsiveness is read from the page's own long-task entries (tasks over 50 ms, PerformanceObserver), as the
share of the flood during which the main thread was blocked, not from how long the flood took. Before the
virtualised list and the sliced intake, 20,000 exchanges kept the main thread blocked for ~87% of the flood,
with single tasks over a second (every record re-sorted every exchange held).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from corstrace._inspector import Hub, Inspector
from tests.support import run_server
from tests.test_inspector import PREFIX, TOKEN, make_app, make_record
from tests.test_inspector_browser import expect, open_inspector

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FLOOD = 100_000
CHUNK = 1_000
HELD = 20_000  # model.js MAX_EXCHANGES


@pytest.fixture
def served() -> Iterator[tuple[Hub, str]]:
    hub = Hub(buffer_size=1000, client_queue_size=4 * CHUNK)
    with run_server(make_app(hub, Inspector(hub, prefix=PREFIX, token=TOKEN))) as url:
        yield hub, url


_WATCH = """() => {
    window.__flood = { longTasks: [], frames: [], start: performance.now(), end: null };
    new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) window.__flood.longTasks.push(entry.duration);
    }).observe({ type: "longtask" });
    const frame = (t) => {
        window.__flood.frames.push(t);
        if (window.__flood.end === null) requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
}"""

_REPORT = """() => {
    const flood = window.__flood;
    flood.end = performance.now();
    const gaps = flood.frames.slice(1).map((t, i) => t - flood.frames[i]);
    return {
        elapsed: flood.end - flood.start,
        longTasks: flood.longTasks.length,
        blocked: flood.longTasks.reduce((sum, d) => sum + d, 0),
        longestTask: Math.max(0, ...flood.longTasks),
        frames: flood.frames.length,
        longestGap: Math.max(0, ...gaps),
        rowsInDom: document.querySelectorAll("#rows .row").length,
    };
}"""


def test_a_flood_of_100k_exchanges_keeps_the_page_responsive(served: tuple[Hub, str], page: Any) -> None:
    """100k distinct exchanges (the worst case: no two collapse): the main thread is free most of the time, the
    DOM holds only the visible rows, the newest 20,000 exchanges are kept, and the keyboard still works."""
    hub, base = served
    page.set_viewport_size({"width": 1440, "height": 900})
    open_inspector(page, base)
    page.evaluate(_WATCH)
    template = make_record()
    newest_row = page.locator("#rows .row").first
    for start in range(0, FLOOD, CHUNK):
        for index in range(start, start + CHUNK):
            hub.publish(
                {
                    **template,
                    "exchange_id": f"f{index}",
                    "path": f"/flood/{index}",
                    "url": f"http://127.0.0.1:8000/flood/{index}",
                    "ts": time.time(),
                }
            )
        # Paced by what the page shows (the newest row), so the server's per-client queue never overflows.
        expect(newest_row).to_contain_text(f"/flood/{start + CHUNK - 1}", timeout=120_000)
    report = page.evaluate(_REPORT)
    print(f"\nflood report: {report}")

    expect(page.locator("#shown-count")).to_have_text(f"{HELD} rows")
    expect(page.locator("#s-exchanges")).to_have_text(str(HELD))
    assert report["rowsInDom"] < 100, "only the visible rows (and a few either side) exist"
    assert report["blocked"] < 0.5 * report["elapsed"], report

    # Still responsive: the keyboard moves the selection and the detail pane follows.
    page.locator("#rows").focus()
    page.keyboard.press("j")
    expect(page.locator("#detail .d-url")).to_have_text(f"http://127.0.0.1:8000/flood/{FLOOD - 1}")
    page.keyboard.press("j")
    expect(page.locator("#detail .d-url")).to_have_text(f"http://127.0.0.1:8000/flood/{FLOOD - 2}")
    page.keyboard.press("G")  # the oldest exchange still held
    expect(page.locator("#detail .d-url")).to_have_text(f"http://127.0.0.1:8000/flood/{FLOOD - HELD}")
    expect(page.locator("#rows [aria-selected=true]")).to_contain_text(f"/flood/{FLOOD - HELD}")

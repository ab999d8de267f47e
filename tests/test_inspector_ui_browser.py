"""The inspector page in real headless Chromium, read as a user reads it: hops, warnings, reproducers, layout, crash.

Records are published into a real Hub served by real uvicorn (shaped like the middleware's, see make_record),
or come from a real app behind CORSTraceMiddleware driven by a real page on another origin.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from corstrace._inspector import Hub, Inspector
from tests.support import run_server
from tests.test_inspector import PREFIX, TOKEN, make_app, make_record
from tests.test_inspector_browser import expect, open_inspector

pytestmark = pytest.mark.browser

API = "http://127.0.0.1:8000"
PAGE_ORIGIN = "http://localhost:5173"


@pytest.fixture
def served() -> Iterator[tuple[Hub, str]]:
    hub = Hub(buffer_size=500, client_queue_size=500)
    with run_server(make_app(hub, Inspector(hub, prefix=PREFIX, token=TOKEN))) as url:
        yield hub, url


def publish(hub: Hub, *records: dict[str, Any]) -> None:
    for record in records:
        hub.publish(record)


def section(page: Any, title: str) -> Any:
    """The detail pane's section headed ``title`` (its visible heading text)."""
    return page.locator("#detail section").filter(has=page.get_by_role("heading", name=title, exact=True))


def redirect_records(exchange_id: str, warning_on_final: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """GET /items/ -> 307 -> GET /items -> 200, with the engine's `cannot read location` caveat on the 307."""
    first = make_record(
        exchange_id=exchange_id,
        url=f"{API}/items/",
        path="/items/",
        status=307,
        response_headers=[["location", f"{API}/items"], ["access-control-allow-origin", PAGE_ORIGIN]],
        warnings=[
            {
                "code": "header_not_exposed",
                "message": "The page cannot read `location`: not listed in `Access-Control-Expose-Headers`. "
                "Send `Access-Control-Expose-Headers: location`.",
            }
        ],
    )
    second = make_record(
        exchange_id=exchange_id,
        url=f"{API}/items",
        path="/items",
        redirected_from=f"{API}/items/",
        warnings=[warning_on_final] if warning_on_final else [],
    )
    return [first, second]


# --- redirects ---------------------------------------------------------------------------------------


def test_a_redirected_exchange_shows_every_hop_in_order_with_its_status(served: tuple[Hub, str], page: Any) -> None:
    hub, base = served
    open_inspector(page, base)
    publish(hub, *redirect_records("r1"))
    row = page.locator("#rows .row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("/items/ → /items")
    expect(row).to_contain_text("307→200")
    expect(row).to_contain_text("1 redirect")
    row.click()
    hops = section(page, "Hops").locator("li")
    expect(hops).to_have_count(2)
    expect(hops.nth(0)).to_contain_text("Hop 1 GET /items/ → 307")
    expect(hops.nth(0)).to_contain_text(f"Location: {API}/items")
    expect(hops.nth(1)).to_contain_text("Hop 2 GET /items → 200")
    expect(section(page, "Hop 1")).to_contain_text("GET /items/ → 307")
    expect(section(page, "Hop 2")).to_contain_text(f"Redirected from {API}/items/")


def test_repeats_collapse_only_when_the_exchange_has_the_same_shape(served: tuple[Hub, str], page: Any) -> None:
    """After 'fire them all' twice: the redirected exchange and the plain GET /items are two ×2 rows, both reachable."""
    hub, base = served
    open_inspector(page, base)
    plain = [make_record(exchange_id=f"p{i}", url=f"{API}/items", path="/items") for i in range(2)]
    publish(hub, *redirect_records("r1"), plain[0], *redirect_records("r2"), plain[1])
    rows = page.locator("#rows .row")
    expect(rows).to_have_count(2)
    expect(rows.filter(has_text="/items/ → /items")).to_contain_text("×2")
    expect(rows.filter(has_text="307")).to_have_count(1)
    plain_row = rows.filter(has_not_text="/items/")
    expect(plain_row).to_contain_text("×2")
    plain_row.click()
    expect(page.locator("#detail")).not_to_contain_text("Hop 1")


def test_a_followed_redirect_is_not_warned_about_and_warnings_have_their_own_section(
    served: tuple[Hub, str], page: Any
) -> None:
    """No `cannot read location` on the 307 (a page never sees it); a real warning on the last hop is listed."""
    hub, base = served
    open_inspector(page, base)
    total = {
        "code": "header_not_exposed",
        "message": "The page cannot read `x-total-count`: not listed in `Access-Control-Expose-Headers`. "
        "Send `Access-Control-Expose-Headers: x-total-count`.",
    }
    publish(hub, *redirect_records("r1", warning_on_final=total))
    row = page.locator("#rows .row")
    expect(row.locator(".c-verdict")).to_have_text("warning")
    row.click()
    warnings = section(page, "Warnings")
    expect(warnings).to_contain_text("The page cannot read x-total-count")
    expect(warnings).to_contain_text("(Hop 2)")
    expect(page.locator("#detail")).not_to_contain_text("cannot read location", use_inner_text=True)


def test_a_redirect_with_nothing_else_to_say_has_no_warnings_section(served: tuple[Hub, str], page: Any) -> None:
    hub, base = served
    open_inspector(page, base)
    publish(hub, *redirect_records("r1"))
    row = page.locator("#rows .row")
    expect(row.locator(".c-verdict")).to_have_text("allowed")
    expect(page.locator("#s-warnings")).to_have_text("0")
    row.click()
    expect(section(page, "Hops")).to_be_visible()
    expect(section(page, "Warnings")).to_have_count(0)


def test_curl_of_a_redirected_exchange_starts_at_the_original_url(served: tuple[Hub, str], page: Any) -> None:
    hub, base = served
    open_inspector(page, base)
    publish(hub, *redirect_records("r1"))
    page.locator("#rows .row").click()
    reproduce = section(page, "Reproduce")
    expect(reproduce).to_contain_text("curl — request, following its redirects")
    expect(reproduce).to_contain_text(f"curl -i -g -L '{API}/items/'")


# --- noise ---------------------------------------------------------------------------------------------

CREDENTIALED = {
    "verdict": "blocked",
    "reason": "InvalidAllowCredentials",
    "browser_message": "Access to fetch at … blocked: … must be 'true' when the request's credentials mode is …",
    "firefox_message": None,
    "fix": 'app.add_middleware(CORSMiddleware, allow_origins=["http://localhost:5173"], allow_credentials=True)',
}


def test_the_credentials_caveat_shows_only_where_credentials_can_matter(served: tuple[Hub, str], page: Any) -> None:
    hub, base = served
    open_inspector(page, base)
    publish(
        hub,
        make_record(exchange_id="quiet", path="/quiet", if_credentialed=CREDENTIALED, request_headers=[]),
        make_record(
            exchange_id="cookie",
            path="/cookie",
            if_credentialed=CREDENTIALED,
            request_headers=[["origin", PAGE_ORIGIN], ["cookie", "[redacted]"]],
        ),
    )
    rows = page.locator("#rows .row")
    expect(rows.filter(has_text="/cookie").locator(".c-reason")).to_have_text(
        "if credentialed: InvalidAllowCredentials"
    )
    expect(rows.filter(has_text="/quiet").locator(".c-reason")).to_have_text("")
    rows.filter(has_text="/quiet").click()
    # Folded: there if asked for, not in the way.
    expect(page.locator("#detail")).to_contain_text("If the page sent credentials (nothing here suggests it does)")
    folded = page.locator("#detail details", has_text="If the page sent credentials")
    expect(folded.get_by_text("must be 'true' when the request's credentials mode")).not_to_be_visible()
    rows.filter(has_text="/cookie").click()
    expect(section(page, "If the request carries credentials")).to_contain_text("must be 'true'")


def test_a_405_whose_allow_is_not_exposed_is_not_a_warning_row(served: tuple[Hub, str], page: Any) -> None:
    hub, base = served
    open_inspector(page, base)
    publish(
        hub,
        make_record(
            status=405,
            warnings=[
                {
                    "code": "header_not_exposed",
                    "message": "The page cannot read `allow`: not listed in `Access-Control-Expose-Headers`. "
                    "Send `Access-Control-Expose-Headers: allow`.",
                }
            ],
        ),
    )
    row = page.locator("#rows .row")
    expect(row.locator(".c-verdict")).to_have_text("allowed")
    expect(page.locator("#s-warnings")).to_have_text("0")
    row.click()
    expect(section(page, "Notes")).to_contain_text("The page cannot read allow")
    expect(section(page, "Warnings")).to_have_count(0)


# --- what the detail pane shows from the record --------------------------------------------------------


def test_the_preflight_cache_time_is_the_engines_not_a_reparse(served: tuple[Hub, str], page: Any) -> None:
    """`Access-Control-Max-Age: 10abc` is cached 5 s by Chromium (the engine says so); the page used to say 10 s."""
    hub, base = served
    open_inspector(page, base)
    publish(
        hub,
        make_record(
            preflight=True,
            method="OPTIONS",
            requested_method="PUT",
            response_headers=[["access-control-max-age", "10abc"]],
            preflight_cache_seconds=5,
        ),
    )
    page.locator("#rows .row").click()
    expect(page.locator("#detail")).to_contain_text("Chromium caches this preflight for 5 s.")
    expect(page.locator("#detail")).not_to_contain_text("for 10 s")


def test_console_lines_for_fetch_xhr_and_firefox_are_all_shown(served: tuple[Hub, str], page: Any) -> None:
    hub, base = served
    open_inspector(page, base)
    fetch_line = "Access to fetch at 'http://127.0.0.1:8000/api/items' from origin … has been blocked by CORS policy: …"
    xhr_line = "Access to XMLHttpRequest at 'http://127.0.0.1:8000/api/items' from origin … has been blocked: …"
    firefox = [
        "Cross-Origin Request Blocked: … (Reason: CORS header missing).",
        "… (Reason: CORS request did not succeed).",
    ]
    publish(
        hub,
        make_record(
            verdict="blocked",
            reason="MissingAllowOriginHeader",
            browser_message=fetch_line,
            browser_message_xhr=xhr_line,
            firefox_message=firefox[0],
            firefox_console=firefox,
            process={"pid": 4242, "name": "uvicorn worker 2"},
        ),
    )
    page.locator("#rows .row").click()
    console = section(page, "Browser console (Chromium)")
    expect(console.get_by_role("heading", name="fetch()", exact=True)).to_be_visible()
    expect(console.get_by_role("heading", name="XMLHttpRequest / axios", exact=True)).to_be_visible()
    expect(console).to_contain_text(fetch_line)
    expect(console).to_contain_text(xhr_line)
    page.get_by_text("Firefox says (2 lines)").click()
    for line in firefox:
        expect(page.locator("#detail details", has_text="Firefox says").get_by_text(line)).to_be_visible()
    expect(page.locator("#detail .d-meta")).to_contain_text("uvicorn worker 2 (pid 4242)")


def test_copy_fix_copies_the_code_not_the_prose(served: tuple[Hub, str], page: Any) -> None:
    hub, base = served
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_inspector(page, base)
    call = 'app.add_middleware(CORSMiddleware, allow_origins=["http://localhost:5173"], allow_methods=["GET", "PUT"])'
    publish(
        hub,
        make_record(
            exchange_id="prose",
            path="/prose",
            verdict="blocked",
            reason="MethodDisallowedByPreflightResponse",
            fix=f"Allow PUT in CORSMiddleware: {call}.",
        ),
        make_record(
            exchange_id="code",
            path="/code",
            verdict="blocked",
            reason="MissingAllowOriginHeader",
            fix="Send `Access-Control-Allow-Origin` for this origin.",
            fix_code="Access-Control-Allow-Origin: http://localhost:5173\nVary: Origin",
        ),
    )
    page.locator("#rows .row", has_text="/prose").click()
    section(page, "Fix").get_by_role("button", name="Copy fix").click()
    assert page.evaluate("navigator.clipboard.readText()") == call
    page.locator("#rows .row", has_text="/code").click()
    section(page, "Fix").get_by_role("button", name="Copy fix").click()
    assert (
        page.evaluate("navigator.clipboard.readText()")
        == "Access-Control-Allow-Origin: http://localhost:5173\nVary: Origin"
    )


# --- crash pane ----------------------------------------------------------------------------------------

SITE = "/home/dev/.venv/lib/python3.12/site-packages"
APP = "/home/dev/projects/shop-with-a-rather-long-name/backend/app"
TRACEBACK = "\n".join(
    [
        f'  File "{SITE}/anyio/to_thread.py", line 65, in run_sync',
        "    return await get_async_backend().run_sync_in_worker_thread(",
        "           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
        f'  File "{SITE}/anyio/_backends/_asyncio.py", line 2779, in run_sync_in_worker_thread',
        "    return await future",
        f'  File "{SITE}/anyio/_backends/_asyncio.py", line 1124, in run',
        "    result = context.run(func, *args)",
        f'  File "{SITE}/fastapi/routing.py", line 244, in run_endpoint_function',
        "    return function(**arguments)",
        f'  File "{APP}/api/v1/endpoints/dashboard.py", line 118, in crash',
        "    return load_dashboard(some_argument_with_a_long_name=True, another_argument_with_a_long_name=None)",
        "           ^^^^^^^^^^^^^^",
        f'  File "{APP}/services/dashboard.py", line 110, in load_dashboard',
        '    raise RuntimeError("database is down")',
        "RuntimeError: database is down",
    ]
)


def crash_record(**exception: Any) -> dict[str, Any]:
    return make_record(
        path="/crash",
        status=500,
        verdict="blocked",
        reason="MissingAllowOriginHeader",
        layer="ServerErrorMiddleware",
        exception={
            "type": "RuntimeError",
            "message": "database is down",
            "where": "app/services/dashboard.py:110",
            "traceback": TRACEBACK,
            **exception,
        },
    )


def assert_no_sideways_scroll(page: Any) -> None:
    overflowing = page.evaluate(
        """() => [...document.querySelectorAll("#detail, #detail pre, #detail code, #detail li")]
            .filter((el) => el.getClientRects().length && el.scrollWidth > el.clientWidth + 1
                    && getComputedStyle(el).display !== "inline")
            .map((el) => el.textContent.slice(0, 60))"""
    )
    assert overflowing == []


@pytest.mark.parametrize("width", [1440, 800])
def test_the_crash_pane_shows_the_apps_frames_first_and_folds_library_frames(
    served: tuple[Hub, str], page: Any, width: int
) -> None:
    hub, base = served
    page.set_viewport_size({"width": width, "height": 900})
    open_inspector(page, base)
    publish(hub, crash_record())
    page.locator("#rows .row").click()
    crash = section(page, "Exception")
    expect(crash).to_contain_text("RuntimeError: database is down")
    frames = crash.locator("ol.frames").first.locator("li")
    expect(frames).to_have_count(2)
    expect(frames.nth(0)).to_contain_text("endpoints/dashboard.py:118 in crash")
    expect(frames.nth(1)).to_contain_text("services/dashboard.py:110 in load_dashboard raised here")
    expect(frames.nth(1)).to_contain_text('raise RuntimeError("database is down")')
    library = crash.get_by_text("4 library frames (anyio, fastapi)")
    expect(library).to_be_visible()
    folded = crash.locator("details", has_text="library frames")
    expect(folded.get_by_text("in run_sync_in_worker_thread")).not_to_be_visible()
    # The app's frames come before the library's.
    app_box = frames.nth(0).bounding_box()
    library_box = library.bounding_box()
    assert app_box is not None and library_box is not None and app_box["y"] < library_box["y"]
    library.click()
    expect(folded.get_by_text("in run_sync_in_worker_thread")).to_be_visible()
    page.get_by_text("Full traceback").click()
    assert_no_sideways_scroll(page)


def test_the_crash_pane_uses_exception_frames_when_the_record_has_them(served: tuple[Hub, str], page: Any) -> None:
    hub, base = served
    open_inspector(page, base)
    frames = [
        {"file": f"{SITE}/starlette/routing.py", "line": 73, "function": "app", "code": "await f()", "library": True},
        {"file": "app/main.py", "line": 12, "function": "crash", "code": "1 / 0", "library": False},
    ]
    publish(hub, crash_record(frames=frames, traceback="(not parsed when frames are given)"))
    page.locator("#rows .row").click()
    crash = section(page, "Exception")
    expect(crash.locator("ol.frames").first).to_contain_text("app/main.py:12 in crash raised here")
    expect(crash).to_contain_text("1 library frame (starlette)")


# --- layout --------------------------------------------------------------------------------------------

LONG_ORIGIN = "http://frontend-preview-branch-1234.dev.example.internal:5173"


def clipped_cells(page: Any) -> list[str]:
    """Status and reason cells (and column headings) whose text the page cuts off."""
    result: list[str] = page.evaluate(
        """() => [...document.querySelectorAll(
                "#rows .row .c-status, #rows .row .c-reason, #rows .row .c-verdict, #rows .row .c-method,"
                + " .thead > span")]
            .filter((el) => getComputedStyle(el).display !== "none")
            .filter((el) => el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1)
            .map((el) => el.textContent)"""
    )
    return result


def port_visible(page: Any, port: str) -> bool:
    """Whether the characters of ``port`` in an origin cell are painted inside that cell."""
    visible: bool = page.evaluate(
        """(port) => [...document.querySelectorAll("#rows .row .c-origin")].every((cell) => {
            const tail = cell.querySelector(".elide-tail");
            const text = tail.firstChild;
            const at = text.textContent.lastIndexOf(port);
            if (at < 0) return false;
            const range = document.createRange();
            range.setStart(text, at);
            range.setEnd(text, at + port.length);
            const box = range.getBoundingClientRect();
            const frame = cell.getBoundingClientRect();
            return box.width > 0 && box.left >= frame.left - 0.5 && box.right <= frame.right + 0.5;
        })""",
        port,
    )
    return visible


@pytest.mark.parametrize("width", [1440, 1100, 800])
def test_the_list_shows_what_tells_rows_apart_from_800_px_up(served: tuple[Hub, str], page: Any, width: int) -> None:
    """The port of a long origin, the statuses of every hop and the full reason stay visible; no sideways scroll."""
    hub, base = served
    page.set_viewport_size({"width": width, "height": 900})
    open_inspector(page, base)
    publish(
        hub,
        make_record(
            exchange_id="pf",
            preflight=True,
            method="OPTIONS",
            requested_method="PUT",
            origin=LONG_ORIGIN,
            verdict="blocked",
            reason="PreflightMissingAllowOriginHeader",
            path="/api/v2/organisations/acme/projects/website/items/12345",
            status=400,
        ),
        *[{**record, "origin": LONG_ORIGIN.replace("5173", "5174")} for record in redirect_records("r1")],
    )
    rows = page.locator("#rows .row")
    expect(rows).to_have_count(2)
    for heading in ("Origin", "Method", "Path", "Status", "Verdict", "Reason"):
        expect(page.locator(".thead").get_by_text(heading, exact=True)).to_be_visible()
    assert port_visible(page, ":517")
    assert clipped_cells(page) == []
    expect(rows.filter(has_text="307→200")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


# --- a real app, a real page -----------------------------------------------------------------------------


def _items(request: Request) -> JSONResponse:
    return JSONResponse({"items": []})


def _frontend(request: Request) -> HTMLResponse:
    return HTMLResponse("<!doctype html><title>frontend</title><p>frontend</p>")


@pytest.fixture
def real_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """(api, frontend origin): an API behind CORSMiddleware (GET only, Content-Type only) + CORSTraceMiddleware."""
    from corstrace.middleware import CORSTraceMiddleware

    monkeypatch.setenv("CORSTRACE_INSPECTOR_TOKEN", TOKEN)
    with run_server(Starlette(routes=[Route("/", _frontend)])) as frontend:
        frontend_origin = frontend.replace("127.0.0.1", "localhost")
        api_app = Starlette(
            routes=[Route("/items", _items), Route("/me", _items)],
            middleware=[
                Middleware(CORSTraceMiddleware, inspector=True),
                Middleware(CORSMiddleware, allow_origins=[frontend_origin], allow_headers=["Content-Type"]),
            ],
        )
        with run_server(api_app) as api:
            yield api, frontend_origin


def test_real_redirects_are_one_exchange_per_fetch(real_app: tuple[str, str], page: Any) -> None:
    """Fetching /items/ (307 to /items) and /items twice each: two rows of two, the redirect with both hops."""
    api, frontend_origin = real_app
    open_inspector(page, api)
    other = page.context.new_page()
    other.goto(frontend_origin + "/")
    other.evaluate(
        """async (api) => {
            for (let i = 0; i < 2; i++) {
                await fetch(api + "/items/");
                await fetch(api + "/items");
            }
        }""",
        api,
    )
    rows = page.locator("#rows .row")
    expect(rows).to_have_count(2)
    redirected = rows.filter(has_text="/items/ → /items")
    expect(redirected).to_contain_text("×2")
    expect(redirected).to_contain_text("307→200")
    redirected.click()
    expect(section(page, "Hops").locator("li")).to_have_text(
        [re_hop("1", "/items/", "307"), re_hop("2", "/items", "200")]
    )
    expect(page.locator("#detail")).not_to_contain_text("cannot read", use_inner_text=True)


def re_hop(number: str, path: str, status: str) -> Any:
    return re.compile(rf"^Hop {number} GET {re.escape(path)} → {status}\b")


def test_the_fetch_snippet_of_a_blocked_preflight_reproduces_it_in_chromium(
    real_app: tuple[str, str], page: Any
) -> None:
    """Pasted into a page on the frontend's origin, the copied fetch() sends the same preflight and is blocked the same.

    It used to set `authorization: "…"`: fetch() threw "non ISO-8859-1 code point" and sent nothing.
    """
    api, frontend_origin = real_app
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_inspector(page, api)
    other = page.context.new_page()
    other.goto(frontend_origin + "/")
    evaluate_pasted = """async (code) => {
        const AsyncFunction = (async () => {}).constructor;
        try { await new AsyncFunction(code)(); return "no error"; } catch (error) { return String(error); }
    }"""
    first = other.evaluate(
        evaluate_pasted, f'await fetch("{api}/me", {{headers: {{Authorization: "Bearer s3cret"}}}});'
    )
    assert first == "TypeError: Failed to fetch"
    row = page.locator("#rows .row", has_text="/me")
    expect(row.locator(".c-reason")).to_contain_text("PreflightInvalidStatus")
    row.click()
    section(page, "Reproduce").get_by_role("button", name="Copy fetch").click()
    snippet = page.evaluate("navigator.clipboard.readText()")
    assert "s3cret" not in snippet
    assert other.evaluate(evaluate_pasted, snippet) == "TypeError: Failed to fetch"
    # The same preflight reached the server again: the same exchange shape, now twice.
    expect(row).to_contain_text("×2")

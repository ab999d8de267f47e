"""``corstrace demo`` and the example apps it runs (examples/app.py, examples/frontend.py)."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from corstrace import _demo
from tests.support import run_server

ROOT = Path(__file__).resolve().parent.parent
FRONTEND_ORIGIN = "http://localhost:3000"  # examples/app.py's default
BANNER_URL = re.compile(r"^\s+(frontend|API|inspector)\s+(http\S+)$")
# A generous bound on waiting for output that is coming anyway: it only turns a hang into a failure.
OUTPUT_DEADLINE_SECONDS = 60


# --- the example apps, in-process --------------------------------------------------------------


# Real uvicorn servers rather than Starlette's httpx.Client, which warns (an error here) when used
# with httpx; `import examples.app` is what `uvicorn examples.app:app` does.
@pytest.fixture(scope="module")
def api() -> Iterator[httpx.Client]:
    from examples.app import app

    with run_server(app) as url, httpx.Client(base_url=url) as client:
        yield client


@pytest.fixture(scope="module")
def frontend() -> Iterator[httpx.Client]:
    from examples.frontend import app

    with run_server(app) as url, httpx.Client(base_url=url) as client:
        yield client


def _preflight(method: str, headers: str = "") -> dict[str, str]:
    request = {"Origin": FRONTEND_ORIGIN, "Access-Control-Request-Method": method}
    if headers:
        request["Access-Control-Request-Headers"] = headers
    return request


def test_simple_get_is_allowed_for_the_frontend(api: httpx.Client) -> None:
    """GET /items from the frontend's origin carries Access-Control-Allow-Origin for it."""
    response = api.get("/items", headers={"Origin": FRONTEND_ORIGIN})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == FRONTEND_ORIGIN


def test_json_post_preflight_passes(api: httpx.Client) -> None:
    """The preflight for a JSON POST succeeds: POST and Content-Type are allowed."""
    response = api.options("/items", headers=_preflight("POST", "content-type"))
    assert response.status_code == 200


def test_json_post_creates_an_item(api: httpx.Client) -> None:
    """POST /items with a JSON body answers 201 with the new item."""
    response = api.post("/items", json={"name": "monitor", "price": 199}, headers={"Origin": FRONTEND_ORIGIN})
    assert (response.status_code, response.json()["name"]) == (201, "monitor")


def test_put_preflight_is_rejected(api: httpx.Client) -> None:
    """Imperfection 1: the preflight for PUT fails, PUT is not in allow_methods."""
    response = api.options("/items/1", headers=_preflight("PUT", "content-type"))
    assert response.status_code == 400


def test_authorization_preflight_is_rejected(api: httpx.Client) -> None:
    """Imperfection 2: the preflight for a request with Authorization fails."""
    response = api.options("/me", headers=_preflight("GET", "authorization"))
    assert response.status_code == 400


def test_session_does_not_allow_credentials(api: httpx.Client) -> None:
    """Imperfection 3: GET /session answers without Access-Control-Allow-Credentials."""
    response = api.get("/session", headers={"Origin": FRONTEND_ORIGIN, "Cookie": "session=abc"})
    assert response.json() == {"logged_in": True, "session": "abc"}
    assert "access-control-allow-credentials" not in response.headers


def test_me_requires_a_bearer_token(api: httpx.Client) -> None:
    """GET /me without Authorization answers 401."""
    assert api.get("/me").status_code == 401


def test_me_accepts_a_bearer_token(api: httpx.Client) -> None:
    """GET /me with a bearer token answers 200."""
    assert api.get("/me", headers={"Authorization": "Bearer demo-token"}).status_code == 200


def test_crash_is_a_500_without_cors_headers(api: httpx.Client) -> None:
    """GET /crash escapes CORSMiddleware: the 500 has no Access-Control-Allow-Origin."""
    response = api.get("/crash", headers={"Origin": FRONTEND_ORIGIN})
    assert response.status_code == 500
    assert "access-control-allow-origin" not in response.headers


def test_trailing_slash_redirects_with_cors_headers(api: httpx.Client) -> None:
    """GET /items/ is a 307 to /items that the browser may follow (it carries the CORS headers)."""
    response = api.get("/items/", headers={"Origin": FRONTEND_ORIGIN}, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (307, str(api.base_url.join("/items")))
    assert response.headers["access-control-allow-origin"] == FRONTEND_ORIGIN


def test_frontend_serves_a_button_per_request(frontend: httpx.Client) -> None:
    """The page has one card per request that app.js knows how to send."""
    page = frontend.get("/").text
    script = frontend.get("/app.js").text
    cards = re.findall(r'data-request="([a-z-]+)"', page)
    assert cards == ["simple-get", "json-post", "put", "authorization", "credentials", "crash", "redirect"]
    for card in cards:
        assert re.search(rf'^\s+"?{card}"?: \{{ path:', script, re.MULTILINE), card


def test_frontend_serves_its_stylesheet(frontend: httpx.Client) -> None:
    """style.css is served with a CSS content type."""
    response = frontend.get("/style.css")
    assert (response.status_code, response.headers["content-type"].split(";")[0]) == (200, "text/css")


def test_frontend_config_points_at_the_api_from_the_environment(
    frontend: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/config.js hands the page CORSTRACE_DEMO_API_URL, read per request."""
    monkeypatch.setenv("CORSTRACE_DEMO_API_URL", "http://127.0.0.1:8123/")
    monkeypatch.delenv("CORSTRACE_DEMO_INSPECTOR_URL", raising=False)
    body = frontend.get("/config.js").text
    assert '"apiUrl": "http://127.0.0.1:8123"' in body
    assert '"inspectorUrl": "http://127.0.0.1:8123/_corstrace/"' in body


# --- how the demo finds and runs the examples ----------------------------------------------------


def test_examples_are_found_in_the_source_tree() -> None:
    """From a checkout or an editable install, the demo uses the repository's examples/."""
    assert _demo.examples_dir() == ROOT / "examples"


def test_load_example_loads_by_path() -> None:
    """load_example imports an example by file path, so it works without `examples` on sys.path."""
    module = _demo.load_example("frontend", ROOT / "examples")
    assert Path(module.__file__ or "") == ROOT / "examples" / "frontend.py"


def test_loopback_serves_the_page_on_localhost_and_the_api_on_127_0_0_1() -> None:
    """On loopback the two URLs use different hosts, so the page's calls are cross-origin."""
    assert _demo.url_hosts("127.0.0.1") == ("localhost", "127.0.0.1")


def test_other_hosts_are_used_as_given() -> None:
    """On a LAN address both URLs use it (the ports still make them different origins)."""
    assert _demo.url_hosts("192.168.1.20") == ("192.168.1.20", "192.168.1.20")


def test_bind_reports_a_port_in_use_in_one_line() -> None:
    """Binding a port something listens on raises DemoError naming the option to change."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(_demo.DemoError, match=f"port {port} on 127.0.0.1 is already in use.*--api-port"):
            _demo.bind("127.0.0.1", port, "--api-port")


def _blocked_event(**fields: Any) -> dict[str, Any]:
    event = {
        "event": "cors.blocked",
        "level": "warning",
        "timestamp": "12:00:00",
        "verdict": "blocked",
        "method": "GET",
        "path": "/crash",
        "origin": "http://localhost:3000",
        "status": 500,
        "reason": "MissingAllowOriginHeader",
        "preflight": False,
        "browser_message": "Access to fetch ... has been blocked by CORS policy",
        "explanation": "The app raised before any response started.",
        "fix": "Fix the RuntimeError.",
        "request_headers": [["origin", "http://localhost:3000"]],
        "exception": None,
    }
    event.update(fields)
    return event


def test_terminal_view_shortens_a_blocked_exchange() -> None:
    """A cors.blocked event becomes a headline plus the browser's message, the why and the fix."""
    view = _demo.terminal_view(colour=False)(None, "warning", _blocked_event())
    assert view == {
        "timestamp": "12:00:00",
        "level": "warning",
        "event": "cors.blocked GET /crash -> 500 from http://localhost:3000 (MissingAllowOriginHeader)\n"
        "    browser: Access to fetch ... has been blocked by CORS policy\n"
        "    why:     The app raised before any response started.\n"
        "    fix:     Fix the RuntimeError.",
    }


def test_terminal_view_names_the_crash() -> None:
    """The exception's type, message and file:line are shown as one "crash:" line."""
    crash = {
        "exception": "Traceback ...\nRuntimeError: database is down",
        "exception_type": "RuntimeError",
        "exception_message": "database is down",
        "exception_where": "examples/app.py:110",
    }
    view = _demo.terminal_view(colour=False)(None, "warning", _blocked_event(**crash))
    assert "    crash:   RuntimeError: database is down at examples/app.py:110\n" in view["event"]


def test_terminal_view_drops_the_inspector_announcement() -> None:
    """The middleware's "open the inspector" event is dropped: the banner has the real URL."""
    with pytest.raises(structlog.DropEvent):
        _demo.terminal_view(colour=False)(None, "info", {"event": "corstrace.inspector", "path": "/_corstrace/"})


def test_terminal_view_passes_other_events_through() -> None:
    """Events that are not corstrace's are left for ConsoleRenderer as they are."""
    event = {"event": "user signed in", "level": "info", "user": "ada"}
    assert _demo.terminal_view(colour=False)(None, "info", dict(event)) == event


def test_terminal_view_shows_repeats_as_counted() -> None:
    """A blocked leg logged after flood control counted identical ones says how many were not shown."""
    view = _demo.terminal_view(colour=False)(None, "warning", _blocked_event(repeats_suppressed=7))
    assert view["event"].splitlines()[0].endswith("; 7 identical leg(s) before this one not shown")


# --- `corstrace demo` as a user runs it ----------------------------------------------------------


@dataclass
class DemoProcess:
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    ended: bool = False
    urls: dict[str, str] = field(default_factory=dict)

    def next_line(self) -> str | None:
        """The next line of output (stdout and stderr), or None at end of output."""
        if self.ended:
            return None
        try:
            line = self.lines.get(timeout=OUTPUT_DEADLINE_SECONDS)
        except queue.Empty:
            raise AssertionError("corstrace demo went quiet:\n" + "".join(self.output)) from None
        if line is None:
            self.ended = True
        else:
            self.output.append(line)
        return line

    def banner_urls(self) -> dict[str, str]:
        """Read output up to the banner's inspector line; {"frontend": ..., "API": ..., "inspector": ...}."""
        urls: dict[str, str] = {}
        while True:
            line = self.next_line()
            if line is None:
                raise AssertionError("corstrace demo exited before its banner:\n" + "".join(self.output))
            if line.strip().startswith("inspector"):
                match = BANNER_URL.match(line.rstrip("\n"))
                if match:
                    urls["inspector"] = match.group(2)
                return urls
            match = BANNER_URL.match(line.rstrip("\n"))
            if match:
                urls[match.group(1)] = match.group(2)

    def wait_for(self, text: str) -> str:
        """Read output until a line containing ``text``; return that line."""
        while True:
            line = self.next_line()
            if line is None:
                raise AssertionError(f"corstrace demo never printed {text!r}:\n" + "".join(self.output))
            if text in line:
                return line

    def rest(self) -> str:
        """All output until the process closes it."""
        while self.next_line() is not None:
            pass
        return "".join(self.output)


def _spawn_demo(cache: Path, *args: str, **environ: str) -> DemoProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "XDG_CACHE_HOME": str(cache), **environ}
    process = subprocess.Popen(
        [sys.executable, "-m", "corstrace", "demo", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one stream, drained by one thread: a full stderr pipe cannot block it
        text=True,
    )
    demo = DemoProcess(process)

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            demo.lines.put(line)
        demo.lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return demo


def _stop(demo: DemoProcess) -> int:
    """Ctrl-C the demo, as a user would, and return its exit code."""
    if demo.process.poll() is None:
        demo.process.send_signal(signal.SIGINT)
    demo.rest()
    try:
        return demo.process.wait(timeout=OUTPUT_DEADLINE_SECONDS)
    finally:
        if demo.process.poll() is None:
            demo.process.kill()
            demo.process.wait()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    """A running `corstrace demo` on free ports, its banner read (``demo.urls``)."""
    running = _spawn_demo(tmp_path_factory.mktemp("cache"), "--api-port", "0", "--frontend-port", "0")
    try:
        running.urls = running.banner_urls()
        yield running
    finally:
        _stop(running)


def test_demo_banner_prints_the_frontend_and_api_urls(demo: DemoProcess) -> None:
    """The banner gives the page on localhost and the API on 127.0.0.1."""
    assert re.fullmatch(r"http://localhost:\d+/", demo.urls["frontend"])
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", demo.urls["API"])


def test_demo_frontend_serves_the_page(demo: DemoProcess) -> None:
    """The frontend URL serves the page with the buttons."""
    response = httpx.get(demo.urls["frontend"])
    assert response.status_code == 200
    assert 'data-request="simple-get"' in response.text


def test_demo_frontend_config_points_at_the_demo_api(demo: DemoProcess) -> None:
    """The page's config.js names the API the banner printed, whatever ports were picked."""
    body = httpx.get(demo.urls["frontend"] + "config.js").text
    assert f'"apiUrl": "{demo.urls["API"].rstrip("/")}"' in body


def test_demo_api_allows_the_demo_frontend(demo: DemoProcess) -> None:
    """The API answers GET /items for the frontend's origin, with its CORS header."""
    origin = demo.urls["frontend"].rstrip("/")
    response = httpx.get(demo.urls["API"] + "items", headers={"Origin": origin})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin


@pytest.mark.skipif(not (ROOT / "corstrace" / "_inspector").is_dir(), reason="the inspector is not built yet")
def test_demo_inspector_url_answers(demo: DemoProcess) -> None:
    """The banner's inspector URL (with its token) serves the inspector page."""
    assert "inspector" in demo.urls, "the banner has no inspector URL"
    # The token URL trades the token for a cookie and redirects: follow it like a browser.
    with httpx.Client(follow_redirects=True) as client:
        response = client.get(demo.urls["inspector"])
    assert response.status_code == 200


def test_demo_terminal_explains_a_blocked_preflight(demo: DemoProcess) -> None:
    """A rejected preflight shows up in the demo's terminal as a BLOCKED line with the fix."""
    origin = demo.urls["frontend"].rstrip("/")
    preflight = {"Origin": origin, "Access-Control-Request-Method": "PUT"}
    assert httpx.options(demo.urls["API"] + "items/1", headers=preflight).status_code == 400
    demo.wait_for("BLOCKED preflight OPTIONS /items/1 -> 400")
    assert "allow_methods=" in demo.wait_for("fix:")


def test_demo_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    """SIGINT stops both servers and the demo exits 0."""
    running = _spawn_demo(tmp_path, "--api-port", "0", "--frontend-port", "0")
    urls = running.banner_urls()
    assert httpx.get(urls["API"] + "items").status_code == 200
    assert _stop(running) == 0
    assert "corstrace demo: stopped." in running.rest()
    assert "Traceback" not in running.rest()


def test_demo_banner_says_when_the_inspector_is_off(tmp_path: Path) -> None:
    """With CORSTRACE_INSPECTOR=0 the banner says the inspector is off instead of printing a URL."""
    running = _spawn_demo(tmp_path, "--api-port", "0", "--frontend-port", "0", CORSTRACE_INSPECTOR="0")
    try:
        line = running.wait_for("  inspector  ")
    finally:
        _stop(running)
    assert line == "  inspector  (off: unset CORSTRACE_INSPECTOR to turn it on)\n"


def test_demo_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A port already taken gives a one-line error and exit code 2, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        running = _spawn_demo(tmp_path, "--api-port", str(port), "--frontend-port", "0")
        output = running.rest()
        assert running.process.wait(timeout=OUTPUT_DEADLINE_SECONDS) == 2
    assert output.startswith(f"corstrace demo: error: port {port} on 127.0.0.1 is already in use")
    assert output.endswith("choose another with --api-port\n")
    assert output.count("\n") == 1


# --- the page in a real browser ------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_demo() -> Iterator[str]:
    """The example API and frontend under real uvicorn servers; yields the page URL to open."""
    with run_server(_demo.load_example("frontend").app) as frontend_url:
        port = frontend_url.rsplit(":", 1)[1]
        page_origin = f"http://localhost:{port}"  # as the demo does: another host than the API's
        previous = os.environ.get(_demo.FRONTEND_ORIGIN_ENV)
        os.environ[_demo.FRONTEND_ORIGIN_ENV] = page_origin
        try:
            api_app = _demo.load_example("app").app  # reads the allowed origin when imported
        finally:
            if previous is None:
                del os.environ[_demo.FRONTEND_ORIGIN_ENV]
            else:
                os.environ[_demo.FRONTEND_ORIGIN_ENV] = previous
        with run_server(api_app) as api_url:
            yield f"{page_origin}/?api={api_url}"


@pytest.mark.browser
@pytest.mark.parametrize(
    ("card", "outcome", "text"),
    [
        ("simple-get", "ok", "200 OK"),
        ("json-post", "ok", "201 Created"),
        ("put", "blocked", "TypeError: Failed to fetch"),
        ("authorization", "blocked", "TypeError: Failed to fetch"),
        ("credentials", "blocked", "TypeError: Failed to fetch"),
        ("crash", "blocked", "TypeError: Failed to fetch"),
        ("redirect", "ok", "200 OK (redirected to /items)"),
    ],
)
def test_each_button_shows_what_the_browser_did(
    page: Any, served_demo: str, card: str, outcome: str, text: str
) -> None:
    """Clicking a card's button shows the outcome CORS gives that request."""
    from playwright.sync_api import expect

    page.goto(served_demo)
    section = page.locator(f'[data-request="{card}"]')
    section.locator("button").click()
    result = section.locator("output")
    expect(result).to_have_attribute("data-outcome", outcome)
    expect(result).to_contain_text(text)

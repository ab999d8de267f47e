"""`corstrace explain FILE.har`: HARs recorded from real Chromium sessions, DevTools-shaped ones, broken ones.

Uses the module-scoped Playwright browser, so no anyio test may live in this module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from corstrace.__main__ import main
from tests.support import run_server

ROOT = Path(__file__).resolve().parent.parent
PAGE = "http://app.test:3000"
API = "http://api.test:8000"


async def _api(request: Request) -> Response:
    """Echoes the Origin on /allowed and /items (PUT + x-api-key allowed); /blocked and /no-put are not."""
    origin = request.headers.get("origin", "")
    headers: dict[str, str] = {}
    if request.url.path in ("/allowed", "/items"):
        headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    if request.url.path == "/items":
        headers.update({"Access-Control-Allow-Methods": "PUT", "Access-Control-Allow-Headers": "x-api-key"})
    if request.url.path == "/no-put":
        headers = {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": "GET", "Vary": "Origin"}
    if request.method == "OPTIONS":
        return Response(status_code=204, headers=headers)
    return PlainTextResponse("ok", headers=headers)


_FETCHES = """async api => {
  const calls = [["/allowed", {}], ["/blocked", {}], ["/items", {method: "PUT", headers: {"X-Api-Key": "k"}}],
                 ["/no-put", {method: "PUT"}]];
  const out = [];
  for (const [path, init] of calls) {
    try { out.push((await fetch(api + path, init)).status); } catch (e) { out.push("failed"); }
  }
  return out;
}"""


async def _page(request: Request) -> Response:
    return HTMLResponse("<!doctype html><title>page</title>")


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    """The API, reached as `localhost` so it is another origin than the page on 127.0.0.1."""
    app = Starlette(routes=[Route("/{path:path}", _api, methods=["GET", "PUT", "OPTIONS"])])
    with run_server(app) as url:
        yield url.replace("127.0.0.1", "localhost")


@pytest.fixture(scope="module")
def recorded(browser: Any, api_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A HAR recorded by Chromium (Playwright's recorder) while a page fetched four API endpoints."""
    har = tmp_path_factory.mktemp("har") / "session.har"
    with run_server(Starlette(routes=[Route("/", _page)])) as page_url:
        context = browser.new_context(record_har_path=str(har))
        try:
            page = context.new_page()
            page.goto(page_url + "/")
            assert page.evaluate(_FETCHES, api_url) == [200, "failed", 200, "failed"]
        finally:
            context.close()  # writes the HAR
    return har, page_url


def _explain(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["explain", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _write(tmp_path: Path, data: Any, name: str = "x.har") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


@pytest.mark.browser
def test_recorded_har_lists_allowed_and_blocked(capsys: pytest.CaptureFixture[str], recorded: tuple[Path, str]) -> None:
    """A real Chromium HAR: the two allowed fetches are ALLOWED, the two the browser failed are BLOCKED, exit 1."""
    har, page_url = recorded
    code, data_out, _ = _explain(capsys, str(har), "--json")
    data = json.loads(data_out)
    states = [(item["method"], item["url"].rsplit("/", 1)[1], item["state"]) for item in data["items"]]
    assert code == 1
    assert states == [("GET", "allowed", "allowed"), ("GET", "blocked", "blocked"), ("PUT", "items", "allowed"),
                      ("PUT", "no-put", "blocked")]  # fmt: skip
    assert {item["origin"] for item in data["items"]} == {page_url}
    assert (data["summary"]["cross_origin"], data["summary"]["blocked"]) == (4, 2)


@pytest.mark.browser
def test_recorded_blocked_entry_prints_the_check_command_that_finds_why(
    capsys: pytest.CaptureFixture[str], recorded: tuple[Path, str], api_url: str
) -> None:
    """Chromium records no response for a blocked fetch; explain prints a `corstrace check` that finds the reason."""
    har, page_url = recorded
    code, out, _ = _explain(capsys, str(har))
    command = f"corstrace check {api_url}/no-put --origin {page_url} --method PUT"
    assert "the HAR has no response headers to judge" in out and f"    {command}\n" in out
    assert main(command.split()[1:] + ["--json"]) == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "MethodDisallowedByPreflightResponse"


@pytest.mark.browser
def test_recorded_har_text_summary(capsys: pytest.CaptureFixture[str], recorded: tuple[Path, str]) -> None:
    """The text report ends with a summary: counts and the blocked ones grouped by reason."""
    code, out, err = _explain(capsys, str(recorded[0]))
    assert (code, err) == (1, "")
    assert out.rstrip().endswith(
        "Summary\n  4 cross-origin request(s): 2 allowed, 2 blocked\n"
        "    2 × blocked by the browser, no response in the HAR\n"
        "  skipped 1 same-origin and 0 non-CORS (navigation, image, script...) request(s)"
    )


def _entry(
    method: str,
    url: str,
    request_headers: dict[str, str],
    status: int,
    response_headers: dict[str, str],
    **extra: Any,
) -> dict[str, Any]:
    """One HAR entry shaped like Chrome DevTools' export."""
    response: dict[str, Any] = {
        "status": status,
        "statusText": "",
        "httpVersion": "http/1.1",
        "headers": [{"name": k, "value": v} for k, v in response_headers.items()],
        "cookies": [],
        "content": {"size": 0, "mimeType": "x-unknown"},
        "redirectURL": response_headers.get("Location", ""),
        "headersSize": -1,
        "bodySize": 0,
    }
    if "_error" in extra:
        response["_error"] = extra.pop("_error")
    return {
        "pageref": "page_1",
        "startedDateTime": "2026-01-01T00:00:00.000Z",
        "time": 1,
        "request": {
            "method": method,
            "url": url,
            "httpVersion": "http/1.1",
            "headers": [{"name": k, "value": v} for k, v in request_headers.items()],
            "queryString": [],
            "cookies": [],
            "headersSize": -1,
            "bodySize": 0,
        },
        "response": response,
        "cache": {},
        "timings": {"send": 0, "wait": 0, "receive": 0},
        **extra,
    }


CORS = {"Origin": PAGE, "Sec-Fetch-Mode": "cors"}
DEVTOOLS_HAR = {
    "log": {
        "version": "1.2",
        "creator": {"name": "WebInspector", "version": "537.36"},
        "pages": [{"id": "page_1", "title": PAGE + "/", "startedDateTime": "2026-01-01T00:00:00.000Z"}],
        "entries": [
            _entry("GET", PAGE + "/", {"Sec-Fetch-Mode": "navigate"}, 200, {}, _resourceType="document"),
            _entry(
                "OPTIONS",
                API + "/items",
                {**CORS, "Access-Control-Request-Method": "PUT"},
                204,
                {"Access-Control-Allow-Origin": PAGE, "Access-Control-Allow-Methods": "GET"},
                _resourceType="preflight",
                _initiator={"type": "preflight", "url": API + "/items"},
            ),
            _entry(
                "PUT", API + "/items", {"Referer": PAGE + "/"}, 0, {}, _error="net::ERR_FAILED", _resourceType="fetch"
            ),
            _entry("GET", API + "/data", CORS, 200, {"Content-Type": "application/json"}, _resourceType="fetch"),
            _entry("GET", API + "/logo.png", {"Sec-Fetch-Mode": "no-cors"}, 200, {}, _resourceType="image"),
            _entry(
                "GET",
                API + "/gone",
                {},
                0,
                {},
                _error="net::ERR_CONNECTION_REFUSED",
                _resourceType="fetch",
                _initiator={"type": "script", "url": PAGE + "/app.js"},
            ),  # fmt: skip
            _entry(
                "GET",
                API + "/old",
                CORS,
                302,
                {"Location": "/new", "Access-Control-Allow-Origin": PAGE},
                _resourceType="fetch",
            ),  # fmt: skip
            _entry("GET", API + "/new", CORS, 200, {"Access-Control-Allow-Origin": PAGE}, _resourceType="fetch"),
        ],
    }
}


def _devtools(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> tuple[int, dict[str, Any]]:
    code, out, _ = _explain(capsys, _write(tmp_path, DEVTOOLS_HAR), "--json")
    return code, json.loads(out)


def test_devtools_preflight_is_paired_and_judged(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Chrome's separate preflight entry is paired with the failed PUT, and the preflight's reason is reported."""
    code, data = _devtools(capsys, tmp_path)
    item = data["items"][0]
    assert (code, item["entries"], item["reason"]) == (1, [2, 3], "MethodDisallowedByPreflightResponse")
    assert item["browser_message"].endswith(
        "Method PUT is not allowed by Access-Control-Allow-Methods in preflight response."
    )


def test_devtools_response_headers_are_judged(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An entry with its response headers is judged by the engine: no ACAO is MissingAllowOriginHeader."""
    _, data = _devtools(capsys, tmp_path)
    assert (data["items"][1]["url"], data["items"][1]["reason"]) == (API + "/data", "MissingAllowOriginHeader")


def test_network_errors_are_listed_as_not_judged(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A connection refused is listed as not judged, not as a CORS block; its page origin comes from _initiator."""
    _, data = _devtools(capsys, tmp_path)
    gone = data["items"][2]
    assert (gone["state"], gone["origin"]) == ("unjudged", PAGE)
    assert "net::ERR_CONNECTION_REFUSED" in gone["explanation"]


def test_redirect_hops_form_one_exchange(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A redirect and its hop are one exchange with two legs, the hop `redirected_from` the first URL."""
    _, data = _devtools(capsys, tmp_path)
    chain = data["items"][3]
    assert (chain["entries"], chain["state"]) == ([7, 8], "allowed")
    assert [leg["redirected_from"] for leg in chain["legs"]] == [None, API + "/old"]


def test_non_cors_and_same_origin_entries_are_skipped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The document and the no-cors image are counted as skipped, not judged."""
    _, data = _devtools(capsys, tmp_path)
    summary = data["summary"]
    assert (summary["cross_origin"], summary["skipped_same_origin"], summary["skipped_not_cors"]) == (4, 1, 1)
    assert summary["by_reason"] == {"MethodDisallowedByPreflightResponse": 1, "MissingAllowOriginHeader": 1}


def test_nothing_blocked_exits_0(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A HAR whose cross-origin requests all pass exits 0."""
    entries = [DEVTOOLS_HAR["log"]["entries"][i] for i in (0, 6, 7)]  # type: ignore[index]
    code, out, _ = _explain(capsys, _write(tmp_path, {"log": {"entries": entries}}))
    assert code == 0 and "1 cross-origin request(s): 1 allowed, 0 blocked" in out


BROKEN = [
    ('{"log": {"entries": [', "truncated JSON: it ends at line 1 column 22"),
    ("<html>not a har</html>", "not JSON: Expecting value at line 1 column 1"),
    ('{"log": {"entries": []},\n "x": tru}', "not JSON: Expecting value at line 2 column 7"),
    ("", "the file is empty"),
    ('{"entries": []}', "not a HAR file: no `log` object at the top level"),
    ('{"log": {"version": "1.2"}}', "not a HAR file: `log.entries` is missing"),
    ('{"log": {"entries": {"0": {}}}}', "not a HAR file: `log.entries` is an object, not a list"),
    ('{"log": {"entries": [{"response": {"status": 200}}]}}', "entry #1 (log.entries[0]) has no `request` object"),
    ('{"log": {"entries": [{"request": {"method": "GET"}}]}}', "entry #1 (log.entries[0]) has no `request.url`"),
    ('{"log": {"entries": [3]}}', "entry #1 (log.entries[0]) is a number, not an object"),
]


@pytest.mark.parametrize(("content", "message"), BROKEN, ids=[message for _, message in BROKEN])
def test_broken_har_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, message: str
) -> None:
    """A malformed, truncated or non-HAR file exits 2 with one line naming the problem."""
    path = _write(tmp_path, content)
    code, out, err = _explain(capsys, path)
    assert (code, out) == (2, "")
    assert err.startswith(f"corstrace explain: {path}: {message}") and err.count("\n") == 1


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A path that does not exist is one line, exit 2."""
    missing = str(tmp_path / "nope.har")
    assert _explain(capsys, missing) == (2, "", f"corstrace explain: {missing}: no such file\n")


def test_binary_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A binary file is reported as not UTF-8, not as a traceback."""
    path = tmp_path / "x.har"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    code, _, err = _explain(capsys, str(path))
    assert code == 2 and "not a HAR file (not UTF-8 text" in err


def test_subprocess_truncated_har_has_no_traceback(tmp_path: Path) -> None:
    """The real process: a truncated HAR exits 2 with one stderr line."""
    path = tmp_path / "cut.har"
    path.write_text(json.dumps(DEVTOOLS_HAR)[:500])
    result = subprocess.run(
        [sys.executable, "-m", "corstrace", "explain", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert (result.returncode, result.stdout, result.stderr.count("\n")) == (2, "", 1)
    assert "truncated JSON" in result.stderr


def test_xhr_entry_gets_chromiums_xmlhttprequest_wording(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Chrome's HAR marks XMLHttpRequests (`_resourceType: xhr`): the message is the one Chromium printed for them."""
    entry = _entry("GET", API + "/data", CORS, 200, {}, _resourceType="xhr")
    _, out, _ = _explain(capsys, _write(tmp_path, {"log": {"entries": [entry]}}), "--json")
    item = json.loads(out)["items"][0]
    assert item["browser_message"].startswith(f"Access to XMLHttpRequest at '{API}/data'")

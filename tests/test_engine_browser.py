"""The engine against real Chromium: same verdict, same reason, same console text.

A scripted API server on 127.0.0.1 answers each scenario with canned preflight/actual responses and
records every leg it saw. A page served from ``localhost`` (another origin) runs ``fetch()`` or
XHR. The recorded legs are then fed to :func:`corstrace.engine.evaluate`; the first blocked leg
must carry exactly the message Chromium printed, and no leg may be blocked when Chromium let the
request through. Every scenario has its own URL, so the preflight cache never carries over.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from corstrace.engine import (
    Credentials,
    Request,
    Response,
    Verdict,
    cors_unsafe_request_header_names,
    evaluate,
    needs_preflight,
)
from tests.support import run_server

pytestmark = pytest.mark.browser

H = tuple[tuple[str, str], ...]
ECHO = "{origin}"  # replaced by the request's Origin
ACAO_ECHO: H = (("access-control-allow-origin", ECHO),)
STAR_PREFLIGHT = (200, (("access-control-allow-origin", "*"), ("access-control-allow-headers", "*")))
GOOD_PREFLIGHT: H = (
    ("access-control-allow-origin", ECHO),
    ("access-control-allow-methods", "PUT, PATCH, patch, DELETE"),
    ("access-control-allow-headers", "x-foo, content-type, authorization, range"),
)


@dataclass(frozen=True)
class Scenario:
    id: str
    expect: str | None  # the Network.CorsError Chromium must report (None: the request succeeds)
    actual: tuple[int, H] = (200, ACAO_ECHO)
    preflight: tuple[int, H] = (200, GOOD_PREFLIGHT)
    hop: tuple[int, H] | None = None  # answer for <url>/next, the target of a redirect
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    credentials: str = "omit"  # fetch's credentials option, or XHR withCredentials when "include"
    xhr: bool = False
    sandboxed: bool = False  # run from a sandboxed iframe: an opaque origin that sends `Origin: null`
    raise_error: bool = False  # the app raises before starting a response


CRED = "include"
SCENARIOS = [
    # CORS check on the actual response.
    Scenario("missing-acao", "MissingAllowOriginHeader", actual=(200, ())),
    Scenario("missing-acao-on-404", "MissingAllowOriginHeader", actual=(404, (("x-trace", "1"),))),
    Scenario("exception-escaped", "MissingAllowOriginHeader", raise_error=True),
    Scenario(
        "wildcard-with-credentials",
        "WildcardOriginNotAllowed",
        actual=(200, (("access-control-allow-origin", "*"),)),
        credentials=CRED,
    ),
    Scenario(
        "two-acao-lines",
        "MultipleAllowOriginValues",
        actual=(200, (("access-control-allow-origin", ECHO), ("access-control-allow-origin", "*"))),
    ),
    Scenario(
        "acao-list",
        "MultipleAllowOriginValues",
        actual=(200, (("access-control-allow-origin", "http://a.test, http://b.test"),)),
    ),
    Scenario(
        "acao-not-a-url", "InvalidAllowOriginValue", actual=(200, (("access-control-allow-origin", "localhost"),))
    ),
    Scenario("acao-empty", "InvalidAllowOriginValue", actual=(200, (("access-control-allow-origin", ""),))),
    Scenario(
        "acao-latin1-host",
        "InvalidAllowOriginValue",
        actual=(200, (("access-control-allow-origin", "http://ex\xe9.test"),)),
    ),
    Scenario(
        "acao-other-origin",
        "AllowOriginMismatch",
        actual=(200, (("access-control-allow-origin", "http://example.test"),)),
    ),
    Scenario("acao-null", "AllowOriginMismatch", actual=(200, (("access-control-allow-origin", "null"),))),
    Scenario(
        "acao-trailing-slash", "AllowOriginMismatch", actual=(200, (("access-control-allow-origin", ECHO + "/"),))
    ),
    Scenario(
        "acao-upper-case", "AllowOriginMismatch", actual=(200, (("access-control-allow-origin", "HTTP://LOCALHOST"),))
    ),
    Scenario(
        "acao-control-byte",
        "AllowOriginMismatch",
        actual=(200, (("access-control-allow-origin", "http://a.test\x01"),)),
    ),
    Scenario("acac-missing", "InvalidAllowCredentials", credentials=CRED),
    Scenario(
        "acac-capitalised",
        "InvalidAllowCredentials",
        actual=(200, (*ACAO_ECHO, ("access-control-allow-credentials", "True"))),
        credentials=CRED,
    ),
    # The preflight.
    Scenario("pf-missing-acao", "PreflightMissingAllowOriginHeader", method="PUT", preflight=(200, ())),
    Scenario("pf-missing-acao-beats-404", "PreflightMissingAllowOriginHeader", method="PUT", preflight=(404, ())),
    Scenario(
        "pf-wildcard-with-credentials",
        "PreflightWildcardOriginNotAllowed",
        method="PUT",
        preflight=(200, (("access-control-allow-origin", "*"), ("access-control-allow-methods", "PUT"))),
        credentials=CRED,
    ),
    Scenario(
        "pf-two-acao-lines",
        "PreflightMultipleAllowOriginValues",
        method="PUT",
        preflight=(200, (*ACAO_ECHO, *ACAO_ECHO)),
    ),
    Scenario(
        "pf-acao-not-a-url",
        "PreflightInvalidAllowOriginValue",
        method="PUT",
        preflight=(200, (("access-control-allow-origin", "foo"),)),
    ),
    Scenario(
        "pf-mismatch-beats-500",
        "PreflightAllowOriginMismatch",
        method="PUT",
        preflight=(500, (("access-control-allow-origin", "http://x.test"),)),
    ),
    Scenario("pf-acac-missing", "PreflightInvalidAllowCredentials", method="PUT", credentials=CRED),
    Scenario("pf-status-404", "PreflightInvalidStatus", method="PUT", preflight=(404, GOOD_PREFLIGHT)),
    Scenario("pf-status-400-starlette", "PreflightInvalidStatus", method="DELETE", preflight=(400, ACAO_ECHO)),
    Scenario("pf-3xx-without-location", "PreflightInvalidStatus", method="PUT", preflight=(301, GOOD_PREFLIGHT)),
    Scenario(
        "pf-redirect",
        "PreflightDisallowedRedirect",
        method="PUT",
        preflight=(307, (*GOOD_PREFLIGHT, ("location", "/elsewhere"))),
    ),
    Scenario(
        "pf-redirect-beats-missing-acao",
        "PreflightDisallowedRedirect",
        method="PUT",
        preflight=(302, (("location", "/elsewhere"),)),
    ),
    Scenario(
        "pf-acam-not-tokens",
        "InvalidAllowMethodsPreflightResponse",
        method="PUT",
        preflight=(200, (*ACAO_ECHO, ("access-control-allow-methods", "PUT, bad method"))),
    ),
    Scenario(
        "pf-acah-not-tokens",
        "InvalidAllowHeadersPreflightResponse",
        headers={"X-Foo": "1"},
        preflight=(200, (*ACAO_ECHO, ("access-control-allow-headers", "x-foo, bad header"))),
    ),
    Scenario("pf-method-not-listed", "MethodDisallowedByPreflightResponse", method="PUT", preflight=(200, ACAO_ECHO)),
    Scenario(
        "pf-method-case",
        "MethodDisallowedByPreflightResponse",
        method="patch",
        preflight=(200, (*ACAO_ECHO, ("access-control-allow-methods", "PATCH"))),
    ),
    Scenario(
        "pf-method-star-with-credentials",
        "MethodDisallowedByPreflightResponse",
        method="PUT",
        preflight=(
            200,
            (*ACAO_ECHO, ("access-control-allow-credentials", "true"), ("access-control-allow-methods", "*")),
        ),
        credentials=CRED,
    ),
    Scenario(
        "pf-header-not-listed",
        "HeaderDisallowedByPreflightResponse",
        headers={"X-Foo": "1"},
        preflight=(200, ACAO_ECHO),
    ),
    Scenario(
        "pf-json-content-type",
        "HeaderDisallowedByPreflightResponse",
        method="POST",
        headers={"Content-Type": "application/json"},
        preflight=(200, ACAO_ECHO),
    ),
    Scenario(
        "pf-suffix-range",
        "HeaderDisallowedByPreflightResponse",
        headers={"Range": "bytes=-500"},
        preflight=(200, ACAO_ECHO),
    ),
    Scenario(
        "pf-header-star-with-credentials",
        "HeaderDisallowedByPreflightResponse",
        headers={"X-Test": "1"},
        preflight=(
            200,
            (*ACAO_ECHO, ("access-control-allow-credentials", "true"), ("access-control-allow-headers", "*")),
        ),
        credentials=CRED,
    ),
    # Redirects on the actual request.
    Scenario(
        "redirect-user-pass",
        "RedirectContainsCredentials",
        actual=(302, (*ACAO_ECHO, ("location", "http://user:pass@{host}{path}/next"))),
    ),
    Scenario(
        "redirect-user-only",
        "RedirectContainsCredentials",
        actual=(307, (*ACAO_ECHO, ("location", "http://user@{host}{path}/next"))),
    ),
    Scenario(
        "redirect-empty-userinfo",
        None,
        actual=(302, (*ACAO_ECHO, ("location", "http://:@{host}{path}/next"))),
        hop=(200, ACAO_ECHO),
    ),
    Scenario(
        "redirect-without-acao",
        "MissingAllowOriginHeader",
        actual=(302, (("location", "{path}/next"),)),
        hop=(200, ACAO_ECHO),
    ),
    Scenario(
        "redirect-target-without-acao",
        "MissingAllowOriginHeader",
        actual=(302, (*ACAO_ECHO, ("location", "{path}/next"))),
        hop=(200, ()),
    ),
    Scenario("redirect-followed", None, actual=(301, (*ACAO_ECHO, ("location", "{path}/next"))), hop=(200, ACAO_ECHO)),
    # XMLHttpRequest wording.
    Scenario(
        "xhr-wildcard-with-credentials",
        "WildcardOriginNotAllowed",
        actual=(200, (("access-control-allow-origin", "*"),)),
        credentials=CRED,
        xhr=True,
    ),
    Scenario("xhr-acac-missing", "InvalidAllowCredentials", credentials=CRED, xhr=True),
    Scenario(
        "xhr-mismatch",
        "AllowOriginMismatch",
        actual=(200, (("access-control-allow-origin", "http://x.test"),)),
        xhr=True,
    ),
    Scenario("xhr-missing-acao", "MissingAllowOriginHeader", actual=(200, ()), xhr=True),
    Scenario("xhr-pf-missing-acao", "PreflightMissingAllowOriginHeader", method="PUT", preflight=(200, ()), xhr=True),
    Scenario("xhr-pf-acac-missing", "PreflightInvalidAllowCredentials", method="PUT", credentials=CRED, xhr=True),
    Scenario(
        "xhr-pf-wildcard",
        "PreflightWildcardOriginNotAllowed",
        method="PUT",
        preflight=(200, (("access-control-allow-origin", "*"), ("access-control-allow-methods", "PUT"))),
        credentials=CRED,
        xhr=True,
    ),
    Scenario(
        "xhr-redirected",
        "MissingAllowOriginHeader",
        actual=(302, (*ACAO_ECHO, ("location", "{path}/next"))),
        hop=(200, ()),
        xhr=True,
    ),
    # Requests that pass.
    Scenario("simple-wildcard", None, actual=(200, (("access-control-allow-origin", "*"), ("x-total", "3")))),
    Scenario("simple-text-plain-post", None, method="POST", headers={"Content-Type": "text/plain;charset=utf-8"}),
    Scenario(
        "simple-safelisted-headers",
        None,
        headers={"Accept": "application/json", "Content-Language": "fr", "Range": "bytes=100-200"},
    ),
    Scenario(
        "credentialed-echo",
        None,
        actual=(200, (*ACAO_ECHO, ("access-control-allow-credentials", "true"))),
        credentials=CRED,
    ),
    Scenario("pf-put-passes", None, method="PUT", headers={"X-Foo": "1", "Content-Type": "application/json"}),
    Scenario("pf-lower-case-patch", None, method="patch"),
    Scenario(
        "pf-acah-case-and-empty-items",
        None,
        headers={"X-Print": "1", "Y-Lol": "2"},
        preflight=(200, (*ACAO_ECHO, ("access-control-allow-headers", ",y-lol,x-PriNT, ,,,Y-PRINT"))),
    ),
    Scenario(
        "pf-star-covers-authorization",
        None,
        headers={"Authorization": "Bearer x", "X-A": "1"},
        preflight=(200, (("access-control-allow-origin", "*"), ("access-control-allow-headers", "*"))),
        actual=(200, (("access-control-allow-origin", "*"),)),
    ),
    Scenario(
        "pf-star-methods",
        None,
        method="SUPER",
        preflight=(200, (("access-control-allow-origin", "*"), ("access-control-allow-methods", "*"))),
        actual=(200, (("access-control-allow-origin", "*"),)),
    ),
    Scenario("pf-ok-then-actual-missing-acao", "MissingAllowOriginHeader", method="PUT", actual=(200, ())),
    Scenario("pf-206", None, method="DELETE", preflight=(206, GOOD_PREFLIGHT)),
    # An opaque origin: `Origin: null`, which only `*` or a literal `null` lets through.
    Scenario("opaque-origin-missing-acao", "MissingAllowOriginHeader", actual=(200, ()), sandboxed=True),
    Scenario("opaque-origin-echo-null", None, sandboxed=True),
    Scenario(
        "opaque-origin-named",
        "AllowOriginMismatch",
        actual=(200, (("access-control-allow-origin", "http://localhost"),)),
        sandboxed=True,
    ),
    Scenario(
        "opaque-origin-pf-wildcard",
        None,
        method="PUT",
        preflight=(200, (("access-control-allow-origin", "*"), ("access-control-allow-methods", "PUT"))),
        actual=(200, (("access-control-allow-origin", "*"),)),
        sandboxed=True,
    ),
    # A UTF-8 host in ACAO: GURL applies IDNA, so it is a mismatch; the hint shows how Chromium decodes the bytes.
    Scenario(
        "acao-utf8-host",
        "AllowOriginMismatch",
        actual=(200, (("access-control-allow-origin", "http://a\xc3\xa9.test"),)),
    ),
    Scenario(
        "acao-tab-inside",
        "MultipleAllowOriginValues",
        actual=(200, (("access-control-allow-origin", "http://a.test,\tb"),)),
    ),
    # ACAO values at the edge of GURL's validity: InvalidAllowOriginValue or AllowOriginMismatch.
    Scenario(
        "acao-percent-host", "AllowOriginMismatch", actual=(200, (("access-control-allow-origin", "http://%41.test"),))
    ),
    Scenario(
        "acao-bad-percent-host",
        "InvalidAllowOriginValue",
        actual=(200, (("access-control-allow-origin", "http://a%zz.test"),)),
    ),
    Scenario(
        "acao-caret-host",
        "InvalidAllowOriginValue",
        actual=(200, (("access-control-allow-origin", "http://a^b.test"),)),
    ),
    Scenario(
        "acao-pipe-host", "InvalidAllowOriginValue", actual=(200, (("access-control-allow-origin", "http://a|b.test"),))
    ),
    Scenario(
        "acao-angle-host",
        "InvalidAllowOriginValue",
        actual=(200, (("access-control-allow-origin", "http://a<b.test"),)),
    ),
    Scenario(
        "acao-brace-host",
        "AllowOriginMismatch",  # GURL escapes these host characters instead of rejecting them
        actual=(200, (("access-control-allow-origin", "http://a{b.test"),)),
    ),
    Scenario(
        "acao-backtick-host",
        "AllowOriginMismatch",  # GURL escapes these host characters instead of rejecting them
        actual=(200, (("access-control-allow-origin", "http://a`b.test"),)),
    ),
    Scenario("acao-no-slashes", "AllowOriginMismatch", actual=(200, (("access-control-allow-origin", "http:a.test"),))),
    Scenario(
        "acao-five-part-ipv4",
        "InvalidAllowOriginValue",
        actual=(200, (("access-control-allow-origin", "http://1.2.3.4.5"),)),
    ),
    Scenario(
        "acao-ipv4-over-255",
        "InvalidAllowOriginValue",
        actual=(200, (("access-control-allow-origin", "http://256.0.0.1"),)),
    ),
    Scenario(
        "acao-port-too-big",
        "InvalidAllowOriginValue",
        actual=(200, (("access-control-allow-origin", "http://a.test:65536"),)),
    ),
    Scenario(
        "acao-javascript",
        "AllowOriginMismatch",
        actual=(200, (("access-control-allow-origin", "javascript:alert(1)"),)),
    ),
    Scenario(
        "acao-bad-ipv6", "InvalidAllowOriginValue", actual=(200, (("access-control-allow-origin", "http://[zz]"),))
    ),
    Scenario(
        "acao-underscore-host",
        "AllowOriginMismatch",
        actual=(200, (("access-control-allow-origin", "http://a_b.test"),)),
    ),
    Scenario(
        "acao-ends-in-number", "InvalidAllowOriginValue", actual=(200, (("access-control-allow-origin", "http://a.1"),))
    ),
    Scenario("acao-hex-ipv4", "AllowOriginMismatch", actual=(200, (("access-control-allow-origin", "http://0x7f.1"),))),
    # Which request headers Chromium preflights (checked through needs_preflight and the ACRH it sends).
    Scenario("last-event-id-preflighted", None, headers={"Last-Event-ID": "abc123"}, preflight=STAR_PREFLIGHT),
    Scenario("dpr-safelisted", None, headers={"DPR": "2", "Device-Memory": "0.5"}),
    Scenario("save-data-on", None, headers={"Save-Data": "on"}),
    Scenario("save-data-other", None, headers={"Save-Data": "yes"}, preflight=STAR_PREFLIGHT),
    Scenario("rtt-number", None, headers={"RTT": "100"}),
    Scenario("rtt-text", None, headers={"RTT": "abc"}, preflight=STAR_PREFLIGHT),
    Scenario("ect-4g", None, headers={"ECT": "4g"}),
    Scenario("ect-other", None, headers={"ECT": "5g"}, preflight=STAR_PREFLIGHT),
    Scenario("downlink-number", None, headers={"Downlink": "1.5"}),
    Scenario("downlink-text", None, headers={"Downlink": "fast"}, preflight=STAR_PREFLIGHT),
    Scenario("dpr-negative", None, headers={"DPR": "-1"}, preflight=STAR_PREFLIGHT),
    Scenario("dpr-exponent", None, headers={"DPR": "1e2"}, preflight=STAR_PREFLIGHT),
    Scenario("empty-width-preflighted", None, headers={"Width": ""}, preflight=STAR_PREFLIGHT),
    Scenario("text-plain-garbage-safelisted", None, method="POST", headers={"Content-Type": "text/plain;garbage"}),
    Scenario(
        "text-plain-comma-preflighted",
        None,
        method="POST",
        headers={"Content-Type": "text/plain,"},
        preflight=STAR_PREFLIGHT,
    ),
    Scenario("accept-129-bytes-preflighted", None, headers={"Accept": "a" * 129}, preflight=STAR_PREFLIGHT),
    Scenario("range-reversed-preflighted", None, headers={"Range": "bytes=200-100"}, preflight=STAR_PREFLIGHT),
    Scenario(
        "safelisted-over-1024-bytes",
        None,
        headers={
            "Accept": "a" * 128,
            "Accept-Language": "b" * 128,
            "Content-Language": "c" * 128,
            "DPR": "1" * 128,
            "Device-Memory": "2" * 128,
            "Width": "3" * 128,
            "Viewport-Width": "4" * 128,
            "Content-Type": "text/plain;x=" + "d" * 115,
            "Range": "bytes=1-2",
        },
        preflight=STAR_PREFLIGHT,
    ),
]
# Access-Control-Max-Age values: a second identical fetch re-sends the preflight iff the cache time is 0.
MAX_AGES = [None, "0", "-1", "abc", "600", "99999999999999999999"]
CACHE_SCENARIOS = [
    Scenario(
        f"max-age-{value}",
        None,
        method="PUT",
        preflight=(200, GOOD_PREFLIGHT + ((("access-control-max-age", value),) if value is not None else ())),
    )
    for value in MAX_AGES
]
# Response headers the page can read: the engine's `unexposed_headers` must be exactly the hidden ones.
STAR = ("access-control-allow-origin", "*")
CREDENTIALED = (("access-control-allow-origin", ECHO), ("access-control-allow-credentials", "true"))
CUSTOM = (("x-a", "1"), ("x-b", "2"), ("content-language", "fr"), ("set-cookie", "s=1"), ("etag", '"v1"'))
EXPOSE_SCENARIOS = [
    Scenario("expose-nothing", None, actual=(200, (STAR, *CUSTOM))),
    Scenario("expose-listed", None, actual=(200, (STAR, ("access-control-expose-headers", "X-A"), *CUSTOM))),
    Scenario(
        "expose-case-and-spaces", None, actual=(200, (STAR, ("access-control-expose-headers", "x-A ,, ETag"), *CUSTOM))
    ),
    Scenario("expose-star", None, actual=(200, (STAR, ("access-control-expose-headers", "*"), *CUSTOM))),
    Scenario(
        "expose-star-credentialed",
        None,
        actual=(200, (*CREDENTIALED, ("access-control-expose-headers", "*"), *CUSTOM)),
        credentials=CRED,
    ),
    Scenario(
        "expose-star-and-name-credentialed",
        None,
        actual=(200, (*CREDENTIALED, ("access-control-expose-headers", "*, x-b, set-cookie"), *CUSTOM)),
        credentials=CRED,
    ),
]
BY_ID = {scenario.id: scenario for scenario in [*SCENARIOS, *CACHE_SCENARIOS, *EXPOSE_SCENARIOS]}


@dataclass
class Leg:
    method: str
    url: str
    headers: H
    response: Response | None


LEGS: dict[str, list[Leg]] = {}


def _fill(headers: H, origin: str, host: str, path: str) -> list[tuple[bytes, bytes]]:
    filled = []
    for name, value in headers:
        value = value.replace(ECHO, origin).replace("{host}", host).replace("{path}", path)
        filled.append((name.encode("latin-1"), value.encode("latin-1")))
    return filled


async def api(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers /s/<scenario>[/next] with the scenario's scripted preflight, actual or hop response."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
    lookup = {name: value for name, value in headers}
    host, origin = lookup.get("host", ""), lookup.get("origin", "")
    parts = scope["path"].split("/")
    scenario = BY_ID[parts[2]]
    is_preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in lookup
    if parts[-1] == "next":
        answer = scenario.hop or (200, ())
    else:
        answer = scenario.preflight if is_preflight else scenario.actual
    leg = Leg(scope["method"], f"http://{host}{scope['path']}", headers, None)
    LEGS.setdefault(scenario.id, []).append(leg)
    if scenario.raise_error and not is_preflight:
        raise RuntimeError("boom")  # uvicorn then answers its own 500 without CORS headers
    status, raw = answer
    filled = _fill(raw, origin, host, "/".join(parts[:3]))
    leg.response = Response(status, tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in filled))
    await send({"type": "http.response.start", "status": status, "headers": filled})
    await send({"type": "http.response.body", "body": b"ok"})


async def page_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Serves an empty HTML page: the origin the requests come from."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
    await send(
        {
            "type": "http.response.body",
            "body": b'<!doctype html><title>page</title><iframe sandbox="allow-scripts" srcdoc="<p>opaque"></iframe>',
        }
    )


FETCH = """async ([url, method, headers, credentials, xhr]) => {
  if (xhr) {
    return await new Promise((resolve) => {
      const request = new XMLHttpRequest();
      request.open(method, url);
      request.withCredentials = credentials === "include";
      for (const [name, value] of Object.entries(headers)) request.setRequestHeader(name, value);
      request.onload = () => resolve("ok");
      request.onerror = () => resolve("error");
      request.send();
    });
  }
  try {
    await fetch(url, {method, headers, credentials});
    return "ok";
  } catch (error) {
    return "error";
  }
}"""


@pytest.fixture(scope="module")
def harness(browser: Any) -> Iterator[tuple[Any, str, list[str]]]:
    """A page on http://localhost:<port> and the scripted API on http://127.0.0.1:<port>."""
    with run_server(api) as api_url, run_server(page_app) as page_url:
        context = browser.new_context()
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        page.goto(page_url.replace("127.0.0.1", "localhost") + "/")
        try:
            yield page, api_url, console
        finally:
            context.close()


def _judge(scenario: Scenario, legs: list[Leg], *, infer: bool = False) -> list[Verdict]:
    """Evaluate every recorded leg; ``infer`` lets the engine work out the credentials mode on its own."""
    verdicts = []
    first_url = next(leg.url for leg in legs if not leg.url.endswith("/next"))
    mode: Credentials | None = "include" if scenario.credentials == "include" else "omit"
    for leg in legs:
        request = Request(
            leg.method,
            leg.url,
            leg.headers,
            credentials=None if infer else mode,
            initiator="XMLHttpRequest" if scenario.xhr else "fetch",
            redirected_from=first_url if leg.url.endswith("/next") else None,
        )
        verdicts.append(evaluate(request, leg.response))
    return verdicts


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[scenario.id for scenario in SCENARIOS])
def test_engine_matches_chromium(harness: tuple[Any, str, list[str]], scenario: Scenario) -> None:
    """The engine predicts Chromium's outcome, CorsError and console message for the legs the server saw."""
    page, api_url, console = harness
    console.clear()
    LEGS.pop(scenario.id, None)
    url = f"{api_url}/s/{scenario.id}"
    frame = page.frames[1] if scenario.sandboxed else page.main_frame
    outcome = frame.evaluate(FETCH, [url, scenario.method, scenario.headers, scenario.credentials, scenario.xhr])
    # Chromium logs the CORS error before it rejects the fetch; a marker logged afterwards bounds the wait.
    with page.expect_console_message(lambda message: message.text == f"done {scenario.id}"):
        frame.evaluate("(id) => console.log('done ' + id)", scenario.id)
    cors_lines = [line for line in console if line.startswith("Access to ")]

    legs = LEGS.get(scenario.id, [])
    verdicts = _judge(scenario, legs)
    blocked = [verdict for verdict in verdicts if verdict.verdict == "blocked"]
    assert outcome == ("error" if blocked else "ok")
    if blocked:
        assert blocked[0] is verdicts[-1], "the browser stops at the first blocked leg"
        assert blocked[0].reason == scenario.expect
        assert cors_lines == [blocked[0].browser_message]
    else:
        assert scenario.expect is None
        assert cors_lines == []
    if scenario.credentials == "include":
        # No cookie was sent, but Sec-Fetch-Storage-Access tells the server the mode of a cross-site actual
        # request; its preflight carries neither, so there the credentialed outcome must be the hedge, word for word.
        inferred = _judge(scenario, legs, infer=True)
        assert [v.credentials for v in inferred] == ["unknown" if v.preflight else "include" for v in inferred]
        as_sent = [v.if_credentialed if v.credentials == "unknown" and v.if_credentialed else v for v in inferred]
        blocked_as_sent = [v for v in as_sent if v.verdict == "blocked"]
        assert [v.browser_message for v in blocked_as_sent[:1]] == cors_lines
    # Whether Chromium preflighted is what needs_preflight predicts from the page's method and headers.
    saw_preflight = any(leg.method == "OPTIONS" for leg in legs)
    assert needs_preflight(scenario.method, tuple(scenario.headers.items())) is saw_preflight
    if saw_preflight and len(legs) > 1:
        # The actual request as the server saw it (with every browser-added header) yields exactly Chromium's ACRH.
        preflight_headers = dict(legs[0].headers)
        assert cors_unsafe_request_header_names(legs[1].headers) == [
            name for name in preflight_headers.get("access-control-request-headers", "").split(",") if name
        ]


@pytest.mark.parametrize("scenario", CACHE_SCENARIOS, ids=[scenario.id for scenario in CACHE_SCENARIOS])
def test_preflight_cache_matches_chromium(harness: tuple[Any, str, list[str]], scenario: Scenario) -> None:
    """preflight_cache_seconds is 0 exactly when Chromium preflights an identical second fetch again."""
    page, api_url, _ = harness
    LEGS.pop(scenario.id, None)
    url = f"{api_url}/s/{scenario.id}"
    for _ in range(2):
        assert page.evaluate(FETCH, [url, scenario.method, scenario.headers, scenario.credentials, False]) == "ok"
    legs = LEGS[scenario.id]
    preflights = [leg for leg in legs if leg.method == "OPTIONS"]
    verdict = _judge(scenario, legs[:1])[0]
    assert verdict.preflight and verdict.verdict == "allowed"
    assert (len(preflights) == 2) is (verdict.preflight_cache_seconds == 0)


READABLE = """async ([url, credentials]) => [...(await fetch(url, {credentials})).headers.keys()]"""


@pytest.mark.parametrize("scenario", EXPOSE_SCENARIOS, ids=[scenario.id for scenario in EXPOSE_SCENARIOS])
def test_unexposed_headers_match_chromium(harness: tuple[Any, str, list[str]], scenario: Scenario) -> None:
    """The header_not_exposed warning names exactly the app's response headers that page script cannot read."""
    page, api_url, _ = harness
    LEGS.pop(scenario.id, None)
    readable = set(page.evaluate(READABLE, [f"{api_url}/s/{scenario.id}", scenario.credentials]))
    verdict = _judge(scenario, LEGS[scenario.id])[0]
    assert verdict.verdict == "allowed"
    hidden = set(verdict.extra.get("unexposed_headers", []))
    for name in ("x-a", "x-b", "etag"):
        assert (name in readable) is (name not in hidden), name
    assert "content-language" in readable and "set-cookie" not in readable
    assert ("header_not_exposed" in [caveat.code for caveat in verdict.warnings]) is bool(hidden)

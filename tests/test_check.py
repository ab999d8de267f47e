"""`corstrace check` against real uvicorn servers on loopback, one of them scripted to cover every reason."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corstrace import _check_cli as check_command
from corstrace.__main__ import build_parser, main
from tests.support import run_server

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "http://localhost:3000"
ECHO = "{origin}"  # replaced with the request's Origin header by the scripted server

# path -> {"OPTIONS": (status, headers), "*": (status, headers)}: what the scripted server answers.
# Header values may use {origin} (the request's Origin), {self} (this server) and {other} (the same
# server under its other name, 127.0.0.1 <-> localhost: another origin for redirect tests).
_ALLOW = [("Access-Control-Allow-Origin", ECHO), ("Vary", "Origin")]
_PREFLIGHT_OK = (204, [*_ALLOW, ("Access-Control-Allow-Methods", "PUT"), ("Access-Control-Allow-Headers", "x-api-key")])
SCRIPT: dict[str, dict[str, tuple[int, list[tuple[str, str]]]]] = {
    "/allowed": {"*": (200, _ALLOW)},
    "/wildcard": {"*": (200, [("Access-Control-Allow-Origin", "*")])},
    "/missing": {"*": (200, [])},
    "/mismatch": {"*": (200, [("Access-Control-Allow-Origin", ORIGIN + "/")])},
    "/multiple": {
        "*": (200, [("Access-Control-Allow-Origin", ECHO), ("Access-Control-Allow-Origin", "https://b.test")])
    },
    "/invalid": {"*": (200, [("Access-Control-Allow-Origin", "*.example.com")])},
    "/no-acac": {"*": (200, _ALLOW)},
    "/credentialed": {"*": (200, [*_ALLOW, ("Access-Control-Allow-Credentials", "true")])},
    "/redirect-creds": {"*": (302, [*_ALLOW, ("Location", "http://user:pw@localhost:1/x")])},
    "/pf-status": {"OPTIONS": (405, _ALLOW)},
    "/pf-redirect": {"OPTIONS": (301, [("Location", "{self}/pf-ok")])},
    "/pf-missing": {"OPTIONS": (204, [])},
    "/pf-mismatch": {"OPTIONS": (204, [("Access-Control-Allow-Origin", "http://localhost:3001")])},
    "/pf-multiple": {"OPTIONS": (204, [("Access-Control-Allow-Origin", f"{ECHO}, https://b.test")])},
    "/pf-invalid": {"OPTIONS": (204, [("Access-Control-Allow-Origin", "*.example.com")])},
    "/pf-wildcard": {"OPTIONS": (204, [("Access-Control-Allow-Origin", "*"), ("Access-Control-Allow-Methods", "*")])},
    "/pf-acac": {"OPTIONS": (204, [*_ALLOW, ("Access-Control-Allow-Methods", "PUT")])},
    "/pf-bad-acam": {"OPTIONS": (204, [*_ALLOW, ("Access-Control-Allow-Methods", "PUT, (PATCH)")])},
    "/pf-bad-acah": {"OPTIONS": (204, [*_ALLOW, ("Access-Control-Allow-Headers", "x-api-key, x:y")])},
    "/pf-method": {"OPTIONS": (204, [*_ALLOW, ("Access-Control-Allow-Methods", "GET, POST")])},
    "/pf-header": {"OPTIONS": (204, [*_ALLOW, ("Access-Control-Allow-Methods", "PUT")])},
    "/pf-ok": {"OPTIONS": _PREFLIGHT_OK, "*": (200, _ALLOW)},
    "/pf-ok-actual-missing": {"OPTIONS": _PREFLIGHT_OK, "*": (200, [])},
    "/pf-auth": {
        "OPTIONS": (
            204,
            [*_ALLOW, ("Access-Control-Allow-Credentials", "true"), ("Access-Control-Allow-Headers", "authorization")],
        ),
        "*": (200, [*_ALLOW, ("Access-Control-Allow-Credentials", "true")]),
    },
    "/hop-same": {"*": (307, [*_ALLOW, ("Location", "/allowed")])},
    "/hop-cross": {"*": (302, [*_ALLOW, ("Location", "{other}/null-ok")])},
    "/hop-cross-missing": {"*": (302, [*_ALLOW, ("Location", "{other}/missing")])},
    "/hop-cross-put": {"OPTIONS": _PREFLIGHT_OK, "*": (307, [*_ALLOW, ("Location", "{other}/pf-ok")])},
    "/hop-blocked": {"*": (302, [("Location", "/allowed")])},
    "/see-other": {"*": (303, [*_ALLOW, ("Location", "/allowed")])},
    "/loop": {"*": (302, [*_ALLOW, ("Location", "/loop")])},
    "/null-ok": {"*": (200, [("Access-Control-Allow-Origin", "null")])},
    "/pf-star": {
        "OPTIONS": (204, [*_ALLOW, ("Access-Control-Allow-Methods", "*"), ("Access-Control-Allow-Headers", "*")]),
        "*": (200, _ALLOW),
    },
}
# (method, path, headers) of every request the scripted server received, in order.
RECEIVED: list[tuple[str, str, list[tuple[str, str]]]] = []


async def scripted_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app answering each path and method with the status and headers SCRIPT gives it."""
    if scope["type"] != "http":
        return
    headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]
    RECEIVED.append((scope["method"], scope["path"], headers))
    host = dict(headers).get("host", "")
    this = f"http://{host}"
    other = this.replace("127.0.0.1", "localhost") if "127.0.0.1" in host else this.replace("localhost", "127.0.0.1")
    origin = dict(headers).get("origin", "")
    answers = SCRIPT.get(scope["path"], {})
    status, script = answers.get(scope["method"]) or answers.get("*") or (404, [])
    out = [
        (name.encode(), value.replace(ECHO, origin).replace("{self}", this).replace("{other}", other).encode())
        for name, value in script
    ]
    body = b"" if status in (204, 304) else b"ok"  # h11 refuses a body on a 204
    out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    """The scripted server's base URL."""
    with run_server(scripted_app) as url:
        yield url


def _check_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["check", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = _check_cli(capsys, *args, "--json")
    return code, json.loads(out)


def _received(path: str) -> list[tuple[str, str, dict[str, str]]]:
    return [(method, p, {n.lower(): v for n, v in headers}) for method, p, headers in RECEIVED if p == path]


# (path, extra arguments, expected reason): every reason the server decides.
BLOCKED_CASES = [
    ("/missing", [], "MissingAllowOriginHeader"),
    ("/mismatch", [], "AllowOriginMismatch"),
    ("/multiple", [], "MultipleAllowOriginValues"),
    ("/invalid", [], "InvalidAllowOriginValue"),
    ("/wildcard", ["--credentials"], "WildcardOriginNotAllowed"),
    ("/no-acac", ["--credentials"], "InvalidAllowCredentials"),
    ("/redirect-creds", [], "RedirectContainsCredentials"),
    ("/pf-status", ["-X", "PUT"], "PreflightInvalidStatus"),
    ("/pf-redirect", ["-X", "PUT"], "PreflightDisallowedRedirect"),
    ("/pf-missing", ["-X", "PUT"], "PreflightMissingAllowOriginHeader"),
    ("/pf-mismatch", ["-X", "PUT"], "PreflightAllowOriginMismatch"),
    ("/pf-multiple", ["-X", "PUT"], "PreflightMultipleAllowOriginValues"),
    ("/pf-invalid", ["-X", "PUT"], "PreflightInvalidAllowOriginValue"),
    ("/pf-wildcard", ["-X", "PUT", "--credentials"], "PreflightWildcardOriginNotAllowed"),
    ("/pf-acac", ["-X", "PUT", "--credentials"], "PreflightInvalidAllowCredentials"),
    ("/pf-bad-acam", ["-X", "PUT"], "InvalidAllowMethodsPreflightResponse"),
    ("/pf-bad-acah", ["-X", "PUT", "-H", "X-Api-Key: 1"], "InvalidAllowHeadersPreflightResponse"),
    ("/pf-method", ["-X", "PUT"], "MethodDisallowedByPreflightResponse"),
    ("/pf-header", ["-X", "PUT", "-H", "X-Trace: 1"], "HeaderDisallowedByPreflightResponse"),
    ("/pf-ok-actual-missing", ["-X", "PUT"], "MissingAllowOriginHeader"),
    ("/hop-blocked", [], "MissingAllowOriginHeader"),
]


@pytest.mark.parametrize(("path", "extra", "reason"), BLOCKED_CASES, ids=[case[2] + case[0] for case in BLOCKED_CASES])
def test_blocked_reason_exits_1_with_the_reason(
    capsys: pytest.CaptureFixture[str], base: str, path: str, extra: list[str], reason: str
) -> None:
    """Each scripted misconfiguration is reported BLOCKED with its Chromium reason, and check exits 1."""
    code, data = _json(capsys, base + path, "--origin", ORIGIN, *extra)
    assert (code, data["verdict"], data["reason"]) == (1, "blocked", reason)
    assert data["browser_message"].startswith(f"Access to fetch at '{base}")


@pytest.mark.parametrize(("path", "extra", "reason"), BLOCKED_CASES, ids=[case[2] + case[0] for case in BLOCKED_CASES])
def test_every_blocked_case_gets_a_fix_whose_legs_all_pass(
    capsys: pytest.CaptureFixture[str], base: str, path: str, extra: list[str], reason: str
) -> None:
    """The header-level fix makes every leg pass in the replay; it is verified unless a leg could not be answered."""
    _, data = _json(capsys, base + path, "--origin", ORIGIN, *extra)
    legs = data["fix_legs"]
    assert legs and all(leg["passes"] for leg in legs)
    # /redirect-creds points at a closed port: the fixed redirect is followed there and cannot be answered.
    answered = all(leg["sent"] != "not_sent" for leg in legs) and "the replay stopped" not in data["fix"]
    assert data["fix_verified"] is answered


def test_text_report_has_verdict_message_explanation_and_fix(capsys: pytest.CaptureFixture[str], base: str) -> None:
    """The text form prints BLOCKED, the reason, Chromium's exact message, why and the fix."""
    code, out, err = _check_cli(capsys, base + "/pf-method", "--origin", ORIGIN, "-X", "PUT")
    assert (code, err) == (1, "")
    assert out.startswith(f"BLOCKED  PUT {base}/pf-method from origin {ORIGIN} (no credentials)\n")
    assert "reason   MethodDisallowedByPreflightResponse" in out
    assert (
        f"Access to fetch at '{base}/pf-method' from origin '{ORIGIN}' has been blocked by CORS policy: "
        "Method PUT is not allowed by Access-Control-Allow-Methods in preflight response." in out
    )
    assert "Why:\n  The page wants to send `PUT`" in out
    assert "\nFix (not verified) — response headers" in out
    assert "  1. preflight OPTIONS " in out and "       Access-Control-Allow-Methods: GET, POST, PUT\n" in out
    assert "\x1b[" not in out


def test_allowed_simple_request_exits_0(capsys: pytest.CaptureFixture[str], base: str) -> None:
    """A GET whose response names the origin is ALLOWED: one actual leg, no preflight, exit 0."""
    code, out, _ = _check_cli(capsys, base + "/allowed", "--origin", ORIGIN)
    assert code == 0
    assert out.startswith("ALLOWED  GET")
    assert "1. actual    GET" in out and "preflight" not in out


def test_allowed_preflighted_request_has_two_legs(capsys: pytest.CaptureFixture[str], base: str) -> None:
    """A PUT with a custom header passes its preflight, then the actual request: two allowed legs."""
    code, data = _json(capsys, base + "/pf-ok", "--origin", ORIGIN, "-X", "PUT", "-H", "X-Api-Key: k")
    assert (code, data["verdict"]) == (0, "allowed")
    assert [(leg["leg"], leg["method"], leg["status"]) for leg in data["legs"]] == [
        ("preflight", "OPTIONS", 204),
        ("actual", "PUT", 200),
    ]


def test_preflight_carries_what_chromium_computes(capsys: pytest.CaptureFixture[str], base: str) -> None:
    """The preflight has ACRM, ACRH sorted lower-case without spaces, Accept */*, and no cookie."""
    args = ["-X", "PUT", "-H", "X-Zeta: 1", "-H", "Content-Type: application/json", "-H", "Cookie: s=1"]
    _check_cli(capsys, base + "/pf-acac", "--origin", ORIGIN, *args)
    method, _, headers = _received("/pf-acac")[-1]
    assert method == "OPTIONS"
    assert (headers["origin"], headers["access-control-request-method"]) == (ORIGIN, "PUT")
    assert headers["access-control-request-headers"] == "content-type,x-zeta"
    assert (headers["accept"], headers["sec-fetch-mode"], "cookie" in headers) == ("*/*", "cors", False)


def test_actual_request_carries_origin_and_the_given_headers(capsys: pytest.CaptureFixture[str], base: str) -> None:
    """The actual request has the Origin, the user's headers and the Cookie as given."""
    _check_cli(capsys, base + "/credentialed", "--origin", ORIGIN, "-H", "Cookie: s=1", "-H", "Accept: text/csv")
    method, _, headers = _received("/credentialed")[-1]
    assert (method, headers["origin"], headers["cookie"], headers["accept"]) == ("GET", ORIGIN, "s=1", "text/csv")


def test_cookie_header_implies_credentials(capsys: pytest.CaptureFixture[str], base: str) -> None:
    """A Cookie header means credentials: 'include', so `*` is blocked as for --credentials."""
    code, data = _json(capsys, base + "/wildcard", "--origin", ORIGIN, "-H", "Cookie: s=1")
    assert (code, data["reason"], data["credentials"]) == (1, "WildcardOriginNotAllowed", "include")


def test_credentialed_allowed(capsys: pytest.CaptureFixture[str], base: str) -> None:
    """--credentials with ACAO naming the origin and ACAC true is allowed."""
    code, data = _json(capsys, base + "/credentialed", "--origin", ORIGIN, "--credentials")
    assert (code, data["verdict"], data["credentials"]) == (0, "allowed", "include")


def test_wildcard_without_credentials_says_what_credentials_would_do(
    capsys: pytest.CaptureFixture[str], base: str
) -> None:
    """An allowed `*` reports that credentials: 'include' would be blocked (if_credentialed)."""
    code, out, _ = _check_cli(capsys, base + "/wildcard", "--origin", ORIGIN)
    assert code == 0
    assert "With credentials: 'include': blocked (WildcardOriginNotAllowed)" in out


def test_lower_case_patch_is_kept_and_blocked(capsys: pytest.CaptureFixture[str], base: str) -> None:
    """`-X patch` is not upper-cased (Fetch normalizes only six methods), so it needs `patch` in ACAM."""
    code, data = _json(capsys, base + "/pf-method", "--origin", ORIGIN, "-X", "patch")
    assert (code, data["requested_method"], data["failed_parameter"]) == (1, "patch", "patch")


def test_json_has_the_log_event_fields(capsys: pytest.CaptureFixture[str], base: str) -> None:
    """--json prints one object with the log events' field names, the deciding leg's at the top."""
    _, data = _json(capsys, base + "/pf-header", "--origin", ORIGIN, "-X", "PUT", "-H", "X-Trace: 1")
    expected = {
        "verdict", "reason", "browser_message", "firefox_message", "explanation", "fix", "warnings", "credentials",
        "if_credentialed", "preflight", "origin", "method", "requested_method", "requested_headers", "url", "status",
        "request_headers", "response_headers", "legs",
    }  # fmt: skip
    assert expected <= data.keys()
    assert (data["preflight"], data["requested_headers"], len(data["legs"])) == (True, ["x-trace"], 1)


def test_json_redacts_secret_headers(capsys: pytest.CaptureFixture[str], base: str) -> None:
    """Authorization and Cookie values are redacted in the printed headers."""
    args = ["-H", "Authorization: Bearer s3cr3t", "-H", "Cookie: a=b"]
    code, out, _ = _check_cli(capsys, base + "/pf-auth", "--origin", ORIGIN, *args, "--json")
    assert code == 0 and "s3cr3t" not in out and "a=b" not in out
    actual = json.loads(out)["legs"][1]["request_headers"]
    assert ["Authorization", "Bearer [redacted]"] in actual and ["Cookie", "[redacted]"] in actual


def test_same_origin_redirect_is_followed_hop_by_hop(capsys: pytest.CaptureFixture[str], base: str) -> None:
    """A 307 to the same server is followed; both hops are judged and the Origin is unchanged."""
    code, data = _json(capsys, base + "/hop-same", "--origin", ORIGIN)
    assert code == 0
    assert [(leg["status"], leg["origin"], leg["redirected_from"]) for leg in data["legs"]] == [
        (307, ORIGIN, None),
        (200, ORIGIN, base + "/hop-same"),
    ]


def test_cross_origin_redirect_sends_origin_null(capsys: pytest.CaptureFixture[str], base: str) -> None:
    """After a redirect to another origin the next hop carries `Origin: null`, as Fetch taints it."""
    code, out, _ = _check_cli(capsys, base + "/hop-cross", "--origin", ORIGIN)
    assert code == 0
    assert _received("/null-ok")[-1][2]["origin"] == "null"
    assert "the browser sends `Origin: null`" in out


def test_tainted_hop_blocked_message_names_the_page_origin(capsys: pytest.CaptureFixture[str], base: str) -> None:
    """A blocked tainted hop prints Chromium's message with the page's origin and `redirected from`."""
    other = base.replace("127.0.0.1", "localhost")
    code, data = _json(capsys, f"{base}/hop-cross-missing", "--origin", ORIGIN)
    assert (code, data["origin"], data["hop"]) == (1, "null", 1)
    assert data["browser_message"].startswith(
        f"Access to fetch at '{other}/missing' (redirected from '{base}/hop-cross-missing') from origin '{ORIGIN}'"
    )


def test_redirect_hop_gets_its_own_preflight(capsys: pytest.CaptureFixture[str], base: str) -> None:
    """A PUT redirected to another origin is preflighted again there, with `Origin: null`."""
    code, data = _json(capsys, base + "/hop-cross-put", "--origin", ORIGIN, "-X", "PUT")
    assert [(leg["leg"], leg["hop"], leg["origin"]) for leg in data["legs"]] == [
        ("preflight", 0, ORIGIN),
        ("actual", 0, ORIGIN),
        ("preflight", 1, "null"),
        ("actual", 1, "null"),
    ]
    assert code == 0  # /pf-ok echoes the Origin, so `null` is allowed there


def test_see_other_turns_post_into_get(capsys: pytest.CaptureFixture[str], base: str) -> None:
    """A 303 after a POST is followed with GET and without the body's Content-Type."""
    code, data = _json(capsys, base + "/see-other", "--origin", ORIGIN, "-X", "POST", "-H", "Content-Type: text/plain")
    assert code == 0
    assert [leg["method"] for leg in data["legs"]] == ["POST", "GET"]
    assert "content-type" not in _received("/allowed")[-1][2]


def test_redirect_loop_is_an_error_not_a_verdict(capsys: pytest.CaptureFixture[str], base: str) -> None:
    """More than 20 redirects exit 2 with the browser's net::ERR_TOO_MANY_REDIRECTS, after 21 requests."""
    before = len(_received("/loop"))
    code, out, err = _check_cli(capsys, base + "/loop", "--origin", ORIGIN)
    assert (code, out) == (2, "")
    assert "ERR_TOO_MANY_REDIRECTS" in err
    assert len(_received("/loop")) - before == 21


def test_unreachable_host_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Connection refused is not a CORS verdict: exit 2 and one line naming the host."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        code, out, err = _check_cli(capsys, f"http://127.0.0.1:{port}/x", "--origin", ORIGIN)
    assert (code, out, err) == (2, "", f"corstrace check: cannot reach http://127.0.0.1:{port}: connection refused\n")


def test_timeout_exits_2_naming_host_and_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    """A server that accepts the connection but never answers times out: exit 2, host and timeout named."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)  # the kernel completes the handshake; nobody ever reads or answers
        port = sock.getsockname()[1]
        code, _, err = _check_cli(capsys, f"http://127.0.0.1:{port}/x", "--origin", ORIGIN, "--timeout", "0.2")
    assert code == 2
    assert err.startswith(f"corstrace check: http://127.0.0.1:{port} did not answer GET") and "0.2 s" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["localhost:8000/x", "--origin", ORIGIN], "not an http:// or https:// URL"),
        (["http://a.test/", "--origin", ORIGIN + "/"], "did you mean 'http://localhost:3000'?"),
        (["http://a.test/", "--origin", "localhost:3000"], "not an origin"),
        (["http://a.test/", "--origin", ORIGIN, "-H", "NoColon"], "not a header (expected 'Name: value')"),
        (["http://a.test/", "--origin", ORIGIN, "-H", "Origin: x"], "use --origin"),
        (["http://a.test/", "--origin", ORIGIN, "-X", "GE T"], "not an HTTP method"),
        (["http://a.test/", "--origin", ORIGIN, "--timeout", "0"], "positive number of seconds"),
        (["http://a.test/"], "the following arguments are required: --origin"),
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    """Bad URLs, origins, headers, methods and timeouts are argparse errors: exit 2, the problem named."""
    code, out, err = _check_cli(capsys, *args)
    assert (code, out) == (2, "")
    assert message in err and "Traceback" not in err


class _Tty:
    """A stdout that claims to be a terminal."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def test_terminal_output_is_coloured(monkeypatch: pytest.MonkeyPatch, base: str) -> None:
    """On a terminal without NO_COLOR the verdict is painted red."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    stdout = _Tty()
    args = build_parser().parse_args(["check", base + "/missing", "--origin", ORIGIN])
    assert check_command.run(args, stdout=stdout) == 1  # type: ignore[arg-type]
    assert stdout.text.startswith("\x1b[1;31mBLOCKED\x1b[0m")


def test_no_color_keeps_a_terminal_plain(monkeypatch: pytest.MonkeyPatch, base: str) -> None:
    """NO_COLOR turns the colour off even on a terminal."""
    monkeypatch.setenv("NO_COLOR", "1")
    stdout = _Tty()
    args = build_parser().parse_args(["check", base + "/missing", "--origin", ORIGIN])
    check_command.run(args, stdout=stdout)  # type: ignore[arg-type]
    assert "\x1b[" not in stdout.text


def test_subprocess_piped_output_is_plain_and_exit_code_1(base: str) -> None:
    """`python -m corstrace check` through a pipe: plain text, exit 1 for a blocked request."""
    result = subprocess.run(
        [sys.executable, "-m", "corstrace", "check", base + "/missing", "--origin", ORIGIN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout.startswith("BLOCKED  GET") and "\x1b[" not in result.stdout


def test_subprocess_unreachable_host_exits_2_without_traceback() -> None:
    """The real process exits 2 with one stderr line for a refused connection."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "corstrace", "check", f"http://127.0.0.1:{port}/", "--origin", ORIGIN],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.count("\n") == 1 and "connection refused" in result.stderr


def test_starlettes_refused_preflight_body_is_explained(capsys: pytest.CaptureFixture[str]) -> None:
    """Against a real Starlette CORSMiddleware, the 400's body names what was refused and the option to change."""
    from fastapi import FastAPI
    from fastapi.middleware.cors import CORSMiddleware

    app = FastAPI()

    @app.put("/items/{item_id}")
    def put_item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    app.add_middleware(CORSMiddleware, allow_origins=[ORIGIN], allow_headers=["Content-Type"])
    with run_server(app) as url:
        code, out, _ = _check_cli(capsys, url + "/items/1", "--origin", ORIGIN, "-X", "PUT", "-H", "X-Api-Key: k")
    assert code == 1
    assert "Starlette's CORSMiddleware refused the method, headers" in out
    assert 'add "PUT" to `allow_methods`; add "x-api-key" to `allow_headers`.' in out


@contextlib.contextmanager
def trickling_server(response: bytes, *, interval: float, pause: float = 0.0) -> Iterator[tuple[str, threading.Event]]:
    """A real socket server that answers every request with ``response``, one byte each ``interval`` seconds.

    ``pause``: seconds to wait before answering at all. Yields the base URL and an event set when a client
    hung up before the whole response was sent (corstrace gave up, as a deadline must).
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    hung_up = threading.Event()
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn:
            buffered = b""
            while not stop.is_set():
                while b"\r\n\r\n" not in buffered:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffered += chunk
                buffered = buffered.split(b"\r\n\r\n", 1)[1]
                try:
                    stop.wait(pause)
                    for index in range(0, len(response), 1 if interval else len(response)):
                        if stop.wait(interval):
                            return
                        conn.sendall(response[index : index + 1] if interval else response)
                except OSError:
                    hung_up.set()
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", hung_up
    finally:
        stop.set()
        listener.close()


_TRICKLED = b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nContent-Length: 2\r\n\r\nok"


def test_timeout_is_a_deadline_against_a_server_that_trickles(capsys: pytest.CaptureFixture[str]) -> None:
    """A server sending one byte a second never trips a per-read timeout; --timeout still ends the exchange."""
    with trickling_server(_TRICKLED, interval=1.0) as (url, hung_up):
        code, out, err = _check_cli(capsys, url + "/slow", "--origin", ORIGIN, "--timeout", "1.5")
        assert hung_up.wait(30), "corstrace kept reading the trickle instead of hanging up at its deadline"
    assert (code, out) == (2, "")
    assert err.startswith(f"corstrace check: {url} did not answer GET {url}/slow") and "1.5 s" in err


_SLOW_LOOP = b"HTTP/1.1 302 Found\r\nAccess-Control-Allow-Origin: *\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n"


def test_timeout_spans_every_leg_and_redirect(capsys: pytest.CaptureFixture[str]) -> None:
    """Each redirect hop answers well within --timeout, but the whole chain does not: the deadline ends it."""
    with trickling_server(_SLOW_LOOP, interval=0.0, pause=0.4) as (url, _):
        code, _, err = _check_cli(capsys, url + "/loop", "--origin", ORIGIN, "--timeout", "2")
    assert code == 2
    assert "ERR_TOO_MANY_REDIRECTS" not in err  # 21 hops of 0.4 s each would have run out of redirects instead
    assert "did not answer GET" in err and "deadline for the whole exchange" in err


def test_latin1_header_value_goes_on_the_wire_one_byte_per_character(
    capsys: pytest.CaptureFixture[str], base: str
) -> None:
    """`-H 'X-Name: café'` is sent as fetch() sends it: `é` as the single byte 0xE9 (Chromium checked below)."""
    code, out, err = _check_cli(capsys, base + "/pf-star", "--origin", ORIGIN, "-H", "X-Name: café")
    assert (code, err) == (0, "")
    method, _, headers = _received("/pf-star")[-1]
    assert (method, headers["x-name"].encode("latin-1")) == ("GET", b"caf\xe9")


def test_header_value_beyond_latin1_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """fetch() throws on a header value beyond ISO-8859-1 and sends nothing; check says so, with no traceback."""
    code, out, err = _check_cli(capsys, "http://a.test/", "--origin", ORIGIN, "-H", "X-Name: 日本")
    assert (code, out) == (2, "")
    assert "non ISO-8859-1 code point" in err and "U+65E5" in err and "Traceback" not in err


def test_undecodable_argv_bytes_are_sent_as_those_bytes(capsys: pytest.CaptureFixture[str], base: str) -> None:
    """A raw byte in argv (`$'\\xe9'` in bash) reaches Python as a surrogate escape; it is sent as that byte."""
    code, _, err = _check_cli(capsys, base + "/pf-star", "--origin", ORIGIN, "-H", "X-Raw: a\udce9")
    assert (code, err) == (0, "")
    assert _received("/pf-star")[-1][2]["x-raw"].encode("latin-1") == b"a\xe9"


# --initiator: what the browser puts on the wire for each page API (observed in Chromium 156; compared with the
# real browser in tests/test_cli_browser.py).
INITIATOR_WIRE = [
    ("fetch", "GET", {"sec-fetch-dest": "empty", "sec-fetch-mode": "cors", "accept": "*/*"}),
    ("xhr", "GET", {"sec-fetch-dest": "empty", "sec-fetch-mode": "cors", "accept": "*/*"}),
    ("script", "GET", {"sec-fetch-dest": "script", "sec-fetch-mode": "cors", "accept": "*/*"}),
    (
        "image",
        "GET",
        {
            "sec-fetch-dest": "image",
            "sec-fetch-mode": "cors",
            "accept": "image/jxl,image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
        },
    ),
    ("font", "GET", {"sec-fetch-dest": "font", "sec-fetch-mode": "cors", "accept": "*/*"}),
    (
        "eventsource",
        "GET",
        {
            "sec-fetch-dest": "empty",
            "sec-fetch-mode": "cors",
            "accept": "text/event-stream",
            "cache-control": "no-cache",
        },
    ),
    ("beacon", "POST", {"sec-fetch-dest": "empty", "sec-fetch-mode": "no-cors", "accept": "*/*"}),
]


@pytest.mark.parametrize(("initiator", "method", "expected"), INITIATOR_WIRE, ids=[row[0] for row in INITIATOR_WIRE])
def test_initiator_sends_what_the_browser_sends(
    capsys: pytest.CaptureFixture[str], base: str, initiator: str, method: str, expected: dict[str, str]
) -> None:
    """`--initiator` sets Sec-Fetch-Dest, Sec-Fetch-Mode, Accept (and EventSource's Cache-Control) as Chromium does."""
    _check_cli(capsys, base + "/allowed", "--origin", ORIGIN, "--initiator", initiator)
    sent_method, _, headers = _received("/allowed")[-1]
    assert sent_method == method
    assert {name: headers.get(name) for name in expected} == expected


@pytest.mark.parametrize(
    ("initiator", "prefix"),
    [
        ("xhr", "XMLHttpRequest"),
        ("script", "script"),
        ("image", "image"),
        ("font", "font"),
        ("eventsource", "resource"),
    ],
)
def test_initiator_names_the_api_in_chromiums_message(
    capsys: pytest.CaptureFixture[str], base: str, initiator: str, prefix: str
) -> None:
    """Chromium's message starts `Access to XMLHttpRequest at`, `Access to script at`…; `initiator` says which."""
    _, data = _json(capsys, base + "/missing", "--origin", ORIGIN, "--initiator", initiator)
    assert data["browser_message"].startswith(f"Access to {prefix} at '{base}/missing'")
    assert (data["initiator"], data["browser_message_xhr"]) == (
        {"xhr": "XMLHttpRequest", "eventsource": "resource"}.get(initiator, initiator),
        None,
    )


def test_default_initiator_is_fetch_or_xhr_with_both_messages(capsys: pytest.CaptureFixture[str], base: str) -> None:
    """Without --initiator the request is the same for fetch() and XMLHttpRequest: both console texts are given."""
    _, data = _json(capsys, base + "/no-acac", "--origin", ORIGIN, "--credentials")
    assert data["initiator"] == "fetch_or_xhr"
    assert data["browser_message"].startswith("Access to fetch at")
    assert data["browser_message_xhr"].startswith("Access to XMLHttpRequest at")
    assert data["browser_message_xhr"].endswith("controlled by the withCredentials attribute.")


def test_xhr_only_message_is_printed_labelled(capsys: pytest.CaptureFixture[str], base: str) -> None:
    """The text report shows the XMLHttpRequest wording too, labelled, when it differs."""
    _, out, _ = _check_cli(capsys, base + "/mismatch", "--origin", ORIGIN)
    assert "Browser console (Chromium, fetch()):" in out
    assert "Browser console (Chromium, XMLHttpRequest / axios):" in out


def test_xhr_message_that_differs_only_in_its_api_word_is_not_repeated(
    capsys: pytest.CaptureFixture[str], base: str
) -> None:
    """`Access to XMLHttpRequest at` with the same rest: one message in the text, the exact XHR text in the JSON."""
    _, out, _ = _check_cli(capsys, base + "/missing", "--origin", ORIGIN)
    assert "Browser console (Chromium):" in out and "XMLHttpRequest" not in out
    _, data = _json(capsys, base + "/missing", "--origin", ORIGIN)
    assert data["browser_message_xhr"] == data["browser_message"].replace("fetch", "XMLHttpRequest", 1)


def test_credentialed_cross_site_request_carries_sec_fetch_storage_access(
    capsys: pytest.CaptureFixture[str], base: str
) -> None:
    """Chromium 156 sends `Sec-Fetch-Storage-Access: none` on a cross-site request with credentials: 'include'."""
    _check_cli(capsys, base + "/credentialed", "--origin", ORIGIN, "--credentials")
    assert _received("/credentialed")[-1][2].get("sec-fetch-storage-access") == "none"
    _check_cli(capsys, base + "/credentialed", "--origin", ORIGIN)
    assert "sec-fetch-storage-access" not in _received("/credentialed")[-1][2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--initiator", "script", "-X", "PUT"], "a <script> sends only GET"),
        (["--initiator", "image", "-H", "X-A: 1"], "an <img> cannot set request headers"),
        (["--initiator", "font", "--credentials"], "fonts are always fetched without credentials"),
        (["--initiator", "beacon", "-H", "X-A: 1"], "sendBeacon() can set only Content-Type"),
        (["--initiator", "telnet"], "invalid choice"),
    ],
)
def test_initiator_refuses_what_that_api_cannot_send(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """A method or header the chosen page API cannot send is a usage error, not a fake exchange."""
    code, out, err = _check_cli(capsys, "http://a.test/x", "--origin", ORIGIN, *args)
    assert (code, out) == (2, "")
    assert message in err

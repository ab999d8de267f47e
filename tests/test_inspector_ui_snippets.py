"""The inspector's reproducers (inspector_ui/snippets.js) are safe to paste: run, they do exactly what they say.

The snippets are built by the real snippets.js under node from hostile records. A curl snippet is then run by
``bash -c`` with a fake ``curl`` first on PATH that writes its argv (NUL-separated) to a file; a fetch() snippet
is evaluated with a stub ``fetch`` that records its arguments. Commands planted in the records (``touch`` of a
marker file, a write to ``globalThis``) must never run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SNIPPETS = ROOT / "inspector_ui" / "snippets.js"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (apt-get install -y nodejs)")

ORIGIN = "http://localhost:3000"

_RUNNER = """
import { readFileSync } from "node:fs";
const snippets = await import(process.argv[1]);
const calls = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const [name, args] of calls) results.push(snippets[name](...args));
process.stdout.write(JSON.stringify(results));
"""

# Evaluates a fetch() snippet with a stub fetch and console; reports the calls and any new global.
_EVALUATOR = """
import { readFileSync } from "node:fs";
const code = JSON.parse(readFileSync(0, "utf8"));
const before = new Set(Object.getOwnPropertyNames(globalThis));
const calls = [];
const logs = [];
const stubFetch = async (...args) => {
  calls.push(args);
  return { status: 204, headers: new Map([["x-stub", "1"]]) };
};
const AsyncFunction = (async () => {}).constructor;
let error = null;
try {
  await new AsyncFunction("fetch", "console", code)(stubFetch, { log: (...args) => logs.push(args) });
} catch (caught) {
  error = String(caught);
}
await new Promise((resolve) => setTimeout(resolve, 50)); // let a planted import("node:fs") finish, if any ran
const added = Object.getOwnPropertyNames(globalThis).filter((name) => !before.has(name));
process.stdout.write(JSON.stringify({ calls, logs, added, error }));
"""


def build(name: str, *args: Any) -> str:
    """Call ``snippets.<name>(*args)`` in node on the real snippets.js and return its result."""
    (result,) = build_many([(name, list(args))])
    return str(result)


def build_many(calls: list[tuple[str, list[Any]]]) -> list[Any]:
    assert NODE is not None
    completed = subprocess.run(
        [NODE, "--input-type=module", "-e", _RUNNER, SNIPPETS.as_uri()],
        input=json.dumps(calls),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    results: list[Any] = json.loads(completed.stdout)
    return results


def run_curl_snippet(snippet: str, workdir: Path) -> list[list[bytes]]:
    """Run ``snippet`` with ``bash -c`` in ``workdir``; the argv of every ``curl`` it ran, as bytes."""
    bindir = workdir / "bin"
    bindir.mkdir(exist_ok=True)
    calls = workdir / "curl-calls"
    calls.mkdir(exist_ok=True)
    fake = bindir / "curl"
    fake.write_text('#!/bin/bash\nprintf "%s\\0" "$@" > "$(mktemp -p "$CURL_CALLS" argv.XXXXXX)"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "CURL_CALLS": str(calls), "HOME": str(workdir), "LANG": "C.UTF-8"}
    subprocess.run(["bash", "-c", snippet], cwd=workdir, env=env, capture_output=True, timeout=60, check=False)
    return [path.read_bytes().split(b"\0")[:-1] for path in sorted(calls.iterdir())]


def evaluate_fetch_snippet(snippet: str, workdir: Path) -> dict[str, Any]:
    assert NODE is not None
    completed = subprocess.run(
        [NODE, "--input-type=module", "-e", _EVALUATOR],
        input=json.dumps(snippet),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=workdir,
    )
    assert completed.returncode == 0, completed.stderr
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def argv(*words: str) -> list[bytes]:
    return [word.encode() for word in words]


class Planted:
    """Shell commands hidden in traffic; each would create its own marker file if a shell ever ran it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.tmp_marker = Path("/tmp") / f"corstrace-pwned-{uuid.uuid4().hex}"
        # Spaces are not needed: ${IFS} splits the words, so the command survives URL parsing in a query.
        self.touch = f"$(touch${{IFS}}{self.tmp_marker})"
        self.backticks = f"`touch${{IFS}}{self.tmp_marker}`"

    def markers(self) -> list[Path]:
        found = [path for path in self.workdir.iterdir() if path.name.startswith("pwned")]
        return found + [self.tmp_marker] if self.tmp_marker.exists() else found

    def cleanup(self) -> None:
        self.tmp_marker.unlink(missing_ok=True)


@pytest.fixture
def planted(tmp_path: Path) -> Any:
    plant = Planted(tmp_path)
    yield plant
    plant.cleanup()


def hostile_request(planted: Planted) -> dict[str, Any]:
    """A record whose method, URL, header names and header values each try to run a command."""
    # Kept as the URL parser writes it, so the expected argv is the text itself.
    url = f"http://127.0.0.1:8000/items/a'b;|x&y[1-2]?q={planted.touch}&r={planted.backticks}&s=%27$HOME"
    return {
        "type": "leg",
        "preflight": False,
        # A token (RFC 9110 tchar allows ' and `), so h11 accepts it: unquoted it would run `touch`.
        "method": "GET`touch'pwned-method'`",
        "url": url,
        "origin": ORIGIN,
        "credentials": "unknown",
        "request_headers": [
            ["host", "; touch /tmp/x ; #"],
            ["origin", ORIGIN],
            ["x-quote", 'it\'s "quoted" $HOME ${HOME} \\ ' + planted.touch],
            ["x-ticks", planted.backticks + " ; touch pwned-semicolon"],
            ["X-`touch'pwned-name'`", "name is a token too"],
            ["x-unicode", "caf\u00e9 \u65e5\u672c \u2028 end"],
        ],
    }


def test_curl_request_snippet_passes_exactly_the_recorded_parts_to_curl(tmp_path: Path, planted: Planted) -> None:
    """Method, URL, header names and values with quotes, $(), backticks and non-ASCII reach curl as one word each."""
    record = hostile_request(planted)
    snippet = build("curlActual", record)
    calls = run_curl_snippet(snippet, tmp_path)
    assert calls == [
        argv(
            "-i",
            "-X",
            record["method"],
            "-g",
            record["url"],
            "-H",
            f"Origin: {ORIGIN}",
            "-H",
            'x-quote: it\'s "quoted" $HOME ${HOME} \\ ' + planted.touch,
            "-H",
            "x-ticks: " + planted.backticks + " ; touch pwned-semicolon",
            "-H",
            "X-`touch'pwned-name'`: name is a token too",
            "-H",
            "x-unicode: caf\u00e9 \u65e5\u672c \u2028 end",
        )
    ]
    assert planted.markers() == []


def test_curl_request_snippet_leaves_out_headers_no_client_can_send(tmp_path: Path, planted: Planted) -> None:
    """A value with NUL, CR or LF, or a name that is not a token, is left out (and said so), never run."""
    record = hostile_request(planted)
    record["request_headers"] = [
        ["x-newline", f"a\n{planted.touch}\ntouch pwned-newline"],
        ["x-cr", "a\rtouch pwned-cr"],
        ["x-nul", "a\0b"],
        [f"x-{planted.touch}", "name with ( and {"],
        ["x-fine", "kept"],
    ]
    record["method"] = "GET"
    snippet = build("curlActual", record)
    assert "left out: header x-newline" in snippet
    assert "left out: header x-nul" in snippet
    calls = run_curl_snippet(snippet, tmp_path)
    assert calls == [argv("-i", "-g", record["url"], "-H", f"Origin: {ORIGIN}", "-H", "x-fine: kept")]
    assert planted.markers() == []


@pytest.mark.parametrize(
    "method",
    ["GET;touch pwned-method", "GET\ntouch pwned-method", "GET$(touch${IFS}pwned-method)", "", "GET touch"],
)
def test_curl_refuses_a_method_that_is_not_a_token(tmp_path: Path, planted: Planted, method: str) -> None:
    """A method outside RFC 9110's token grammar gives no command at all: only a comment saying why."""
    record = hostile_request(planted)
    record["method"] = method
    snippet = build("curlActual", record)
    assert snippet.startswith("# Cannot build a curl command")
    assert "\n" not in snippet
    assert run_curl_snippet(snippet, tmp_path) == []
    assert planted.markers() == []


@pytest.mark.parametrize("url", ["-o/tmp/pwned", "file:///etc/passwd", "javascript:alert(1)", "http://a b/"])
def test_curl_refuses_a_url_that_is_not_http(tmp_path: Path, url: str) -> None:
    """A URL curl would read as an option, or that is not http(s), gives no command."""
    snippet = build("curlActual", {"method": "GET", "url": url, "origin": ORIGIN, "request_headers": []})
    assert snippet.startswith("# Cannot build a curl command")
    assert run_curl_snippet(snippet, tmp_path) == []


def test_curl_preflight_snippet_passes_exactly_the_recorded_parts(tmp_path: Path, planted: Planted) -> None:
    """The preflight's requested method and headers are quoted; a requested header that is not a token is dropped."""
    record = {
        "preflight": True,
        "method": "OPTIONS",
        "requested_method": "PUT'`touch'pwned-rm'`",
        "requested_headers": ["x-`touch'pwned-rh'`", "x-$(touch pwned-bad)", "content-type"],
        "url": hostile_request(planted)["url"],
        "origin": "http://localhost:3000'$(touch${IFS}pwned-origin)'",
    }
    snippet = build("curlPreflight", record)
    calls = run_curl_snippet(snippet, tmp_path)
    assert calls == [
        argv(
            "-i",
            "-X",
            "OPTIONS",
            "-g",
            record["url"],
            "-H",
            f"Origin: {record['origin']}",
            "-H",
            f"Access-Control-Request-Method: {record['requested_method']}",
            "-H",
            "Access-Control-Request-Headers: x-`touch'pwned-rh'`,content-type",
        )
    ]
    assert planted.markers() == []


def test_curl_preflight_refuses_a_requested_method_that_is_not_a_token(tmp_path: Path, planted: Planted) -> None:
    snippet = build(
        "curlPreflight",
        {"requested_method": "PUT\ntouch pwned", "url": "http://127.0.0.1:8000/", "origin": ORIGIN},
    )
    assert snippet.startswith("# Cannot build a curl command")
    assert run_curl_snippet(snippet, tmp_path) == []
    assert planted.markers() == []


def test_curl_of_a_redirected_exchange_starts_at_the_original_url_and_follows(tmp_path: Path) -> None:
    """The first hop's URL, with -L, so curl takes the same redirects the browser took."""
    first = {"method": "GET", "url": "http://127.0.0.1:8000/items/", "origin": ORIGIN, "status": 307}
    second = {
        "method": "GET",
        "url": "http://127.0.0.1:8000/items",
        "origin": ORIGIN,
        "status": 200,
        "redirected_from": "http://127.0.0.1:8000/items/",
    }
    snippet = build("curlActual", first, [first, second])
    assert "followed 1 redirect(s)" in snippet
    assert run_curl_snippet(snippet, tmp_path) == [
        argv("-i", "-g", "-L", "http://127.0.0.1:8000/items/", "-H", f"Origin: {ORIGIN}")
    ]


def test_curl_comments_cannot_be_ended_by_traffic(tmp_path: Path, planted: Planted) -> None:
    """Text from traffic inside a # comment (here a hop URL and a dropped header's name) has its newlines escaped."""
    first = {
        "method": "GET",
        "url": "http://127.0.0.1:8000/a",
        "origin": ORIGIN,
        "status": 302,
        "request_headers": [["x-\ntouch pwned-comment\n", "v"]],
    }
    second = {"method": "GET\ntouch pwned-hop\n", "url": "http://127.0.0.1:8000/b\ntouch pwned-hop-url", "status": 200}
    snippet = build("curlActual", first, [first, second])
    assert run_curl_snippet(snippet, tmp_path) == [
        argv("-i", "-g", "-L", "http://127.0.0.1:8000/a", "-H", f"Origin: {ORIGIN}")
    ]
    assert planted.markers() == []


def test_curl_sends_the_header_bytes_that_were_recorded(tmp_path: Path) -> None:
    """Header values arrive decoded as Latin-1; UTF-8 bytes among them go back to curl as those same bytes."""
    recorded = "caf\u00e9".encode().decode("latin-1")  # what the server recorded for the UTF-8 bytes of 'café'
    snippet = build(
        "curlActual",
        {"method": "GET", "url": "http://127.0.0.1:8000/", "origin": ORIGIN, "request_headers": [["x-name", recorded]]},
    )
    (call,) = run_curl_snippet(snippet, tmp_path)
    assert call[-1] == b"x-name: caf\xc3\xa9"


def test_curl_puts_placeholders_for_redacted_secrets(tmp_path: Path) -> None:
    """A redacted Authorization keeps its scheme and gets an ASCII placeholder, so the preflight is the same."""
    snippet = build(
        "curlActual",
        {
            "method": "GET",
            "url": "http://127.0.0.1:8000/me",
            "origin": ORIGIN,
            "request_headers": [["authorization", "Bearer [redacted]"], ["cookie", "[redacted]"]],
        },
    )
    assert "REDACTED stands for a secret" in snippet
    assert "-b 'name=value'" in snippet
    (call,) = run_curl_snippet(snippet, tmp_path)
    assert call[-2:] == argv("-H", "authorization: Bearer REDACTED")


# --- fetch() ---------------------------------------------------------------------------------------


def js_hostile_request(workdir: Path) -> dict[str, Any]:
    fs_write = f'import("node:fs").then((fs) => fs.writeFileSync({json.dumps(str(workdir / "pwned-js"))}, ""))'
    return {
        "preflight": False,
        "method": "PATCH",
        "url": "http://127.0.0.1:8000/items/${globalThis.pwned=1}/'\"`/?q=</script><script>globalThis.pwned=1</script>",
        "origin": "http://localhost:3000\u2028globalThis.pwned = 1; //",
        "credentials": "include",
        "request_headers": [
            ["x-quote", '"; globalThis.pwned = 1; "'],
            ["x-template", "${globalThis.pwned = 1}`; globalThis.pwned = 2; `"],
            ["x-comment", "*/ globalThis.pwned = 1; /*"],
            # U+0085 and U+00A0: Latin-1, so fetch() takes them; U+2028 (a JS line terminator) is in the Origin above.
            ["x-separator", "a\u0085globalThis.pwned = 1;\u00a0" + fs_write],
            ["x-backslash", '\\\\"); globalThis.pwned = 1; //'],
            ["x-latin1", "caf\u00e9"],
        ],
    }


def test_fetch_snippet_calls_fetch_with_exactly_the_recorded_parts(tmp_path: Path) -> None:
    """Evaluated, the fetch() snippet makes one fetch call with the recorded URL, method and headers, nothing else."""
    record = js_hostile_request(tmp_path)
    snippet = build("fetchSnippet", record, None)
    result = evaluate_fetch_snippet(snippet, tmp_path)
    assert result["error"] is None
    assert result["added"] == []
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith("pwned")] == []
    url = (
        "http://127.0.0.1:8000/items/$%7BglobalThis.pwned=1%7D/'%22%60/"
        "?q=%3C/script%3E%3Cscript%3EglobalThis.pwned=1%3C/script%3E"
    )
    assert result["calls"] == [
        [
            url,
            {
                "method": "PATCH",
                "mode": "cors",
                "credentials": "include",
                "headers": {name: value for name, value in record["request_headers"]},
            },
        ]
    ]
    assert result["logs"] == [[204, {"x-stub": "1"}]]


def test_fetch_snippet_is_ascii_and_cannot_close_a_script_element(tmp_path: Path) -> None:
    """No `<`, no non-ASCII character (so no line separator) and no template literal in the generated code."""
    snippet = build("fetchSnippet", js_hostile_request(tmp_path), None)
    assert snippet.isascii()
    assert "<" not in snippet
    code_lines = [line for line in snippet.splitlines() if not line.lstrip().startswith("//")]
    assert all("`" not in line.split('"')[0] for line in code_lines)


def test_fetch_snippet_refuses_a_method_that_is_not_a_token(tmp_path: Path) -> None:
    record = js_hostile_request(tmp_path)
    record["method"] = 'GET", globalThis.pwned = 1, "'
    snippet = build("fetchSnippet", record, None)
    assert snippet.startswith("// Cannot build a fetch() call")
    result = evaluate_fetch_snippet(snippet, tmp_path)
    assert result == {"calls": [], "logs": [], "added": [], "error": None}


def test_fetch_snippet_leaves_out_values_fetch_would_reject(tmp_path: Path) -> None:
    """A value with CR/LF/NUL, or beyond Latin-1 (a truncation marker), would make fetch() throw before sending."""
    record = {
        "method": "GET",
        "url": "http://127.0.0.1:8000/",
        "origin": ORIGIN,
        "credentials": "omit",
        "request_headers": [["x-newline", "a\nb"], ["x-cut", "abc\u2026[truncated 10 bytes]"], ["x-ok", "1"]],
    }
    result = evaluate_fetch_snippet(build("fetchSnippet", record, None), tmp_path)
    (call,) = result["calls"]
    assert call[1]["headers"] == {"x-cut": "abc?[truncated 10 bytes]", "x-ok": "1"}
    assert all(ord(ch) <= 0xFF for value in call[1]["headers"].values() for ch in value)


def test_fetch_snippet_of_a_blocked_preflight_uses_ascii_placeholders(tmp_path: Path) -> None:
    """Only the preflight was recorded: its requested headers get Latin-1 placeholders (fetch() would throw on '…')."""
    preflight = {
        "preflight": True,
        "method": "OPTIONS",
        "requested_method": "PUT",
        "requested_headers": ["authorization", "content-type", "accept-language"],
        "url": "http://127.0.0.1:8000/items/1",
        "origin": ORIGIN,
        "credentials": "unknown",
    }
    result = evaluate_fetch_snippet(build("fetchSnippet", None, preflight), tmp_path)
    (call,) = result["calls"]
    assert call[1]["method"] == "PUT"
    headers = call[1]["headers"]
    assert sorted(headers) == ["accept-language", "authorization", "content-type"]
    assert all(value.isascii() and value for value in headers.values())


def test_fetch_snippet_puts_placeholders_for_redacted_secrets(tmp_path: Path) -> None:
    record = {
        "method": "GET",
        "url": "http://127.0.0.1:8000/me",
        "origin": ORIGIN,
        "credentials": "unknown",
        "request_headers": [["authorization", "Bearer [redacted]"], ["x-api-key", "[redacted]"]],
    }
    result = evaluate_fetch_snippet(build("fetchSnippet", record, None), tmp_path)
    (call,) = result["calls"]
    assert call[1]["headers"] == {"authorization": "Bearer REDACTED", "x-api-key": "REDACTED"}


# --- Copy fix ----------------------------------------------------------------------------------------

FIX_CALL = 'app.add_middleware(CORSMiddleware, allow_origins=["http://localhost:3000"], allow_methods=["GET", "PUT"])'


@pytest.mark.parametrize(
    ("leg", "expected"),
    [
        ({"fix": "prose", "fix_code": "app.add_middleware(X)"}, "app.add_middleware(X)"),
        ({"fix": FIX_CALL}, FIX_CALL),
        ({"fix": f"Allow PUT: {FIX_CALL}. Then restart."}, FIX_CALL),
        ({"fix": "Send `Access-Control-Expose-Headers: x-total`."}, "Access-Control-Expose-Headers: x-total"),
        (
            {"fix": "Fix the RuntimeError at app.py:3. Or wrap: app = CORSMiddleware(app, ...)."},
            "Fix the RuntimeError at app.py:3. Or wrap: app = CORSMiddleware(app, ...).",
        ),
    ],
    ids=["fix_code", "whole-call", "call-in-prose", "backticks", "prose"],
)
def test_copy_fix_copies_code(leg: dict[str, Any], expected: str) -> None:
    """`fix_code` when present, else the add_middleware call, else the backticked code, else the text."""
    assert build("fixCode", leg) == expected

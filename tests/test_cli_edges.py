"""The command line's rough edges (issue 17 item 8): pipes, stdin, scheme-less URLs, truncated HARs, credentials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corstrace import _har
from corstrace.__main__ import main
from tests.support import run_server
from tests.test_explain import API, DEVTOOLS_HAR, PAGE, _entry

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "http://localhost:3000"
# What a shell reports for a process that a closed pipe ended (128 + SIGPIPE).
PIPE_EXIT = 128 + getattr(signal, "SIGPIPE", 13)


async def _no_cors_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every request 200 without CORS headers: every check of it is blocked."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with run_server(_no_cors_app) as url:
        yield url


def _cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "corstrace", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
        **kwargs,
    )  # fmt: skip


def test_check_into_a_closed_pipe_exits_quietly(server: str) -> None:
    """A reader that went away (`| head -0`) ends check with the SIGPIPE status and no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE, deterministically
    try:
        result = subprocess.run(
            [sys.executable, "-m", "corstrace", "check", server + "/x", "--origin", ORIGIN],
            cwd=ROOT,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (PIPE_EXIT, "")


def _big_har(tmp_path: Path, count: int = 3000) -> Path:
    """A HAR whose report is far larger than a pipe's buffer, so `| head -1` closes the pipe mid-output."""
    cors = {"Origin": PAGE, "Sec-Fetch-Mode": "cors"}
    entries = [_entry("GET", f"{API}/item/{index}", cors, 200, {}, _resourceType="fetch") for index in range(count)]
    path = tmp_path / "big.har"
    path.write_text(json.dumps({"log": {"entries": entries}}))
    return path


def test_explain_piped_into_head_exits_quietly(tmp_path: Path) -> None:
    """`corstrace explain big.har | head -1` prints one line and nothing on stderr."""
    har = _big_har(tmp_path)
    command = f"{sys.executable} -m corstrace explain {har} | head -1"
    result = subprocess.run(
        ["sh", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.stderr == ""
    assert result.stdout.startswith("BLOCKED  GET") and result.stdout.count("\n") == 1


def test_explain_dash_reads_the_har_from_stdin() -> None:
    """`corstrace explain -` reads the HAR from standard input and judges it like a file."""
    result = _cli("explain", "-", "--json", input=json.dumps(DEVTOOLS_HAR))
    assert (result.returncode, result.stderr) == (1, "")
    data = json.loads(result.stdout)
    assert data["file"] == "-"
    assert data["summary"]["by_reason"] == {"MethodDisallowedByPreflightResponse": 1, "MissingAllowOriginHeader": 1}


def test_explain_dash_names_stdin_in_errors() -> None:
    """An unreadable HAR on stdin is one line that says it came from stdin."""
    result = _cli("explain", "-", input='{"log": {"entries": [')
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("corstrace explain: <stdin>: truncated JSON") and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("url", "suggestion"),
    [
        ("localhost:8000/items", "http://localhost:8000/items"),
        ("127.0.0.1:8000/items", "http://127.0.0.1:8000/items"),
        ("api.example.com/items", "https://api.example.com/items"),
        ("//api.example.com/items", "https://api.example.com/items"),
    ],
)
def test_url_without_a_scheme_gets_a_did_you_mean_hint(
    capsys: pytest.CaptureFixture[str], url: str, suggestion: str
) -> None:
    """A scheme-less URL is a usage error that suggests the URL with a scheme, as the --origin error does."""
    code = main(["check", url, "--origin", ORIGIN])
    err = capsys.readouterr().err
    assert code == 2
    assert f"did you mean {suggestion!r}?" in err


# A HAR as DevTools writes it (indented), cut at every point: each cut must read as truncated, never as
# json's "Unterminated string starting at at line 1 ...".
_HAR_TEXT = json.dumps(
    {"log": {"entries": [_entry("GET", API + "/caf\u00e9?q=1.5e3", {"X-N": "a\\b", "X-On": "true"}, 200, {})]}},
    indent=2,
)


def test_a_har_cut_anywhere_is_reported_as_truncated() -> None:
    """Every proper prefix of a HAR (inside strings, escapes, numbers, literals) is a 'truncated JSON' error."""
    wrong = []
    for end in range(1, len(_HAR_TEXT)):
        try:
            _har.parse(_HAR_TEXT[:end], "x.har")
        except _har.HarError as exc:
            if "truncated JSON" not in str(exc):
                wrong.append((end, str(exc)))
        else:
            wrong.append((end, "parsed"))
    assert wrong == []


def test_truncated_har_inside_a_string_names_the_end_of_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Cut inside a string, the message says truncated and where the file ends, not where the string starts."""
    text = '{"log": {"entries": [{"request": {"url": "http://api.te'
    path = tmp_path / "cut.har"
    path.write_text(text)
    code = main(["explain", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"corstrace explain: {path}: truncated JSON: it ends at line 1 column {len(text) + 1} before the HAR is "
        "complete (was the export or the copy interrupted?)\n"
    )


def _blocked_har(tmp_path: Path, request_headers: dict[str, str], **extra: Any) -> str:
    """One fetch the browser blocked (status 0, provisional headers), as DevTools exports it."""
    entry = _entry("GET", API + "/me", request_headers, 0, {}, _error="net::ERR_FAILED", _resourceType="fetch")
    entry["request"].update(extra)
    path = tmp_path / "blocked.har"
    path.write_text(json.dumps({"log": {"entries": [entry]}}))
    return str(path)


@pytest.mark.parametrize(
    ("headers", "extra"),
    [
        ({"Referer": PAGE + "/"}, {"cookies": [{"name": "session", "value": "abc"}]}),
        ({"Referer": PAGE + "/", "Sec-Fetch-Storage-Access": "none"}, {}),
        ({"Referer": PAGE + "/", "Cookie": "session=abc"}, {}),
    ],
    ids=["request.cookies", "sec-fetch-storage-access", "cookie-header"],
)
def test_suggested_check_for_a_credentialed_entry_has_credentials(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, headers: dict[str, str], extra: dict[str, Any]
) -> None:
    """Cookies in the HAR (even only in `request.cookies`) or Sec-Fetch-Storage-Access mean `--credentials`."""
    code = main(["explain", _blocked_har(tmp_path, headers, **extra), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert data["items"][0]["check_command"] == f"corstrace check {API}/me --origin {PAGE} --credentials"


def test_suggested_check_without_credential_evidence_says_when_to_add_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """When the HAR cannot tell the credentials mode, the text says to add --credentials if the page sends them."""
    code = main(["explain", _blocked_har(tmp_path, {"Referer": PAGE + "/"})])
    out = capsys.readouterr().out
    assert code == 1
    assert f"    corstrace check {API}/me --origin {PAGE}\n" in out
    assert "add --credentials if the page sends credentials" in out

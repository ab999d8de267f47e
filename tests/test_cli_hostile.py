"""Hostile traffic through `check` and `explain` (issue 13 items 5 and 6): nothing runs, nothing leaks, nothing escapes.

A HAR is someone else's traffic: its URLs, header names and values, methods and origins are chosen by
whoever wants the developer's terminal. The suggested `corstrace check` commands are pasted into a
shell, so they are run here through real bash with a fake `corstrace` on PATH that records its argv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from corstrace.__main__ import main
from tests.test_check import trickling_server
from tests.test_explain import API, PAGE, _entry

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="bash runs the pasted commands")

# Characters that must never reach a terminal raw: C0 controls (newline aside), DEL and C1 controls.
RAW_CONTROLS = {chr(c) for c in range(0x20) if c != 0x0A} | {chr(0x7F)} | {chr(c) for c in range(0x80, 0xA0)}
BIDI = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: makes a command read differently from what it runs (Trojan Source)


def _blocked(method: str, url: str, headers: dict[str, str]) -> dict[str, Any]:
    """A fetch the browser blocked: status 0, no response headers, so explain suggests a check command."""
    return _entry(method, url, headers, 0, {}, _error="net::ERR_FAILED", _resourceType="fetch")


REFERER = {"Referer": PAGE + "/"}
# (HAR entry, the argv the pasted command must give `corstrace`, or None when no command may be suggested)
HOSTILE: list[tuple[dict[str, Any], list[str] | None]] = [
    (
        _blocked("GET", API + "/a'$(touch pwned1)", REFERER),
        ["check", API + "/a'$(touch pwned1)", "--origin", PAGE],
    ),
    (
        _blocked("GET", API + "/b", {**REFERER, "X-Trace": "`touch pwned2`", "X-Q": "'; touch pwned3; '"}),
        [
            "check",
            API + "/b",
            "--origin",
            PAGE,
            "--header",
            "X-Trace: `touch pwned2`",
            "--header",
            "X-Q: '; touch pwned3; '",
        ],
    ),  # fmt: skip
    (
        # The URL parser drops newlines and tabs and percent-encodes other controls: so does the command.
        _blocked("GET", API + "/c\n$(touch pwned4)\t\x1b[2J\x9b", REFERER),
        ["check", API + "/c$(touch pwned4)%1B[2J%C2%9B", "--origin", PAGE],
    ),
    (
        _blocked("GET", API + "/d", {**REFERER, "X-Esc": "a\x1b]0;owned\x07b", "X-Bidi": f"x{BIDI}y"}),
        [
            "check",
            API + "/d",
            "--origin",
            PAGE,
            "--header",
            "X-Esc: a\x1b]0;owned\x07b",
            "--header",
            f"X-Bidi: x{BIDI}y",
        ],
    ),  # fmt: skip
    (
        _blocked("GET", API + "/e", {"Origin": "http://app.test:3000'; touch pwned5; '", "Sec-Fetch-Mode": "cors"}),
        ["check", API + "/e", "--origin", "http://app.test:3000'; touch pwned5; '"],
    ),
    (
        # A header the browser could never send (a newline in the value, a name that is not a token) is left out.
        _blocked("GET", API + "/f", {**REFERER, "X-Split": "a\r\ntouch pwned6", "X-$(touch pwned7)": "1"}),
        ["check", API + "/f", "--origin", PAGE],
    ),
    (_blocked("PUT'$(touch pwned8)'", API + "/g", REFERER), None),  # not an HTTP method: no command at all
]


def _explain(capsys: pytest.CaptureFixture[str], tmp_path: Path, entries: list[dict[str, Any]], *args: str) -> str:
    path = tmp_path / "hostile.har"
    path.write_text(json.dumps({"log": {"entries": entries}}))
    main(["explain", str(path), *args])
    return capsys.readouterr().out


def _fake_corstrace(tmp_path: Path) -> Path:
    """A `corstrace` executable that appends its argv, as JSON, to $ARGV_LOG."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "corstrace"
    script.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "with open(os.environ['ARGV_LOG'], 'a') as log:\n    log.write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    script.chmod(0o755)
    return bin_dir


def _paste(tmp_path: Path, command: str) -> list[list[str]]:
    """Run ``command`` as bash runs a pasted line; returns the argv of each `corstrace` it started."""
    log = tmp_path / "argv.log"
    log.write_text("")
    env = {**os.environ, "PATH": f"{_fake_corstrace(tmp_path)}{os.pathsep}{os.environ['PATH']}", "ARGV_LOG": str(log)}
    work = tmp_path / "cwd"
    work.mkdir()
    subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, timeout=60)
    assert sorted(path.name for path in work.iterdir()) == [], f"the pasted command ran something: {command!r}"
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.parametrize(("entry", "argv"), HOSTILE, ids=[f"hostile-{index}" for index in range(len(HOSTILE))])
def test_pasted_check_command_runs_exactly_the_intended_argv(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, entry: dict[str, Any], argv: list[str] | None
) -> None:
    """Each suggested command, pasted into bash, runs `corstrace` once with exactly the intended argv, nothing else."""
    data = json.loads(_explain(capsys, tmp_path, [entry], "--json"))
    command = data["items"][0]["check_command"]
    if argv is None:
        assert command is None
        return
    assert _paste(tmp_path, command) == [argv]


def test_printed_check_commands_are_the_json_ones_and_terminal_safe(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The text report prints the same commands, and no raw control or bidi character reaches the terminal."""
    entries = [entry for entry, _ in HOSTILE]
    commands = [item["check_command"] for item in json.loads(_explain(capsys, tmp_path, entries, "--json"))["items"]]
    out = _explain(capsys, tmp_path, entries)
    assert RAW_CONTROLS.isdisjoint(out) and BIDI not in out
    for command in filter(None, commands):
        assert f"    {command}\n" in out


SECRETS = ["s3cr3t-bearer", "s3cr3t-api-key", "s3cr3t-cookie", "s3cr3t-query"]
_SECRET_HEADERS = {
    "Authorization": "Bearer s3cr3t-bearer",
    "X-API-Key": "s3cr3t-api-key",
    "Cookie": "session=s3cr3t-cookie",
}
SECRET_HAR = [
    _blocked("GET", API + "/me?access_token=s3cr3t-query", {**REFERER, **_SECRET_HEADERS}),
    _entry(
        "GET",
        API + "/me?access_token=s3cr3t-query",
        {"Origin": PAGE, "Sec-Fetch-Mode": "cors", **_SECRET_HEADERS},
        200,
        {"Content-Type": "application/json"},
        _resourceType="fetch",
    ),
]


@pytest.mark.parametrize("form", ["text", "json"])
def test_explain_never_repeats_a_har_secret(capsys: pytest.CaptureFixture[str], tmp_path: Path, form: str) -> None:
    """Bearer tokens, API keys, cookies and secret query values appear nowhere, suggested commands included."""
    out = _explain(capsys, tmp_path, SECRET_HAR, *(["--json"] if form == "json" else []))
    assert [secret for secret in SECRETS if secret in out] == []


def test_suggested_command_uses_placeholders_for_secrets(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The command keeps the headers' names (they decide the preflight) with placeholders for their values."""
    command = json.loads(_explain(capsys, tmp_path, SECRET_HAR[:1], "--json"))["items"][0]["check_command"]
    assert "'Authorization: Bearer <token>'" in command and "'X-API-Key: <secret>'" in command
    assert command.endswith(" --credentials")


_ESCAPING = (
    b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: http://evil\x1b]0;owned\x07\x1b[2J\x9b31m\r\n"
    b"Access-Control-Expose-Headers: x\x7fy\r\nContent-Length: 2\r\n\r\nok"
)


@pytest.mark.parametrize("form", ["text", "json"])
def test_check_output_shows_terminal_escapes_visibly(capsys: pytest.CaptureFixture[str], form: str) -> None:
    """Escape sequences a server sends reach the terminal as visible text (`\\x1b`), never as raw bytes."""
    with trickling_server(_ESCAPING, interval=0.0) as (url, _):
        main(["check", url + "/x", "--origin", "http://localhost:3000", *(["--json"] if form == "json" else [])])
    out = capsys.readouterr().out
    assert RAW_CONTROLS.isdisjoint(out)
    if form == "text":
        assert "http://evil\\x1b]0;owned\\x07\\x1b[2J\\x9b31m" in out
    else:
        assert json.loads(out)["failed_parameter"] == "http://evil\x1b]0;owned\x07\x1b[2J\x9b31m"


def test_explain_output_shows_terminal_escapes_visibly(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A HAR's URLs and header values with escape sequences are printed escaped in both forms."""
    entry = _entry(
        "GET",
        API + "/x\x1b[2J",
        {"Origin": PAGE, "Sec-Fetch-Mode": "cors"},
        200,
        {"Access-Control-Allow-Origin": f"http://evil\x9b2J{BIDI}", "Access-Control-X\x1b[31m": "1"},
        _resourceType="fetch",
    )
    for args in ((), ("--json",)):
        out = _explain(capsys, tmp_path, [entry], *args)
        assert RAW_CONTROLS.isdisjoint(out) and BIDI not in out


def test_check_redacts_secret_query_values_in_every_message(capsys: pytest.CaptureFixture[str]) -> None:
    """A token in the checked URL's query is redacted in the browser's messages too, in both forms."""
    with trickling_server(_ESCAPING, interval=0.0) as (url, _):
        for args in ((), ("--json",)):
            main(["check", url + "/x?access_token=s3cr3t-query", "--origin", "http://localhost:3000", *args])
            assert "s3cr3t-query" not in capsys.readouterr().out

"""Control characters from traffic reach a terminal as visible escapes, never as commands (issue 13 item 6)."""

from __future__ import annotations

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from corstrace._escape import escape_all, escape_control

# What ConsoleRenderer printed raw: a retitle (OSC 0 … BEL) and a clear-screen (CSI 2 J) from a decoded path,
# a reverse index from an Origin.
PATH_ATTACK = "/items/\x1b]0;pwned\x07\x1b[2J"
ORIGIN_ATTACK = "http://evil.test\x1bM"


def test_the_issues_path_payload_is_shown_not_obeyed() -> None:
    assert escape_control(PATH_ATTACK) == "/items/\\x1b]0;pwned\\x07\\x1b[2J"


def test_the_issues_origin_payload_is_shown_not_obeyed() -> None:
    assert escape_control(ORIGIN_ATTACK) == "http://evil.test\\x1bM"


@pytest.mark.parametrize(
    ("char", "shown"),
    [
        ("\x00", "\\x00"),
        ("\r", "\\x0d"),
        ("\t", "\\x09"),
        ("\x7f", "\\x7f"),
        ("\x9b", "\\x9b"),  # C1 CSI: a one-byte escape sequence on some terminals
        ("\x85", "\\x85"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
        ("\u202e", "\\u202e"),  # right-to-left override: "exe.txt" shown as "txt.exe"
        ("\u202a", "\\u202a"),
        ("\u2066", "\\u2066"),
        ("\u2069", "\\u2069"),
        ("\u200b", "\\u200b"),
        ("\ufeff", "\\ufeff"),
        ("\udcff", "\\udcff"),  # a lone surrogate from a surrogateescape decode: print() would raise
        ("\U000e0041", "\\U000e0041"),  # a tag character: invisible
    ],
)
def test_dangerous_code_points_are_escaped_visibly(char: str, shown: str) -> None:
    assert escape_control(f"a{char}b") == f"a{shown}b"


@pytest.mark.parametrize("text", ["plain ascii", "café", "日本語", "emoji 🎉", "C:\\Users\\dev", ""])
def test_printable_text_comes_back_as_the_same_object(text: str) -> None:
    """The fast path: nothing to escape costs one C-speed scan and no copy; backslashes stay as they are."""
    assert escape_control(text) is text


def test_keep_newlines_keeps_line_feeds_and_still_escapes_carriage_returns() -> None:
    """A traceback stays multi-line; a CR (which overwrites the line on a terminal) is still shown."""
    assert escape_control("line 1\nline 2\r\x1b[2K", keep_newlines=True) == "line 1\nline 2\\x0d\\x1b[2K"


@given(st.text())
def test_escaped_text_holds_no_dangerous_code_point_and_encodes_strictly(text: str) -> None:
    shown = escape_control(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029\u202e\u2066" for c in shown)
    shown.encode("utf-8")


def test_escape_all_escapes_every_string_of_an_event() -> None:
    event = {"path": PATH_ATTACK, "request_headers": [["origin", ORIGIN_ATTACK]], "status": 200, "ok": ("a\x07",)}
    shown = escape_all(event)
    assert shown == {
        "path": "/items/\\x1b]0;pwned\\x07\\x1b[2J",
        "request_headers": [["origin", "http://evil.test\\x1bM"]],
        "status": 200,
        "ok": ("a\\x07",),
    }
    assert event["path"] == PATH_ATTACK  # the input is not changed


def test_escape_all_returns_a_clean_event_itself() -> None:
    """No copies for the common case."""
    event = {"path": "/items", "request_headers": [["origin", "http://localhost:5173"]], "status": 200}
    assert escape_all(event) is event


def test_console_rendered_event_holds_no_escape_character() -> None:
    """Through structlog's ConsoleRenderer, as a developer's terminal receives it."""
    renderer = structlog.dev.ConsoleRenderer(colors=False)
    text = renderer(
        None, "warning", escape_all({"event": "cors.blocked", "path": PATH_ATTACK, "origin": ORIGIN_ATTACK})
    )
    assert "\x1b" not in text and "\x07" not in text and "\\x1b]0;pwned" in text

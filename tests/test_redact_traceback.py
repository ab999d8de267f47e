"""An internal error is logged as plain traceback text: no locals, no secrets, bounded (issue 13 item 8)."""

from __future__ import annotations

import io

import pytest
import structlog

from corstrace._limits import EXCEPTION_TEXT_LIMIT
from corstrace._redact import Redactor
from corstrace._traceback import format_exception_plain


def _raise_holding(secret: str) -> None:
    held_by_a_local = secret.upper()  # noqa: F841 - the local rich would print
    raise RuntimeError("internal error in corstrace")


def _caught(secret: str) -> BaseException:
    try:
        _raise_holding(secret)
    except RuntimeError as exc:
        return exc
    raise AssertionError("unreachable")


def test_the_traceback_has_frames_and_the_exception_but_no_locals() -> None:
    text = format_exception_plain(_caught("bearer-token-abc"))
    assert "_raise_holding" in text and text.endswith("RuntimeError: internal error in corstrace")
    assert "BEARER-TOKEN-ABC" not in text


def test_rendered_by_structlog_with_rich_installed_no_local_is_printed() -> None:
    """ConsoleRenderer prints a string ``exception`` as it is; with ``exc_info`` it would show rich's locals."""
    pytest.importorskip("rich")
    renderer = structlog.dev.ConsoleRenderer(colors=False)
    exc = _caught("bearer-token-abc")
    text = renderer(None, "error", {"event": "corstrace.internal_error", "exception": format_exception_plain(exc)})
    assert "_raise_holding" in text and "BEARER-TOKEN-ABC" not in text


def test_the_requests_secrets_are_scrubbed_from_the_message() -> None:
    secrets = Redactor().secrets([("Authorization", "Bearer tok-5f3a9c2e7b")])
    try:
        raise ValueError("upstream refused Bearer tok-5f3a9c2e7b")
    except ValueError as exc:
        text = format_exception_plain(exc, secrets=secrets)
    assert "tok-5f3a9c2e7b" not in text and "ValueError: upstream refused Bearer [redacted]" in text


def test_a_chained_exception_shows_its_cause() -> None:
    try:
        try:
            raise KeyError("origin")
        except KeyError as inner:
            raise RuntimeError("lookup failed") from inner
    except RuntimeError as exc:
        text = format_exception_plain(exc)
    assert "KeyError: 'origin'" in text and "direct cause" in text and text.endswith("RuntimeError: lookup failed")


def test_control_characters_are_escaped_and_lines_kept() -> None:
    try:
        raise ValueError("bad origin http://evil.test\x1b]0;pwned\x07")
    except ValueError as exc:
        text = format_exception_plain(exc)
    assert "\x1b" not in text and "\\x1b]0;pwned\\x07" in text and "\n" in text


def test_a_huge_message_is_cut_in_the_middle_keeping_the_last_line_end() -> None:
    try:
        raise ValueError("x" * 100_000 + " END")
    except ValueError as exc:
        text = format_exception_plain(exc)
    assert len(text) <= EXCEPTION_TEXT_LIMIT and text.startswith("Traceback") and text.endswith(" END")


def test_an_exception_whose_str_raises_is_still_formatted() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    text = format_exception_plain(Broken())
    assert "Broken" in text


def test_the_output_can_be_written_to_any_terminal() -> None:
    """A lone surrogate in a message would make a strict UTF-8 stream raise."""
    try:
        raise ValueError(b"\xff".decode("utf-8", "surrogateescape"))
    except ValueError as exc:
        text = format_exception_plain(exc)
    io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict").write(text)

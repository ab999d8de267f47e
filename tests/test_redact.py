"""Secrets are redacted at capture time; names and schemes stay, so CORS debugging keeps what it needs."""

from __future__ import annotations

import pytest

from corstrace._redact import REDACTED, Redactor, redact_url


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("Authorization", "Bearer abc.def", f"Bearer {REDACTED}"),
        ("authorization", "Basic dXNlcjpwYXNz", f"Basic {REDACTED}"),
        ("Authorization", "opaque-token-without-scheme", REDACTED),
        ("Cookie", "session=abc; theme=dark", REDACTED),
        ("Set-Cookie", "session=abc; HttpOnly", REDACTED),
        ("X-Api-Key", "k", REDACTED),
        ("X-CSRF-Token", "t", REDACTED),
        ("X-Session-Id", "s", REDACTED),
        ("Content-Type", "application/json", "application/json"),
        ("Origin", "http://localhost:3000", "http://localhost:3000"),
    ],
)
def test_header_values_are_redacted_by_name(name: str, value: str, shown: str) -> None:
    """Sensitive header values are replaced (keeping an auth scheme); others pass unchanged."""
    assert Redactor().headers([(name, value)]) == [[name, shown]]


def test_configured_names_are_redacted_case_insensitively() -> None:
    """redact_headers=[...] adds names, matched whatever their case."""
    assert Redactor(["X-Tenant"]).headers([("x-tenant", "acme")]) == [["x-tenant", REDACTED]]


def test_a_name_seen_as_plain_is_remembered_but_never_leaks_a_secret() -> None:
    """The plain-name memo never makes a sensitive name plain, however often it is seen."""
    redactor = Redactor()
    for _ in range(3):
        assert redactor.headers([("accept", "*/*"), ("cookie", "a=1")]) == [["accept", "*/*"], ["cookie", REDACTED]]


def test_plain_name_memo_is_bounded() -> None:
    """Random header names from a client cannot grow the memo without limit."""
    redactor = Redactor()
    redactor.headers([(f"x-random-{n}", "v") for n in range(5000)])
    assert len(redactor._plain) <= 1024


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://a.test/x", "http://a.test/x"),
        ("http://a.test/x?page=2", "http://a.test/x?page=2"),
        ("http://a.test/x?token=s3cret&page=2", f"http://a.test/x?token={REDACTED}&page=2"),
        ("http://a.test/x?api_key=s3cret", f"http://a.test/x?api_key={REDACTED}"),
    ],
)
def test_secret_query_values_are_redacted(url: str, expected: str) -> None:
    """Query parameters named like secrets lose their values; the rest of the URL is unchanged."""
    assert redact_url(url) == expected

"""Fetch-standard primitives behind the engine: safelisted request headers, preflight need, origin serialization."""

from __future__ import annotations

import pytest

from corstrace.engine import (
    cors_unsafe_request_header_names,
    is_cors_safelisted_request_header,
    needs_preflight,
    serialize_origin,
)

SAFE = [
    ("accept", "*/*"),
    ("accept", "application/json, text/plain;q=0.9"),
    ("accept", "a" * 128),
    ("accept-language", "fr"),
    ("accept-language", "en-US,en;q=0.9"),
    ("content-language", "de-DE, *"),
    ("content-type", "text/plain"),
    ("content-type", "text/plain;charset=utf-8"),
    ("content-type", "Text/Plain;charset=utf-8"),
    ("content-type", "application/x-www-form-urlencoded"),
    ("content-type", "multipart/form-data; boundary=something"),
    ("content-type", "text/plain;"),
    ("content-type", "text/plain;garbage"),
    ("content-type", " text/plain "),
    ("Content-Type", "TEXT/PLAIN"),
    ("range", "bytes=100-200"),
    ("range", "bytes=200-"),
    ("range", "bytes=0-0"),
    ("dpr", "2"),
    ("device-memory", "0.5"),
    ("width", "1024"),
    ("viewport-width", "800"),
    ("save-data", "on"),
    ("rtt", "100"),
    ("ect", "4g"),
    ("downlink", "1.5"),
]
UNSAFE = [
    ("accept", '"'),
    ("accept", "a" * 129),
    ("accept", "text/html\x01"),
    ("accept", "{json}"),
    ("accept-language", "\x01"),
    ("accept-language", "@"),
    ("accept-language", "fr_FR"),
    ("content-language", "\x01"),
    ("content-language", "@"),
    ("content-type", "text/html"),
    ("content-type", "application/json"),
    ("content-type", "text /plain"),
    ("content-type", "text\t/\tplain"),
    ("content-type", "text/plain,"),
    ("content-type", ",text/plain"),
    ("content-type", "text/plain,x/x"),
    ("content-type", "text/plain\v"),
    ("content-type", "text/plain\f"),
    ("content-type", "application/www-form-urlencoded"),
    ("content-type", "text/plain;\x7f"),
    ("content-type", 'multipart/form-data;"'),
    ("content-type", "text/plain; long=" + "a" * 120),
    ("content-type", ""),
    ("content-type", "text/"),
    ("content-type", "/plain"),
    ("range", "bytes 0-"),
    ("range", "bytes 100-200"),
    ("range", " bytes=100-200"),
    ("range", "bytes=100-200 "),
    ("range", "bytes= 100-200"),
    ("range", "bytes=100 -200"),
    ("range", "bytes=-200"),
    ("range", "bytes=100-200,300-400"),
    ("range", "bytes=200-100"),
    ("range", "bytes=" + "1" * 61 + "-"),
    ("range", "MB=100-200"),
    ("range", "bytes="),
    ("range", "bytes=-"),
    ("range", "bytes=a-b"),
    ("last-event-id", "abc123"),
    ("last-event-id", '"'),
    ("authorization", "Bearer x"),
    ("test", "hi"),
    ("x-requested-with", "XMLHttpRequest"),
    ("device-memory", ""),
    ("dpr", ""),
    ("width", ""),
    ("viewport-width", ""),
    ("dpr", "two"),
    ("save-data", "yes"),
    ("rtt", "abc"),
    ("ect", "5g"),
    ("downlink", "fast"),
]


@pytest.mark.parametrize(("name", "value"), SAFE, ids=repr)
def test_safelisted(name: str, value: str) -> None:
    """WPT cors-no-preflight / cors-safelisted-request-header: these never need a preflight."""
    assert is_cors_safelisted_request_header(name, value)
    assert not needs_preflight("GET", ((name, value),))


@pytest.mark.parametrize(("name", "value"), UNSAFE, ids=repr)
def test_not_safelisted(name: str, value: str) -> None:
    """WPT cors-preflight-not-cors-safelisted / cors-safelisted-request-header: these need a preflight."""
    assert not is_cors_safelisted_request_header(name, value)
    assert needs_preflight("GET", ((name, value),))
    assert cors_unsafe_request_header_names(((name, value),)) == [name.lower()]


def test_safelisted_total_over_1024_bytes() -> None:
    """When the safelisted values add up to more than 1024 bytes, every one of them counts as unsafe."""
    headers = (
        ("accept", "a" * 128),
        ("accept-language", "b" * 128),
        ("content-language", "c" * 128),
        ("content-type", "text/plain;x=" + "d" * 115),
        ("dpr", "1" * 128),
        ("device-memory", "2" * 128),
        ("width", "3" * 128),
        ("viewport-width", "4" * 128),  # exactly 1024 bytes so far: still fine
        ("range", "bytes=1-2"),
        ("x-custom", "1"),
    )
    assert cors_unsafe_request_header_names(headers) == sorted(name for name, _ in headers)
    assert cors_unsafe_request_header_names(headers[:8]) == []


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
def test_safelisted_methods(method: str) -> None:
    """GET, HEAD and POST need no preflight."""
    assert not needs_preflight(method, ())


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "patch", "OPTIONS", "get", "SUPER"])
def test_other_methods(method: str) -> None:
    """Any other method, compared byte for byte, needs a preflight (fetch() only upper-cases the six standard ones)."""
    assert needs_preflight(method, ())


def test_unsafe_names_sorted_lowercase_deduplicated() -> None:
    """The names come out as Access-Control-Request-Headers: sorted, lower-case, once each."""
    headers = (
        ("X-Zed", "1"),
        ("x-alpha", "1"),
        ("X-ALPHA", "2"),
        ("Content-Type", "application/json"),
        ("Accept", "*/*"),
        ("Content-Language", "fr"),
    )
    assert cors_unsafe_request_header_names(headers) == ["content-type", "x-alpha", "x-zed"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("host", "x"),
        ("connection", "keep-alive"),
        ("content-length", "3"),
        ("cookie", "a=1"),
        ("origin", "http://a"),
        ("referer", "http://a/"),
        ("accept-encoding", "gzip, br"),
        ("user-agent", "Mozilla/5.0 (X11)"),
        ("priority", "u=1, i"),
        ("sec-fetch-mode", "cors"),
        ("sec-fetch-site", "cross-site"),
        ("sec-ch-ua", '"Chromium";v="156"'),
        ("sec-ch-ua-platform", '"Linux"'),
        ("proxy-authorization", "x"),
        ("access-control-request-method", "PUT"),
        ("te", "trailers"),
        ("x-http-method-override", "TRACE"),
    ],
    ids=repr,
)
def test_browser_and_forbidden_headers_ignored(name: str, value: str) -> None:
    """Headers a page cannot set never count: they are the browser's own or forbidden."""
    assert cors_unsafe_request_header_names(((name, value),)) == []


def test_method_override_with_allowed_method_counts() -> None:
    """X-HTTP-Method-Override is forbidden only when it carries a forbidden method."""
    assert cors_unsafe_request_header_names((("X-HTTP-Method-Override", "PUT"),)) == ["x-http-method-override"]


def test_what_chromium_actually_sent() -> None:
    """The headers Chromium 156 put on a fetch() with Authorization and X-A yield its ACRH, `authorization,x-a`."""
    seen = (
        ("host", "127.0.0.1:42173"),
        ("connection", "keep-alive"),
        ("sec-ch-ua-platform", '"Linux"'),
        ("authorization", "x"),
        ("x-a", "1"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156"),
        ("sec-ch-ua", '"Not:A-Brand";v="8", "Chromium";v="156"'),
        ("sec-ch-ua-mobile", "?0"),
        ("accept", "*/*"),
        ("origin", "http://localhost:41637"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "cors"),
        ("sec-fetch-dest", "empty"),
        ("referer", "http://localhost:41637/"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("accept-language", "en-US,en;q=0.9"),
    )
    assert cors_unsafe_request_header_names(seen) == ["authorization", "x-a"]


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://127.0.0.1:8000/items?x=1", "http://127.0.0.1:8000"),
        ("http://Example.COM:80/path", "http://example.com"),
        ("HTTPS://a.test:443", "https://a.test"),
        ("https://a.test:8443/", "https://a.test:8443"),
        ("http://a.test:0080/", "http://a.test"),
        ("http://user:pass@a.test/", "http://a.test"),
        ("http://[::1]:8000/", "http://[::1]:8000"),
        ("ws://a.test:80/socket", "ws://a.test"),
        ("http://a.test#frag", "http://a.test"),
        ("file:///etc/passwd", "null"),
        ("data:text/plain,hi", "null"),
        ("about:blank", "null"),
        ("not a url", "null"),
        ("", "null"),
        ("http://", "null"),
        ("http://a.test:port/", "null"),
        ("http://a b/", "null"),
    ],
    ids=repr,
)
def test_serialize_origin(url: str, origin: str) -> None:
    """The ASCII serialization of a URL's origin: lower-case scheme and host, default port omitted."""
    assert serialize_origin(url) == origin


@pytest.mark.parametrize(
    ("status", "method", "becomes_get"),
    [
        (301, "POST", True),
        (302, "POST", True),
        (301, "PUT", False),
        (303, "PUT", True),
        (303, "GET", False),
        (303, "HEAD", False),
        (307, "POST", False),
        (308, "POST", False),
    ],
)
def test_a_redirect_turns_the_request_into_a_get_only_where_fetch_says(
    status: int, method: str, becomes_get: bool
) -> None:
    from corstrace._fetch import redirect_becomes_get

    assert redirect_becomes_get(status, method) is becomes_get


def test_default_ports_are_the_url_standards_and_numbers() -> None:
    from corstrace._fetch import default_port

    assert [default_port(s) for s in ("http", "HTTPS", "ws", "wss", "ftp", "file", "gopher")] == [
        80, 443, 80, 443, 21, None, None,
    ]  # fmt: skip

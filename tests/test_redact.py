"""Secrets are redacted at capture time; names, schemes and what CORS needs stay, so debugging keeps its facts."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corstrace._redact import (
    MIN_SECRET_LENGTH,
    REDACTED,
    Redactor,
    looks_secret,
    redact_text,
    redact_url,
    scrub,
)
from tests.secrets_corpus import CORPUS, FRONTEND, SECRET_HEADER_NAMES, assert_no_leaks, find_leaks, make_corpus

# --- the corpus itself -------------------------------------------------------------------------------------


def test_the_corpus_finds_every_planted_secret_in_its_own_raw_input() -> None:
    """A search that finds nothing in the unredacted input would prove nothing about the redacted one."""
    raw = [CORPUS.request_headers, CORPUS.target, CORPUS.response_headers, CORPUS.exception_message]
    assert len(find_leaks(*raw)) == len(CORPUS.planted)


def test_corpora_from_different_seeds_plant_different_secrets() -> None:
    """Needles are random: no output can pass by happening to avoid one fixed string."""
    assert not find_leaks([p.value for p in make_corpus(1).planted], corpus=make_corpus(2))


# --- headers -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("Authorization", "Bearer abc.def", f"Bearer {REDACTED}"),
        ("authorization", "Basic dXNlcjpwYXNz", f"Basic {REDACTED}"),
        ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIA/x, Signature=abc", f"AWS4-HMAC-SHA256 {REDACTED}"),
        ("Authorization", "opaque-token-without-scheme", REDACTED),
        ("Cookie", "session=abc; theme=dark", REDACTED),
        ("X-Api-Key", "k", REDACTED),
        ("X-CSRF-Token", "t", REDACTED),
        ("X-Session-Id", "s", REDACTED),
        ("X-Custom-Header", "Bearer abc", f"Bearer {REDACTED}"),
        ("Content-Type", "application/json", "application/json"),
        ("Origin", "http://localhost:3000", "http://localhost:3000"),
    ],
)
def test_header_values_are_redacted_by_name(name: str, value: str, shown: str) -> None:
    """Sensitive header values are replaced (keeping an auth scheme); others pass unchanged."""
    assert Redactor().headers([(name, value)]) == [[name, shown]]


def test_no_planted_request_header_secret_survives() -> None:
    """Every request header of the corpus: names issue 13 listed, families, tokens, Referer, JWT under any name."""
    assert_no_leaks(Redactor().headers(CORPUS.request_headers))


def test_no_planted_response_header_secret_survives() -> None:
    """Location (userinfo, ?code=, #access_token=), Content-Location, Set-Cookie, Link, Refresh."""
    assert_no_leaks(Redactor().headers(CORPUS.response_headers))


def test_values_cors_needs_are_kept_exactly() -> None:
    """Origin, Content-Type, Sec-Fetch-*, Access-Control-*, Vary … come out byte for byte."""
    redactor = Redactor()
    shown = redactor.headers(CORPUS.request_headers) + redactor.headers(CORPUS.response_headers)
    for name, value in CORPUS.kept_request + CORPUS.kept_response:
        assert [name, value] in shown


def test_header_names_and_order_are_kept() -> None:
    """Presence matters to CORS (a credentialed request, a requested header): every name stays, in order."""
    shown = Redactor().headers(CORPUS.request_headers)
    assert [name for name, _ in shown] == [name for name, _ in CORPUS.request_headers]


@pytest.mark.parametrize("name", SECRET_HEADER_NAMES)
def test_secret_header_names_are_recognised_whatever_their_case(name: str) -> None:
    """Issue 13's names (X-Auth-Key, DPoP, X-CSRF …) and the key/auth/signature/credential/secret families."""
    redactor = Redactor()
    assert redactor.is_sensitive(name) and redactor.is_sensitive(name.lower()) and redactor.is_sensitive(name.upper())


@pytest.mark.parametrize(
    "name",
    [
        "Access-Control-Allow-Credentials",
        "Access-Control-Allow-Headers",
        "Access-Control-Request-Headers",
        "WWW-Authenticate",
        "Sec-WebSocket-Key",
        "X-Author",
        "X-Country-Code",
        "X-Tenant",
        ":authority",
    ],
)
def test_names_that_only_look_secret_keep_their_values(name: str) -> None:
    """A family word inside a CORS or standard name (credentials, authorization in a list, author) is no secret."""
    assert not Redactor().is_sensitive(name)


def test_access_control_request_headers_listing_secret_names_is_kept() -> None:
    """The preflight's list of header names is what the verdict is about: never redacted."""
    value = "authorization, x-api-key, x-csrf-token"
    assert Redactor().value("Access-Control-Request-Headers", value) == value


def test_set_cookie_keeps_its_name_and_attributes() -> None:
    """SameSite, Secure, Partitioned decide whether a credentialed cross-origin request carries the cookie."""
    attributes = "Path=/; Domain=api.test; SameSite=None; Secure; HttpOnly; Partitioned"
    shown = Redactor().value("Set-Cookie", f"sid=abc123; {attributes}; Opaque=zz")
    assert shown == f"sid={REDACTED}; {attributes}; Opaque={REDACTED}"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("graphql-ws", "graphql-ws"),
        ("graphql-ws, access_token, abcdefgh", f"graphql-ws, access_token, {REDACTED}"),
        ("base64url.bearer.authorization.k8s.io.dG9rZW4", f"base64url.bearer.{REDACTED}"),
        ("chat, eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", f"chat, {REDACTED}"),
    ],
)
def test_websocket_subprotocols_are_kept_and_bearer_tokens_redacted(value: str, shown: str) -> None:
    """Browsers cannot set Authorization on a WebSocket, so apps pass tokens as subprotocols."""
    assert Redactor().value("Sec-WebSocket-Protocol", value) == shown


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("Referer", "http://localhost:5173/page?tab=2&token=abc", f"http://localhost:5173/page?tab=2&token={REDACTED}"),
        ("Location", "https://u:p@other.test/cb?code=abc", f"https://redacted@other.test/cb?code={REDACTED}"),
        (
            "Link",
            '<https://a.test/?page=3&sig=abc>; rel="next"',
            f'<https://a.test/?page=3&sig={REDACTED}>; rel="next"',
        ),
        ("Refresh", "5; url=/next?ticket=abc", f"5; url=/next?ticket={REDACTED}"),
        ("Refresh", "5; https://a.test/?ticket=abc", f"5; https://a.test/?ticket={REDACTED}"),
        ("Link", "https://a.test/?token=abc", f"https://a.test/?token={REDACTED}"),
        ("X-Original-URL", "/admin?password=abc", f"/admin?password={REDACTED}"),
        ("X-Callback", "see https://a.test/cb?access_token=abc", f"see https://a.test/cb?access_token={REDACTED}"),
    ],
)
def test_urls_inside_headers_are_redacted(name: str, value: str, shown: str) -> None:
    """Every URL-valued header keeps its URL, minus the secrets (Origin is not one of them: it holds none)."""
    assert Redactor().value(name, value) == shown


def test_a_secret_shaped_value_under_an_innocent_name_is_redacted() -> None:
    """A JWT or a long random token is a credential whatever header carries it."""
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    redactor = Redactor()
    assert redactor.value("X-Debug", jwt) == REDACTED
    assert redactor.value("X-Blob", "Rk3v9QmZ2pXw7LtB4nYc8HsD1fGj6KaE") == REDACTED


@pytest.mark.parametrize(
    "value",
    [
        "acme-corp",
        "550e8400-e29b-41d4-a716-446655440000",
        "blue-shirt-size-xl-2024",
        "getUserProfileSettingsV2",
        "1700000000000",
        "en-US,en;q=0.9",
    ],
)
def test_ordinary_values_under_an_innocent_name_are_kept(value: str) -> None:
    """Ids, slugs, identifiers and numbers are what debugging needs, and no credential."""
    assert Redactor().value("X-Custom", value) == value


def test_strict_redacts_every_unknown_value_but_keeps_the_known_harmless_ones() -> None:
    """The inverted rule, as an option: only values known harmless (and URLs, redacted) are shown."""
    redactor = Redactor(strict=True)
    shown = dict(map(tuple, redactor.headers([("X-Tenant", "acme"), ("Accept", "*/*"), ("Origin", FRONTEND)])))
    assert shown == {"X-Tenant": REDACTED, "Accept": "*/*", "Origin": FRONTEND}


def test_configured_names_are_redacted_case_insensitively() -> None:
    """redact_headers=[...] adds names, matched whatever their case."""
    assert Redactor(["X-Tenant"]).headers([("x-tenant", "acme")]) == [["x-tenant", REDACTED]]


def test_a_configured_name_redacts_the_whole_value_even_of_a_url_or_harmless_header() -> None:
    """redact_headers=["Referer"] means the whole Referer, not only its URL's secrets."""
    shown = Redactor(["Referer", "User-Agent"]).headers([("Referer", "http://a.test/p"), ("User-Agent", "x")])
    assert shown == [["Referer", REDACTED], ["User-Agent", REDACTED]]


@pytest.mark.parametrize("name", ["Origin", "Access-Control-Allow-Origin", "Vary"])
def test_a_configured_name_cors_needs_is_redacted_as_asked(name: str) -> None:
    """The user's choice: verdicts are decided from the raw headers, only the shown copy loses the value."""
    assert Redactor([name]).headers([(name.lower(), "x")]) == [[name.lower(), REDACTED]]


def test_a_name_seen_as_plain_is_remembered_but_never_leaks_a_secret() -> None:
    """The per-name memo never makes a sensitive name plain, however often it is seen."""
    redactor = Redactor()
    for _ in range(3):
        assert redactor.headers([("accept", "*/*"), ("cookie", "a=1")]) == [["accept", "*/*"], ["cookie", REDACTED]]


def test_name_memo_is_bounded() -> None:
    """Random header names from a client cannot grow the memo without limit."""
    redactor = Redactor()
    redactor.headers([(f"x-random-{n}", "v") for n in range(5000)])
    redactor.headers([("x-" + "a" * 10_000, "v")])
    assert len(redactor._kinds) <= 1024


def test_empty_values_stay_empty() -> None:
    """An empty Authorization is a fact worth seeing, and hides nothing."""
    assert Redactor().headers([("Authorization", ""), ("Cookie", "")]) == [["Authorization", ""], ["Cookie", ""]]


def test_headers_past_the_cap_are_dropped_with_a_marker() -> None:
    """max_headers bounds what one request can make corstrace keep; the marker says how many went."""
    shown = Redactor().headers([(f"x-h{n}", "v") for n in range(70)], max_headers=64)
    assert len(shown) == 65 and shown[-1] == ["…", "[truncated 6 more headers]"]


def test_a_long_value_is_redacted_then_cut_with_a_marker() -> None:
    """The kept part is redacted before the marker is appended, so the cut never exposes half a secret."""
    shown = Redactor().headers([("Authorization", "Bearer " + "x" * 5000)], value_limit=2048)
    assert shown == [["Authorization", f"Bearer {REDACTED}…[truncated 2959 bytes]"]]


def test_a_long_referer_keeps_its_redaction_when_cut() -> None:
    """A secret query value straddling the cut is still redacted."""
    url = "http://localhost:5173/?token=" + "s" * 3000
    [[_, shown]] = Redactor().headers([("Referer", url)], value_limit=2048)
    assert shown == f"http://localhost:5173/?token={REDACTED}…[truncated 981 bytes]"


def test_a_token_straddling_the_cut_goes_whole() -> None:
    """Its first characters alone would no longer look like a secret: they are cut with the rest."""
    token = "Rk3v9QmZ2pXw7LtB4nYc8HsD1fGj6KaE"
    [[_, shown]] = Redactor().headers([("X-Context", "user=bob " + "x" * 1990 + " " + token)], value_limit=2010)
    assert shown.endswith(" …[truncated 32 bytes]") and "Rk3v" not in shown


def test_a_long_header_name_is_cut_too() -> None:
    """A 100 KB header name is as much memory as a 100 KB value."""
    [[name, value]] = Redactor().headers([("x-" + "n" * 100_000, "v")], value_limit=256)
    assert name.startswith("x-nnn") and name.endswith("…[truncated 99746 bytes]") and value == "v"


# --- URLs --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://a.test/x", "http://a.test/x"),
        ("http://a.test/x?page=2", "http://a.test/x?page=2"),
        ("http://a.test/x?token=s3cret&page=2", f"http://a.test/x?token={REDACTED}&page=2"),
        ("http://a.test/x?api_key=s3cret", f"http://a.test/x?api_key={REDACTED}"),
        ("http://a.test/x?a=b%20c&flag&token=", "http://a.test/x?a=b%20c&flag&token="),
        ("http://a.test/x;jsessionid=abc;v=1/y", f"http://a.test/x;jsessionid={REDACTED};v=1/y"),
        ("http://a.test/reset/abcd1234efgh", f"http://a.test/reset/{REDACTED}"),
        ("http://a.test/auth/callback?state=x", "http://a.test/auth/callback?state=x"),
        (
            "http://a.test/#access_token=abc&token_type=bearer",
            f"http://a.test/#access_token={REDACTED}&token_type=bearer",
        ),
        ("http://a.test/#/reset/abcd1234efgh", f"http://a.test/#/reset/{REDACTED}"),
        ("http://a.test/page#section-2", "http://a.test/page#section-2"),
        ("/relative?code=abc", f"/relative?code={REDACTED}"),
        ("http://a.test/?next=%2Fcb%3Ftoken%3Dabc", f"http://a.test/?next=/cb%3Ftoken%3D{REDACTED}"),
    ],
)
def test_secret_parts_of_a_url_are_redacted(url: str, expected: str) -> None:
    """Secret query/fragment/matrix values and capability segments go; everything else is kept byte for byte."""
    assert redact_url(url) == expected


def test_no_planted_url_secret_survives() -> None:
    """Every query name issue 13 listed, a JWT under ?q=, a random ?state=, matrix params, token segments."""
    assert_no_leaks(redact_url(CORPUS.url()))


def test_the_harmless_parts_of_a_url_survive() -> None:
    """Redaction is surgical: ordinary parameters and path words stay."""
    shown = redact_url(CORPUS.url())
    assert shown.startswith("http://api.test/api/orders;")
    assert "/download?page=2&" in shown and shown.endswith("&sort=name")


@pytest.mark.parametrize(
    "name", ["pwd", "pass", "jwt", "ticket", "otp", "SAMLResponse", "X-Amz-Credential", "X-Amz-Signature", "sig"]
)
def test_query_names_issue_13_listed_are_redacted(name: str) -> None:
    assert redact_url(f"http://a.test/?{name}=abc") == f"http://a.test/?{name}={REDACTED}"


@pytest.mark.parametrize("name", ["keyword", "author", "zipcode", "passenger", "design", "page"])
def test_query_names_that_merely_contain_a_secret_word_are_kept(name: str) -> None:
    assert redact_url(f"http://a.test/?{name}=abc") == f"http://a.test/?{name}=abc"


def test_userinfo_is_replaced_and_the_url_still_parses_to_the_same_origin() -> None:
    """``redacted@`` shows that credentials were there (a CORS failure for a redirect) and stays a valid URL."""
    shown = redact_url("https://user:hunter22@other.test:8443/next")
    assert shown == "https://redacted@other.test:8443/next"
    parts = urlsplit(shown)
    assert (parts.hostname, parts.port, parts.password) == ("other.test", 8443, None)


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1]:8000/x?token=abc",
        "http://[::1",
        "http://[",
        "http://[zz]/?token=abc",
        "http://a.test:99999/?sig=abc",
        "not a url ? token=abc",
        "",
    ],
)
def test_a_malformed_url_is_redacted_without_raising(url: str) -> None:
    """urlsplit() raises on these; corstrace must answer anyway, and keep the host part as it was."""
    shown = redact_url(url)
    assert shown.split("?")[0] == url.split("?")[0] and "abc" not in shown


@given(st.text(alphabet=st.characters(codec="latin-1"), max_size=200))
def test_redact_url_never_raises_and_is_idempotent(url: str) -> None:
    """Two layers redacting the same URL (the event, then the HAR export) agree."""
    once = redact_url(url)
    assert redact_url(once) == once


def test_redacting_the_corpus_twice_changes_nothing() -> None:
    once = Redactor().headers(CORPUS.request_headers + CORPUS.response_headers)
    assert Redactor().headers([(name, value) for name, value in once]) == once


@pytest.mark.parametrize(
    "url",
    [
        "https://a.test/users/550e8400-e29b-41d4-a716-446655440000/orders",
        "https://a.test/static/js/main.3f2a9c1b.chunk.js",
        "https://a.test/products/blue-shirt-size-xl-2024",
        "https://a.test/api/v2/items/1234567",
    ],
)
def test_ordinary_paths_are_kept(url: str) -> None:
    """Resource ids, asset hashes and slugs are no capability; redacting them would only hide the route."""
    assert redact_url(url) == url


# --- shapes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        "Rk3v9QmZ2pXw7LtB4nYc8HsD1fGj6KaE",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "ghp_ABCDEFabcdef0123456789ABCDEFabcdef",
        "AKIAIOSFODNN7EXAMPLE",
        "dGhpcyBpcyBhIHNlY3JldCB0b2tlbiB2YWx1ZQ==",
    ],
)
def test_secret_shapes_are_recognised(value: str) -> None:
    """JWTs, random tokens, hex digests, known token prefixes, base64 blobs."""
    assert looks_secret(value)


@pytest.mark.parametrize(
    "value",
    [
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        "ThisIsAVeryLongCamelCaseName",
        "dashboard_v2_feature_flag_enabled",
        "/api/v1/users/12345/orders/67890",
        "507f1f77bcf86cd799439011",
        "12345678901234567890",
        "short",
    ],
)
def test_ordinary_strings_are_not_taken_for_secrets(value: str) -> None:
    assert not looks_secret(value)


# --- secrets() and scrub() ---------------------------------------------------------------------------------


def test_secrets_lists_the_values_an_app_is_likely_to_quote() -> None:
    """The credentials after the scheme (so "Bearer" survives a scrub), each cookie value, a Basic pair decoded."""
    basic = base64.b64encode(b"svc:hunter2hunter2").decode()
    found = Redactor().secrets(
        [("Authorization", "Bearer tok123456"), ("Proxy-Authorization", f"Basic {basic}"), ("Cookie", "sid=abcdef99")]
    )
    for expected in ("tok123456", basic, "svc:hunter2hunter2", "hunter2hunter2", "abcdef99"):
        assert expected in found


def test_secrets_skips_short_values_and_what_cors_needs() -> None:
    """Replacing "1" or "dark" everywhere would wreck the text and protect nothing; Origin is no secret."""
    found = Redactor().secrets([("Cookie", "theme=dark; n=1"), ("Origin", FRONTEND), ("Host", "api.test")])
    assert all(len(secret) >= MIN_SECRET_LENGTH for secret in found)
    assert "dark" not in found and FRONTEND not in found and "api.test" not in found


def test_secrets_come_longest_first() -> None:
    """So scrub() replaces "Bearer x…" whole before its part "x…" could split it."""
    found = Redactor().secrets(CORPUS.request_headers, CORPUS.url())
    assert list(found) == sorted(found, key=len, reverse=True)


def test_secrets_include_the_urls_secret_values() -> None:
    found = Redactor().secrets([], "http://a.test/reset/abcd1234efgh?token=qwertyuiop")
    assert "abcd1234efgh" in found and "qwertyuiop" in found


def test_scrub_removes_the_requests_own_secrets_from_an_exception_message() -> None:
    """The app quoted Authorization, Cookie, X-API-Key, a decoded Basic password and its URL: none survive."""
    found = Redactor().secrets(CORPUS.request_headers, CORPUS.url())
    shown = scrub(CORPUS.exception_message, found)
    assert_no_leaks(shown)
    assert shown.startswith("upstream refused Authorization=") and "http://api.test/api/orders;" in shown


def test_scrub_leaves_text_without_secrets_unchanged() -> None:
    text = "File \"/app/main.py\", line 12, in login\n    raise HTTPException(status_code=400)\nKeyError: 'theme'"
    assert scrub(text, ("tok123456",)) == text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("GET https://api.x/v1?access_token=abc failed", f"GET https://api.x/v1?access_token={REDACTED} failed"),
        ("sent Bearer abcdef123456 upstream", f"sent Bearer {REDACTED} upstream"),
        ("bad jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln here", f"bad jwt {REDACTED} here"),
        ("connect failed: password=hunter2 host=db", f"connect failed: password={REDACTED} host=db"),
        ('{"api_key": "abcdef12", "name": "bob"}', f'{{"api_key": "{REDACTED}", "name": "bob"}}'),
        ("status_code=400 KeyError: 'token'", "status_code=400 KeyError: 'token'"),
    ],
)
def test_redact_text_removes_secret_shapes_from_free_text(text: str, shown: str) -> None:
    """An app's own outbound credentials in an exception message are secrets too."""
    assert redact_text(text) == shown


_PIECES = st.sampled_from(
    [
        "a",
        "page",
        "2",
        "token",
        "code",
        "q",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
        "%2F",
        "%3D",
        "+",
        "[redacted]",
        "reset",
        "abcd1234efgh",
        "http://n.test/?sig=x",
        "/p?ticket=y",
        ";",
        "=",
        "&",
        "?",
        "#",
        "@",
        ":",
        "/",
        "[",
        "]",
    ]
)


@given(
    st.sampled_from(["http://", "https://", "//", "", "ws://"]),
    st.sampled_from(["", "user:pw@", "tok@", "a@b@"]),
    st.sampled_from(["api.test", "[::1]:8000", "[::1", "a.test:99999", ""]),
    st.lists(_PIECES, max_size=12),
)
def test_redact_url_on_url_shaped_text_is_idempotent_and_keeps_the_host(
    scheme: str, userinfo: str, host: str, pieces: list[str]
) -> None:
    url = scheme + userinfo + host + "/" + "".join(pieces)
    once = redact_url(url)
    assert redact_url(once) == once
    if scheme.endswith("//"):
        assert host in once and ("pw@" not in once and "tok@" not in once)


def test_a_url_in_a_parameter_is_redacted_as_a_url() -> None:
    """?next=/reset/<token> keeps its route: only the token goes."""
    shown = redact_url("http://a.test/start?next=/reset/Xk9fQ2mZ7pL4rT8vB1nC6yH3&page=2")
    assert shown == f"http://a.test/start?next=/reset/{REDACTED}&page=2"


def test_a_remembered_harmless_name_longer_than_a_small_limit_is_still_cut() -> None:
    redactor = Redactor()
    name = "sec-ch-" + "a" * 100
    redactor.headers([(name, "v")])  # remembered as harmless
    [[shown, _]] = redactor.headers([(name, "v")], value_limit=64)
    assert shown == name[:64] + "…[truncated 43 bytes]"

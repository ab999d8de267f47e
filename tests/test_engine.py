"""The verdict engine, table by table: every server-decided CorsError with its exact message, and the WPT matrices."""

# Chromium's console lines are quoted verbatim in the tables; splitting them would hide typos.
# ruff: noqa: E501

from __future__ import annotations

import json

import pytest

from corstrace.engine import Credentials, Request, Response, Verdict, evaluate

ORIGIN = "http://localhost:3000"
U = "http://127.0.0.1:8000/items"
PREFIX = f"Access to fetch at '{U}' from origin '{ORIGIN}' has been blocked by CORS policy: "
PF = "Response to preflight request doesn't pass access control check: "
VALID = " Have the server send the header with a valid value."
NO_ACAO = "No 'Access-Control-Allow-Origin' header is present on the requested resource."
WILDCARD = (
    "The value of the 'Access-Control-Allow-Origin' header in the response must not be the wildcard '*' "
    "when the request's credentials mode is 'include'."
)
ACAO = "access-control-allow-origin"
ACAC = "access-control-allow-credentials"
ACAM = "access-control-allow-methods"
ACAH = "access-control-allow-headers"
ECHO = ((ACAO, ORIGIN),)


def acac(value: str) -> str:
    return (
        f"The value of the 'Access-Control-Allow-Credentials' header in the response is '{value}' which must be "
        "'true' when the request's credentials mode is 'include'."
    )


def actual(
    headers: tuple[tuple[str, str], ...],
    *,
    status: int = 200,
    credentials: Credentials | None = "omit",
    request_headers: tuple[tuple[str, str], ...] = (),
    method: str = "GET",
) -> Verdict:
    request = Request(method, U, (("origin", ORIGIN), *request_headers), credentials=credentials)
    return evaluate(request, Response(status, headers))


def preflight(
    headers: tuple[tuple[str, str], ...],
    *,
    status: int = 200,
    method: str = "PUT",
    request_headers: str | None = None,
    credentials: Credentials | None = "omit",
) -> Verdict:
    sent = [("origin", ORIGIN), ("access-control-request-method", method)]
    if request_headers is not None:
        sent.append(("access-control-request-headers", request_headers))
    request = Request("OPTIONS", U, tuple(sent), credentials=credentials)
    return evaluate(request, Response(status, headers))


class TestServerDecidedReasons:
    """Each CorsError a response can cause, with Chromium 156's exact console text."""

    CASES = [
        ("missing-acao", lambda: actual(()), "MissingAllowOriginHeader", NO_ACAO),
        (
            "wildcard-credentials",
            lambda: actual(((ACAO, "*"),), credentials="include"),
            "WildcardOriginNotAllowed",
            WILDCARD,
        ),
        (
            "two-lines",
            lambda: actual(((ACAO, ORIGIN), (ACAO, ORIGIN))),
            "MultipleAllowOriginValues",
            f"The 'Access-Control-Allow-Origin' header contains multiple values '{ORIGIN}, {ORIGIN}', but only one is allowed.{VALID}",
        ),
        (
            "space-list",
            lambda: actual(((ACAO, "a b"),)),
            "MultipleAllowOriginValues",
            f"The 'Access-Control-Allow-Origin' header contains multiple values 'a b', but only one is allowed.{VALID}",
        ),
        (
            "invalid",
            lambda: actual(((ACAO, "foo"),)),
            "InvalidAllowOriginValue",
            f"The 'Access-Control-Allow-Origin' header contains the invalid value 'foo'.{VALID}",
        ),
        (
            "invalid-escaped",
            lambda: actual(((ACAO, "http://\xe9\x7f"),)),
            "InvalidAllowOriginValue",
            f"The 'Access-Control-Allow-Origin' header contains the invalid value 'http://\\u00E9\\u007F'.{VALID}",
        ),
        (
            "mismatch",
            lambda: actual(((ACAO, "http://x.test"),)),
            "AllowOriginMismatch",
            f"The 'Access-Control-Allow-Origin' header has a value 'http://x.test' that is not equal to the supplied origin.{VALID}",
        ),
        (
            "mismatch-null",
            lambda: actual(((ACAO, "null"),)),
            "AllowOriginMismatch",
            f"The 'Access-Control-Allow-Origin' header has a value 'null' that is not equal to the supplied origin.{VALID}",
        ),
        ("acac-missing", lambda: actual(ECHO, credentials="include"), "InvalidAllowCredentials", acac("")),
        (
            "acac-True",
            lambda: actual((*ECHO, (ACAC, "True")), credentials="include"),
            "InvalidAllowCredentials",
            acac("True"),
        ),
        (
            "pf-wildcard",
            lambda: preflight(((ACAO, "*"),), credentials="include"),
            "PreflightWildcardOriginNotAllowed",
            PF + WILDCARD,
        ),
        ("pf-missing", lambda: preflight(()), "PreflightMissingAllowOriginHeader", PF + NO_ACAO),
        (
            "pf-multiple",
            lambda: preflight(((ACAO, ORIGIN), (ACAO, "*"))),
            "PreflightMultipleAllowOriginValues",
            PF
            + f"The 'Access-Control-Allow-Origin' header contains multiple values '{ORIGIN}, *', but only one is allowed.{VALID}",
        ),
        (
            "pf-invalid",
            lambda: preflight(((ACAO, "-"),)),
            "PreflightInvalidAllowOriginValue",
            PF + f"The 'Access-Control-Allow-Origin' header contains the invalid value '-'.{VALID}",
        ),
        (
            "pf-mismatch",
            lambda: preflight(((ACAO, ORIGIN + "/"),)),
            "PreflightAllowOriginMismatch",
            PF
            + f"The 'Access-Control-Allow-Origin' header has a value '{ORIGIN}/' that is not equal to the supplied origin.{VALID}",
        ),
        (
            "pf-acac",
            lambda: preflight((*ECHO, (ACAM, "PUT")), credentials="include"),
            "PreflightInvalidAllowCredentials",
            PF + acac(""),
        ),
        (
            "pf-status",
            lambda: preflight((*ECHO, (ACAM, "PUT")), status=404),
            "PreflightInvalidStatus",
            PF + "It does not have HTTP ok status.",
        ),
        (
            "pf-redirect",
            lambda: preflight(((ACAO, ORIGIN), ("location", "/x")), status=308),
            "PreflightDisallowedRedirect",
            PF + "Redirect is not allowed for a preflight request.",
        ),
        (
            "pf-bad-acam",
            lambda: preflight((*ECHO, (ACAM, "PUT, Bad method"))),
            "InvalidAllowMethodsPreflightResponse",
            "Cannot parse Access-Control-Allow-Methods response header field in preflight response.",
        ),
        (
            "pf-bad-acah",
            lambda: preflight((*ECHO, (ACAH, "header name with space")), request_headers="x-a"),
            "InvalidAllowHeadersPreflightResponse",
            "Cannot parse Access-Control-Allow-Headers response header field in preflight response.",
        ),
        (
            "pf-method",
            lambda: preflight(ECHO),
            "MethodDisallowedByPreflightResponse",
            "Method PUT is not allowed by Access-Control-Allow-Methods in preflight response.",
        ),
        (
            "pf-header",
            lambda: preflight(ECHO, method="GET", request_headers="x-foo"),
            "HeaderDisallowedByPreflightResponse",
            "Request header field x-foo is not allowed by Access-Control-Allow-Headers in preflight response.",
        ),
        (
            "redirect-userinfo",
            lambda: actual((*ECHO, ("location", "http://u:p@x.test/")), status=302),
            "RedirectContainsCredentials",
            "Redirect location '' contains a username and password, which is disallowed for cross-origin requests.",
        ),
    ]

    @pytest.mark.parametrize(("make", "reason", "body"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
    def test_reason_and_exact_message(self, make: object, reason: str, body: str) -> None:
        """The response yields this CorsError and Chromium's console line word for word."""
        verdict = make()  # type: ignore[operator]
        assert (verdict.verdict, verdict.reason, verdict.browser_message) == ("blocked", reason, PREFIX + body)

    @pytest.mark.parametrize(("make", "reason", "body"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
    def test_blocked_verdicts_explain_and_fix(self, make: object, reason: str, body: str) -> None:
        """Every blocked verdict carries a Firefox message, an explanation, a fix and its decisive headers."""
        verdict = make()  # type: ignore[operator]
        assert verdict.firefox_message and verdict.firefox_message.startswith("Cross-Origin Request Blocked: ")
        assert verdict.explanation and verdict.fix and verdict.decisive_headers
        assert json.loads(json.dumps(verdict.as_dict()))["reason"] == reason


class TestPreflightOrder:
    """Chromium's order on a preflight: redirect, then ACAO/ACAC, then status, then ACAM/ACAH, method, headers."""

    CASES = [
        ("redirect-beats-missing-acao", dict(headers=(("location", "/x"),), status=302), "PreflightDisallowedRedirect"),
        ("3xx-without-location-is-a-status", dict(headers=ECHO, status=301), "PreflightInvalidStatus"),
        (
            "300-with-location-is-a-status",
            dict(headers=(*ECHO, ("location", "/x")), status=300),
            "PreflightInvalidStatus",
        ),
        ("missing-acao-beats-404", dict(headers=(), status=404), "PreflightMissingAllowOriginHeader"),
        ("missing-acao-beats-401", dict(headers=(), status=401), "PreflightMissingAllowOriginHeader"),
        ("mismatch-beats-500", dict(headers=((ACAO, "http://x.test"),), status=500), "PreflightAllowOriginMismatch"),
        ("status-beats-bad-acam", dict(headers=(*ECHO, (ACAM, "a b")), status=400), "PreflightInvalidStatus"),
        (
            "bad-acam-beats-bad-acah",
            dict(headers=(*ECHO, (ACAM, "a b"), (ACAH, "c d"))),
            "InvalidAllowMethodsPreflightResponse",
        ),
        ("bad-acah-beats-method", dict(headers=(*ECHO, (ACAH, "c d"))), "InvalidAllowHeadersPreflightResponse"),
        ("method-beats-header", dict(headers=ECHO, request_headers="x-a"), "MethodDisallowedByPreflightResponse"),
    ]

    @pytest.mark.parametrize(("kwargs", "reason"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
    def test_first_failing_check_wins(self, kwargs: dict[str, object], reason: str) -> None:
        """The reported CorsError is the first check that fails in Chromium's order."""
        assert preflight(**kwargs).reason == reason  # type: ignore[arg-type]


# WPT cors/origin.htm: ACAO values that pass and fail for an uncredentialed request from ORIGIN.
ACAO_PASSES = ["*", " *  ", "\t*", ORIGIN, f" {ORIGIN}", f"{ORIGIN} ", f"\t{ORIGIN}\t"]
ACAO_FAILS = [
    "http://www1.localhost:3000",
    "//localhost:3000",
    "://localhost:3000",
    "ftp://localhost:3000",
    "http:://localhost:3000",
    "http:/localhost:3000",
    "localhost:3000",
    f"{ORIGIN}?",
    f"{ORIGIN}/",
    f"{ORIGIN} /",
    f"{ORIGIN}#",
    f"{ORIGIN}%23",
    f"{ORIGIN}:80",
    f"{ORIGIN}, *",
    f"{ORIGIN}\0",
    ORIGIN.upper(),
    "HTTP://localhost:3000",
    "-",
    "**",
    "\0*",
    "*\0",
    "'*'",
    '"*"',
    "* *",
    "* null",
    f"*{ORIGIN}",
    f"*, {ORIGIN}",
    f"null {ORIGIN}",
    "null",
    "null *",
    "",
    U,
    "http://127.0.0.1:8000/",
]


@pytest.mark.parametrize("value", ACAO_PASSES, ids=repr)
def test_wpt_origin_acao_passes(value: str) -> None:
    """WPT cors/origin.htm: these ACAO values (LWS-trimmed) let the request through."""
    assert actual(((ACAO, value),)).verdict == "allowed"


@pytest.mark.parametrize("value", ACAO_FAILS, ids=repr)
def test_wpt_origin_acao_fails(value: str) -> None:
    """WPT cors/origin.htm: these ACAO values are blocked."""
    assert actual(((ACAO, value),)).verdict == "blocked"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("localhost:3000", "AllowOriginMismatch"),  # GURL parses "localhost:" as a scheme
        ("ftp://localhost:3000", "AllowOriginMismatch"),
        ("http:://localhost:3000", "InvalidAllowOriginValue"),
        ("http:/", "InvalidAllowOriginValue"),
        ("//localhost:3000", "InvalidAllowOriginValue"),
        ("*\0", "InvalidAllowOriginValue"),
        (f"{ORIGIN}\0", "AllowOriginMismatch"),  # GURL trims the trailing control byte, the comparison does not
        ("http://a.test:99999", "InvalidAllowOriginValue"),
        ("http://[::1]", "AllowOriginMismatch"),
        ("http://a\xc3\xa9.test", "AllowOriginMismatch"),  # valid UTF-8: GURL applies IDNA
        ("http://a\xe9.test", "InvalidAllowOriginValue"),  # not UTF-8
        ("null", "AllowOriginMismatch"),
        ("", "InvalidAllowOriginValue"),
        # Checked against Chromium 156 in test_engine_browser.py.
        ("http://%41.test", "AllowOriginMismatch"),
        ("http://a%zz.test", "InvalidAllowOriginValue"),
        ("http://a^b.test", "InvalidAllowOriginValue"),
        ("http://a|b.test", "InvalidAllowOriginValue"),
        ("http://a{b.test", "AllowOriginMismatch"),
        ("http://a`b.test", "AllowOriginMismatch"),
        ("http:a.test", "AllowOriginMismatch"),
        ("http://1.2.3.4.5", "InvalidAllowOriginValue"),
        ("http://256.0.0.1", "InvalidAllowOriginValue"),
        ("http://1.2.3.4", "AllowOriginMismatch"),
        ("http://0x7f.1", "AllowOriginMismatch"),
        ("http://a.1", "InvalidAllowOriginValue"),
        ("http://[zz]", "InvalidAllowOriginValue"),
        ("javascript:alert(1)", "AllowOriginMismatch"),
    ],
    ids=repr,
)
def test_acao_classification(value: str, reason: str) -> None:
    """A wrong single ACAO value is classified like Chromium's GURL check: invalid or mismatch."""
    assert actual(((ACAO, value),)).reason == reason


@pytest.mark.parametrize(
    "lines",
    [
        ("", "http://example.com", ORIGIN),
        ("", "http://example.com", "*"),
        ("", ORIGIN, ORIGIN),
        ("*", "http://example.com", "*"),
        ("*", "http://example.com", ORIGIN),
        ("", "http://example.com", "http://example.com"),
        ("*", "*"),
        (ORIGIN, ORIGIN),
        ("", "*"),
    ],
    ids=repr,
)
def test_wpt_multiple_origins_reject(lines: tuple[str, ...]) -> None:
    """WPT cors-multiple-origins: several ACAO lines are joined with ", " and always rejected."""
    verdict = actual(tuple((ACAO, line) for line in lines))
    assert verdict.reason == "MultipleAllowOriginValues"
    # Lower-case names, as every ASGI server sends them: Firefox compares the joined value (checked in Firefox).
    assert verdict.firefox_message == (
        f"Cross-Origin Request Blocked: The Same Origin Policy disallows reading the remote resource at {U}. "
        f"(Reason: CORS header ‘Access-Control-Allow-Origin’ does not match ‘{', '.join(lines)}’)."
    )


@pytest.mark.parametrize(
    ("names", "multiple"),
    [
        (("Access-Control-Allow-Origin", "Access-Control-Allow-Origin"), True),
        (("Access-Control-Allow-Origin", "access-control-allow-origin", "Access-Control-Allow-Origin"), True),
        (("Access-Control-Allow-Origin", "access-control-allow-origin"), False),
        (("ACCESS-CONTROL-ALLOW-ORIGIN", "ACCESS-CONTROL-ALLOW-ORIGIN"), False),
        (("access-control-allow-origin", "access-control-allow-origin"), False),
    ],
    ids=repr,
)
def test_firefox_multiple_acao_lines_depend_on_name_spelling(names: tuple[str, ...], multiple: bool) -> None:
    """Firefox says "Multiple CORS header" only for two lines spelled exactly Access-Control-Allow-Origin."""
    verdict = actual(tuple((name, ORIGIN) for name in names))
    assert verdict.reason == "MultipleAllowOriginValues"
    assert verdict.firefox_message is not None
    assert ("(Reason: Multiple CORS header ‘Access-Control-Allow-Origin’ not allowed)." in verdict.firefox_message) is (
        multiple
    )


def test_single_line_list_is_a_mismatch_in_firefox() -> None:
    """Firefox only objects to several ACAO lines; one line holding a list is a plain mismatch there."""
    verdict = actual(((ACAO, f"{ORIGIN}, http://x.test"),))
    assert verdict.reason == "MultipleAllowOriginValues"
    assert (
        verdict.firefox_message is not None and f"does not match ‘{ORIGIN}, http://x.test’" in verdict.firefox_message
    )


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("true", True),
        ("TRUE", False),
        ("True", False),
        ('"true"', False),
        ("false", False),
        ("1", False),
        ("0", False),
        (" true ", True),
        ("", False),
    ],
    ids=repr,
)
def test_wpt_credentials_flag_acac(value: str, allowed: bool) -> None:
    """WPT cors/credentials-flag.htm: with credentials only a lower-case `true` (LWS-trimmed) passes."""
    verdict = actual((*ECHO, (ACAC, value)), credentials="include")
    assert verdict.verdict == ("allowed" if allowed else "blocked")


@pytest.mark.parametrize(
    ("credentials", "acao", "acac_value", "allowed"),
    [
        ("omit", "*", None, True),
        ("omit", "*", "true", True),
        ("omit", "https://rabbit.invalid/", None, False),
        ("include", "*", "true", False),
        ("include", ORIGIN, "true", True),
        ("include", ORIGIN, "True", False),
    ],
    ids=repr,
)
def test_fetch_spec_credentials_table(
    credentials: Credentials, acao: str, acac_value: str | None, allowed: bool
) -> None:
    """The Fetch standard's "CORS protocol and credentials" table."""
    headers = ((ACAO, acao),) + (((ACAC, acac_value),) if acac_value is not None else ())
    assert actual(headers, credentials=credentials).verdict == ("allowed" if allowed else "blocked")


@pytest.mark.parametrize(
    ("credentials", "acam", "acah", "method", "header", "allowed"),
    [
        ("omit", "get", "x-test", "GET", "x-test", True),
        ("omit", "*", "x-test", "SUPER", "x-test", True),
        ("omit", "*", "*", "OK", "x-test", True),
        ("include", "OK", "Content-Type", "GET", "content-type", True),
        ("include", "*", "*", "OK", "x-test", False),
        ("include", "*", "", "PUT", None, False),
        ("include", "", "*", "GET", None, True),
        ("include", "put", "*", "PUT", None, False),
        ("include", "PUT", "*", "PUT", "accept", True),  # Accept: unicorn is safelisted, never in ACRH
        ("include", "get", "*", "GET", "x-test", False),
        ("include", "*", "*", "GET", "x-test", False),
        ("include", "*", "*", "*", "*", True),  # with credentials `*` is a literal name, and it matches
    ],
    ids=repr,
)
def test_wpt_preflight_star(
    credentials: Credentials, acam: str, acah: str, method: str, header: str | None, allowed: bool
) -> None:
    """WPT cors-preflight-star: `*` in ACAM/ACAH is a wildcard only without credentials."""
    response = ((ACAO, ORIGIN), (ACAC, "true"), (ACAM, acam), (ACAH, acah))
    requested = None if header in (None, "accept") else header
    verdict = preflight(response, method=method, request_headers=requested, credentials=credentials)
    assert verdict.verdict == ("allowed" if allowed else "blocked")


@pytest.mark.parametrize("status", [200, 201, 202, 203, 204, 205, 206, 299])
def test_wpt_preflight_ok_statuses(status: int) -> None:
    """WPT cors-preflight-status / status-preflight: any 2xx preflight passes."""
    assert preflight((*ECHO, (ACAM, "PUT")), status=status).verdict == "allowed"


@pytest.mark.parametrize(
    "status",
    [*range(300, 309), *range(400, 418), *range(500, 506), 100, 199, 680, 790],
)
def test_wpt_preflight_failing_statuses(status: int) -> None:
    """WPT cors-preflight-status / preflight-failure: a non-2xx preflight fails with PreflightInvalidStatus."""
    assert preflight((*ECHO, (ACAM, "PUT")), status=status).reason == "PreflightInvalidStatus"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_wpt_preflight_redirects(status: int) -> None:
    """WPT cors-preflight-redirect: a redirected preflight is never followed."""
    verdict = preflight((*ECHO, (ACAM, "PUT"), ("location", "/elsewhere")), status=status)
    assert verdict.reason == "PreflightDisallowedRedirect"


@pytest.mark.parametrize("status", [200, 204, 400, 401, 404, 501, 699])
def test_actual_response_status_is_passed_through(status: int) -> None:
    """WPT status.htm: a non-preflight response with a good ACAO is readable whatever its status."""
    assert actual(ECHO, status=status).verdict == "allowed"


@pytest.mark.parametrize(
    ("method", "acam", "allowed"),
    [
        ("DELETE", "DELETE", True),
        ("PUT", "PUT", True),
        ("PATCH", "PATCH", True),
        ("patcH", "patcH", True),
        ("patcH", "PATCH", False),
        ("patch", "PATCH", False),
        ("PATCH", "patch", False),
        ("NEW", "NEW", True),
        ("chicken", "chicken", True),
        ("chicken", "CHICKEN", False),
        ("PUT", "GET, POST", False),
        ("PUT", " PUT ,, POST ", True),
        ("POST", "", True),
        ("GET", "", True),
        ("HEAD", "", True),
    ],
    ids=repr,
)
def test_wpt_preflight_method_case_sensitive(method: str, acam: str, allowed: bool) -> None:
    """WPT cors-preflight: ACAM lists the method exactly as sent (case-sensitive); safelisted ones always pass."""
    verdict = preflight((*ECHO, (ACAM, acam)), method=method)
    assert verdict.verdict == ("allowed" if allowed else "blocked")
    if not allowed:
        assert verdict.failed_parameter == method


@pytest.mark.parametrize(
    ("requested", "acah", "allowed"),
    [
        ("x-print,y-print", ",y-lol,x-PriNT, ,,,Y-PRINT", True),
        ("x-test-header1", "x-test-header1", True),
        ("x-test-header1", "X-Test-Header1", True),
        ("x-test-header1", "x-test-header2", False),
        ("x-a,x-b", "x-a", False),
        ("authorization", "authorization", True),
        ("authorization", "Authorization", True),
        ("", "", True),
    ],
    ids=repr,
)
def test_wpt_allow_headers_matching(requested: str, acah: str, allowed: bool) -> None:
    """WPT request-headers.htm: ACAH matching is case-insensitive and tolerates empty items and spaces."""
    verdict = preflight((*ECHO, (ACAH, acah)), method="GET", request_headers=requested)
    assert verdict.verdict == ("allowed" if allowed else "blocked")


@pytest.mark.parametrize(
    ("acah", "valid"),
    [
        ("a, b", True),
        ("a,,b", True),
        (" ", True),
        ("a b", False),
        ("a;b", False),
        ("a/b", False),
        ('"a"', False),
        ("a\x7f", False),
        ("\xe9", False),
    ],
    ids=repr,
)
def test_acah_token_parsing(acah: str, valid: bool) -> None:
    """WPT cors-preflight-response-validation: an ACAH item that is not a token fails the whole preflight."""
    verdict = preflight((*ECHO, (ACAH, acah), (ACAM, "PUT")), request_headers="a")
    assert (verdict.reason != "InvalidAllowHeadersPreflightResponse") is valid


class TestCredentialsMode:
    """What the server can and cannot know about the page's credentials mode."""

    def test_cookie_proves_include(self) -> None:
        """A Cookie header on a cross-origin request means the page used credentials: 'include'."""
        verdict = actual(((ACAO, "*"),), credentials=None, request_headers=(("cookie", "a=1"),))
        assert (verdict.credentials, verdict.reason, verdict.if_credentialed) == (
            "include",
            "WildcardOriginNotAllowed",
            None,
        )

    def test_unknown_wildcard_reports_both_outcomes(self) -> None:
        """Without a Cookie the uncredentialed verdict stands and if_credentialed shows the credentialed one."""
        verdict = actual(((ACAO, "*"),), credentials=None)
        assert (verdict.credentials, verdict.verdict) == ("unknown", "allowed")
        assert verdict.if_credentialed is not None
        assert verdict.if_credentialed.reason == "WildcardOriginNotAllowed"
        assert verdict.if_credentialed.browser_message == PREFIX + WILDCARD
        assert "credentials" in verdict.explanation

    def test_unknown_echo_without_acac(self) -> None:
        """An echoed origin without ACAC passes uncredentialed; with credentials it is InvalidAllowCredentials."""
        verdict = actual(ECHO, credentials=None)
        assert verdict.if_credentialed is not None
        assert verdict.if_credentialed.reason == "InvalidAllowCredentials"

    def test_unknown_same_outcome_has_no_alternative(self) -> None:
        """When credentials change nothing, if_credentialed is None."""
        assert actual((), credentials=None).if_credentialed is None
        assert actual((*ECHO, (ACAC, "true")), credentials=None).if_credentialed is None

    def test_preflight_credentials_are_unknown(self) -> None:
        """Preflights never carry cookies, so their credentials mode is unknown unless given."""
        verdict = preflight(((ACAO, "*"), (ACAM, "PUT")), credentials=None)
        assert verdict.credentials == "unknown"
        assert verdict.if_credentialed is not None
        assert verdict.if_credentialed.reason == "PreflightWildcardOriginNotAllowed"

    @pytest.mark.parametrize("credentials", ["include", "omit"])
    def test_known_mode_has_no_alternative(self, credentials: Credentials) -> None:
        """With a known mode there is nothing to hedge."""
        assert actual(((ACAO, "*"),), credentials=credentials).if_credentialed is None


class TestNotCors:
    """Requests the browser applies no CORS check to."""

    def test_no_origin(self) -> None:
        """Without Origin the request is not cross-origin from a page."""
        verdict = evaluate(Request("GET", U), Response(200))
        assert (verdict.verdict, verdict.reason, verdict.origin) == ("allowed", None, None)
        assert "Origin" in verdict.explanation

    def test_same_origin(self) -> None:
        """An Origin equal to the URL's own origin is a same-origin request."""
        verdict = evaluate(Request("POST", U, (("origin", "http://127.0.0.1:8000"),)), Response(200))
        assert (verdict.verdict, verdict.reason) == ("allowed", None)
        assert "same-origin" in verdict.explanation

    @pytest.mark.parametrize("mode", ["navigate", "no-cors", "same-origin", "websocket"])
    def test_sec_fetch_mode_without_cors(self, mode: str) -> None:
        """A form post or no-cors subresource carries Origin but no CORS check applies."""
        verdict = actual((), request_headers=(("sec-fetch-mode", mode),))
        assert (verdict.verdict, verdict.reason) == ("allowed", None)


class TestMessages:
    """Message variants: XHR, redirects, opaque origins, Firefox."""

    def test_xhr_credentials_suffix(self) -> None:
        """XHR credential errors end with the withCredentials sentence and name XMLHttpRequest."""
        request = Request("GET", U, (("origin", ORIGIN),), credentials="include", initiator="XMLHttpRequest")
        message = evaluate(request, Response(200, ((ACAO, "*"),))).browser_message
        assert message == (
            f"Access to XMLHttpRequest at '{U}' from origin '{ORIGIN}' has been blocked by CORS policy: {WILDCARD} "
            "The credentials mode of requests initiated by the XMLHttpRequest is controlled by the withCredentials "
            "attribute."
        )

    def test_xhr_has_no_valid_value_suffix(self) -> None:
        """Chromium adds "Have the server send the header with a valid value." for fetch() only."""
        request = Request("GET", U, (("origin", ORIGIN),), credentials="omit", initiator="XMLHttpRequest")
        message = evaluate(request, Response(200, ((ACAO, "http://x.test"),))).browser_message
        assert message is not None and message.endswith("that is not equal to the supplied origin.")

    def test_redirected_from(self) -> None:
        """A hop after a redirect names the final URL and the original one."""
        request = Request("GET", U + "/next", (("origin", ORIGIN),), credentials="omit", redirected_from=U)
        message = evaluate(request, Response(200)).browser_message
        assert message == (
            f"Access to fetch at '{U}/next' (redirected from '{U}') from origin '{ORIGIN}' has been blocked by CORS "
            f"policy: {NO_ACAO}"
        )

    def test_opaque_origin(self) -> None:
        """A sandboxed or data: page sends `Origin: null`; only `ACAO: null` or `*` lets it through."""
        request = Request("GET", U, (("origin", "null"),), credentials="omit")
        assert evaluate(request, Response(200, ((ACAO, "null"),))).verdict == "allowed"
        blocked = evaluate(request, Response(200, ((ACAO, ORIGIN),)))
        assert blocked.browser_message is not None and "from origin 'null'" in blocked.browser_message

    @pytest.mark.parametrize(
        ("make", "text"),
        [
            (
                lambda: actual((), status=404),
                "(Reason: CORS header ‘Access-Control-Allow-Origin’ missing). Status code: 404.",
            ),
            (
                lambda: actual(((ACAO, "http://x.test"),)),
                "(Reason: CORS header ‘Access-Control-Allow-Origin’ does not match ‘http://x.test’).",
            ),
            (
                lambda: actual(ECHO, credentials="include"),
                "(Reason: expected ‘true’ in CORS header ‘Access-Control-Allow-Credentials’).",
            ),
            (
                lambda: preflight(ECHO, status=403),
                "(Reason: CORS preflight response did not succeed). Status code: 403.",
            ),
            (
                lambda: preflight((*ECHO, ("location", "/x")), status=302),
                "(Reason: CORS request external redirect not allowed).",
            ),
            (
                lambda: preflight((*ECHO, (ACAM, "a b"))),
                "(Reason: invalid token ‘a b’ in CORS header ‘Access-Control-Allow-Methods’).",
            ),
            (
                lambda: preflight((*ECHO, (ACAH, "a b")), request_headers="x"),
                "(Reason: invalid token ‘a b’ in CORS header ‘Access-Control-Allow-Headers’).",
            ),
            (lambda: preflight(ECHO), "(Reason: Did not find method in CORS header ‘Access-Control-Allow-Methods’)."),
            (
                lambda: preflight(ECHO, method="GET", request_headers="x-foo"),
                "(Reason: header ‘x-foo’ is not allowed according to header ‘Access-Control-Allow-Headers’ from CORS preflight response).",
            ),
        ],
        ids=[
            "missing-acao",
            "mismatch",
            "acac",
            "preflight-status",
            "preflight-redirect",
            "acam-token",
            "acah-token",
            "method",
            "header",
        ],
    )
    def test_firefox_wording(self, make: object, text: str) -> None:
        """firefox_message uses security.properties wording with typographic quotes."""
        message = make()  # type: ignore[operator]
        assert message.firefox_message == (
            f"Cross-Origin Request Blocked: The Same Origin Policy disallows reading the remote resource at {U}. {text}"
        )

    def test_firefox_wildcard_quotes_the_url(self) -> None:
        """CORSNotSupportingCredentials is the one Firefox message that quotes the URL."""
        message = actual(((ACAO, "*"),), credentials="include").firefox_message
        assert message is not None and message.startswith(
            f"Cross-Origin Request Blocked: The Same Origin Policy disallows reading the remote resource at ‘{U}’."
        )


class TestExceptionEscaped:
    """response=None: an exception escaped and the server-error layer sent a bare 500."""

    def test_judged_as_500_without_cors_headers(self) -> None:
        """The browser sees a 500 without ACAO: MissingAllowOriginHeader, explained as an escaped exception."""
        verdict = evaluate(Request("GET", U, (("origin", ORIGIN),), credentials="omit"), None)
        assert verdict.reason == "MissingAllowOriginHeader"
        assert verdict.browser_message == PREFIX + NO_ACAO
        assert "500" in verdict.explanation and "never sees" in verdict.explanation
        assert verdict.firefox_message is not None and verdict.firefox_message.endswith("Status code: 500.")

    def test_on_a_preflight(self) -> None:
        """An exception while answering OPTIONS is a PreflightMissingAllowOriginHeader."""
        request = Request("OPTIONS", U, (("origin", ORIGIN), ("access-control-request-method", "PUT")))
        assert evaluate(request, None).reason == "PreflightMissingAllowOriginHeader"


class TestRedirectHop:
    """An actual request answered with a redirect: the hop itself must pass the CORS check."""

    @pytest.mark.parametrize(
        ("location", "reason"),
        [
            ("http://user:pass@x.test/", "RedirectContainsCredentials"),
            ("http://user:@x.test/", "RedirectContainsCredentials"),
            ("http://:pass@x.test/", "RedirectContainsCredentials"),
            ("http://user@x.test/", "RedirectContainsCredentials"),
            ("//u:p@x.test/", "RedirectContainsCredentials"),
            ("http://:@x.test/", None),  # empty userinfo is dropped by URL canonicalisation (checked in Chromium)
            ("http://@x.test/", None),
            ("/next", None),
            ("next?a=b@c", None),
            ("http://x.test/?u=a@b", None),
        ],
        ids=repr,
    )
    def test_userinfo_in_location(self, location: str, reason: str | None) -> None:
        """WPT cors-redirect-credentials / redirect-userinfo: userinfo in the Location blocks the redirect."""
        assert actual((*ECHO, ("location", location)), status=302).reason == reason

    def test_hop_needs_acao_first(self) -> None:
        """The redirect response's own CORS check comes before the userinfo check."""
        assert actual((("location", "http://u:p@x.test/"),), status=302).reason == "MissingAllowOriginHeader"

    def test_passing_hop_is_explained(self) -> None:
        """A passing redirect hop says where the browser goes next."""
        verdict = actual((*ECHO, ("location", "/next")), status=307)
        assert verdict.verdict == "allowed" and "`/next`" in verdict.explanation


class TestWarnings:
    """Caveats: things that do not block now but bite."""

    def codes(self, verdict: Verdict) -> list[str]:
        return [caveat.code for caveat in verdict.warnings]

    def test_unexposed_header(self) -> None:
        """A custom response header not in ACEH is unreadable by the page."""
        verdict = actual(((ACAO, "*"), ("x-total-count", "3"), ("content-type", "text/plain"), ("set-cookie", "a")))
        assert self.codes(verdict) == ["header_not_exposed"]
        assert "`x-total-count`" in verdict.warnings[0].message and "content-type" not in verdict.warnings[0].message

    def test_exposed_header(self) -> None:
        """ACEH names are matched case-insensitively."""
        verdict = actual(((ACAO, "*"), ("x-total-count", "3"), ("access-control-expose-headers", "X-Total-Count")))
        assert self.codes(verdict) == []

    def test_expose_star_without_credentials(self) -> None:
        """`ACEH: *` exposes everything to an uncredentialed request."""
        verdict = actual(((ACAO, "*"), ("x-a", "1"), ("access-control-expose-headers", "*")))
        assert self.codes(verdict) == []

    def test_expose_star_with_credentials(self) -> None:
        """With credentials `ACEH: *` is literal and exposes nothing."""
        headers = (*ECHO, (ACAC, "true"), ("vary", "Origin"), ("x-a", "1"), ("access-control-expose-headers", "*"))
        verdict = actual(headers, credentials="include")
        assert self.codes(verdict) == ["expose_wildcard_with_credentials", "header_not_exposed"]

    def test_expose_star_credentials_unknown(self) -> None:
        """With unknown credentials the verdict is the uncredentialed one: `*` exposes all, with a warning."""
        verdict = actual(((ACAO, "*"), ("x-a", "1"), ("access-control-expose-headers", "*")), credentials=None)
        assert "expose_wildcard_with_credentials" in self.codes(verdict)
        assert "header_not_exposed" not in self.codes(verdict) and verdict.extra == {}

    def test_unexposed_names_in_extra(self) -> None:
        """The hidden header names are also available as data."""
        verdict = actual(((ACAO, "*"), ("x-a", "1"), ("ETag", "v"), ("access-control-expose-headers", "x-b")))
        assert verdict.extra == {"unexposed_headers": ["x-a", "etag"]}

    def test_missing_vary_origin(self) -> None:
        """An echoed ACAO without `Vary: Origin` can be replayed by a cache to another origin."""
        assert self.codes(actual(ECHO)) == ["missing_vary_origin"]
        assert self.codes(actual((*ECHO, ("vary", "Accept-Encoding, origin")))) == []

    def test_wildcard_origin_credentials_unknown(self) -> None:
        """`ACAO: *` with unknown credentials warns that it stops working once credentials are on."""
        assert "wildcard_origin_with_credentials" in self.codes(actual(((ACAO, "*"),), credentials=None))

    def test_authorization_under_star(self) -> None:
        """Chromium 156 lets `ACAH: *` cover Authorization, against the spec: allowed with a warning."""
        verdict = preflight(((ACAO, "*"), (ACAH, "*")), method="GET", request_headers="authorization,x-a")
        assert verdict.verdict == "allowed"
        assert self.codes(verdict) == ["authorization_covered_by_wildcard"]
        assert "Fetch standard" in verdict.warnings[0].message and "Firefox" in verdict.warnings[0].message

    def test_authorization_listed_explicitly(self) -> None:
        """Listing authorization next to `*` needs no warning."""
        verdict = preflight(((ACAO, "*"), (ACAH, "*, Authorization")), method="GET", request_headers="authorization")
        assert self.codes(verdict) == []

    def test_several_headers_missing(self) -> None:
        """Chromium names one missing header; the verdict lists all of them."""
        verdict = preflight(((ACAO, "*"), (ACAH, "x-b")), method="GET", request_headers="x-a,x-b,x-c")
        assert verdict.reason == "HeaderDisallowedByPreflightResponse"
        assert self.codes(verdict) == ["several_headers_disallowed"]
        assert verdict.fix is not None and "x-b, x-a, x-c" in verdict.fix

    def test_wildcard_methods_unknown_credentials(self) -> None:
        """`ACAM: *` works only without credentials."""
        verdict = preflight(((ACAO, "*"), (ACAM, "*")), credentials=None)
        assert "wildcard_methods_with_credentials" in self.codes(verdict)

    @pytest.mark.parametrize(
        ("value", "seconds", "warning"),
        [
            (None, 5, None),
            ("600", 600, None),
            ("601", 601, "max_age_capped"),
            ("7200", 7200, "max_age_capped"),
            ("86401", 7200, "max_age_capped"),
            ("0", 0, None),
            ("-1", 0, None),
            ("abc", 5, "invalid_max_age"),
            ("1.5", 5, "invalid_max_age"),
            ("99999999999999999999", 5, "max_age_capped"),
        ],
        ids=repr,
    )
    def test_max_age(self, value: str | None, seconds: int, warning: str | None) -> None:
        """Chromium caches a preflight 5 s by default, at most 7200 s; other browsers' caps are warned about."""
        headers = ((ACAO, "*"), (ACAM, "PUT")) + ((("access-control-max-age", value),) if value is not None else ())
        verdict = preflight(headers)
        assert verdict.preflight_cache_seconds == seconds
        assert [c.code for c in verdict.warnings if "age" in c.code] == ([warning] if warning else [])

    def test_failed_preflight_is_not_cached(self) -> None:
        """A failing preflight is never cached."""
        assert preflight(((ACAO, "*"), ("access-control-max-age", "600"))).preflight_cache_seconds == 0


class TestFixes:
    """The fix names the exact header and value that make this request pass."""

    @pytest.mark.parametrize(
        ("make", "fix"),
        [
            (
                lambda: preflight(()),
                f"Send `Access-Control-Allow-Origin: {ORIGIN}` on the response to `OPTIONS /items`.",
            ),
            (
                lambda: actual((), credentials="include"),
                f"Send `Access-Control-Allow-Origin: {ORIGIN}` and `Access-Control-Allow-Credentials: true` on the response to `GET /items`.",
            ),
            (
                lambda: preflight(((ACAO, "*"), (ACAM, "GET, PATCH")), method="patch"),
                "Send `Access-Control-Allow-Methods: GET, PATCH, patch` on the response to `OPTIONS /items`.",
            ),
            (
                lambda: preflight(((ACAO, "*"),), method="GET", request_headers="content-type,x-a"),
                "Send `Access-Control-Allow-Headers: content-type, x-a` on the response to `OPTIONS /items`.",
            ),
            (
                lambda: actual((*ECHO, ("location", "http://u:p@x/")), status=302),
                "Remove the `user:password@` part from the `Location` header on the response to `GET /items`.",
            ),
        ],
        ids=["preflight-acao", "credentialed-acao", "method-case", "headers", "userinfo"],
    )
    def test_fix_text(self, make: object, fix: str) -> None:
        """The fix is a concrete header and value."""
        assert make().fix == fix  # type: ignore[operator]

    def test_case_mismatch_is_explained(self) -> None:
        """A method listed in another case is pointed out."""
        verdict = preflight(((ACAO, "*"), (ACAM, "PATCH")), method="patch")
        assert "case-sensitively" in verdict.explanation

    def test_starlette_400_is_explained(self) -> None:
        """Starlette's 400 on a rejected preflight is named as the likely cause."""
        assert "Starlette" in preflight(ECHO, status=400).explanation


class TestAsDict:
    """Verdict.as_dict() is the JSON-ready shape the events and the inspector use."""

    def test_keys(self) -> None:
        """as_dict carries exactly the documented keys."""
        data = preflight(((ACAO, "*"),), request_headers="X-A, x-b", credentials=None).as_dict()
        assert set(data) == {
            "verdict",
            "reason",
            "browser_message",
            "browser_message_xhr",
            "firefox_message",
            "firefox_console",
            "initiator",
            "credentials",
            "if_credentialed",
            "warnings",
            "explanation",
            "fix",
            "preflight",
            "origin",
            "url",
            "method",
            "requested_method",
            "requested_headers",
            "failed_parameter",
            "decisive_headers",
            "preflight_cache_seconds",
        }
        assert data["requested_headers"] == ["x-a", "x-b"]
        assert data["requested_method"] == "PUT"
        assert json.loads(json.dumps(data)) == data

    def test_if_credentialed_dict(self) -> None:
        """if_credentialed is a plain dict with verdict, reason and messages."""
        data = actual(((ACAO, "*"),), credentials=None).as_dict()
        assert data["if_credentialed"]["reason"] == "WildcardOriginNotAllowed"
        assert data["warnings"][0].keys() == {"code", "message"}


class TestFailedParameter:
    """failed_parameter is the value Chromium quotes in its message."""

    @pytest.mark.parametrize(
        ("make", "parameter"),
        [
            (lambda: actual(((ACAO, "http://x.test"),)), "http://x.test"),
            (lambda: actual((*ECHO, (ACAC, "yes")), credentials="include"), "yes"),
            (lambda: actual(ECHO, credentials="include"), ""),
            (lambda: preflight(ECHO, method="patch"), "patch"),
            (lambda: preflight(ECHO, method="GET", request_headers="X-Foo"), "x-foo"),
            (lambda: preflight((*ECHO, (ACAM, "PUT, a/b"))), "a/b"),
            (lambda: preflight(ECHO, status=500), None),
            (lambda: actual(()), None),
            (lambda: actual((*ECHO, ("location", "http://u:p@x.test/")), status=302), ""),
        ],
        ids=[
            "acao",
            "acac-value",
            "acac-missing",
            "method",
            "header",
            "acam-token",
            "status",
            "missing-acao",
            "userinfo",
        ],
    )
    def test_parameter(self, make: object, parameter: str | None) -> None:
        """The hint matches what the message quotes."""
        assert make().failed_parameter == parameter  # type: ignore[operator]


class TestLegs:
    """How a leg is classified."""

    def test_explicit_preflight_flag(self) -> None:
        """preflight=True judges the leg as a preflight even without OPTIONS."""
        request = Request("GET", U, (("origin", ORIGIN), ("access-control-request-method", "PUT")), preflight=True)
        assert evaluate(request, Response(200, ECHO)).reason == "MethodDisallowedByPreflightResponse"

    def test_options_without_acrm_is_an_actual_request(self) -> None:
        """A page's own OPTIONS request (no Access-Control-Request-Method) gets only the CORS check."""
        verdict = evaluate(Request("OPTIONS", U, (("origin", ORIGIN),), credentials="omit"), Response(200, ECHO))
        assert (verdict.preflight, verdict.verdict) == (False, "allowed")

    def test_requested_headers_normalised(self) -> None:
        """Access-Control-Request-Headers is split, trimmed, lower-cased and de-duplicated in order."""
        verdict = preflight(((ACAO, "*"), (ACAH, "*")), request_headers=" X-B ,x-a,,X-b")
        assert verdict.requested_headers == ("x-b", "x-a")

    def test_304_revalidation_caveat(self) -> None:
        """A 304 without CORS headers is flagged: the browser may check its cached response instead."""
        verdict = actual((), status=304)
        assert verdict.reason == "MissingAllowOriginHeader"
        assert [caveat.code for caveat in verdict.warnings] == ["revalidation_304"]

    def test_duplicate_request_origin_lines(self) -> None:
        """Two Origin lines fold into one value, which matches no ACAO; the verdict still forms."""
        request = Request("GET", U, (("origin", ORIGIN), ("origin", ORIGIN)), credentials="omit")
        assert evaluate(request, Response(200, ECHO)).reason == "AllowOriginMismatch"


class TestExplanations:
    """Explanations name the precise difference and stay readable on hostile values."""

    @pytest.mark.parametrize(
        ("value", "phrase"),
        [
            (ORIGIN + "/", "trailing slash"),
            (ORIGIN.upper(), "only in case"),
            ("null", "opaque origin"),
            ("foo", "not a valid origin"),
            ("http://x.test", "scheme, host and port"),
        ],
        ids=repr,
    )
    def test_origin_difference(self, value: str, phrase: str) -> None:
        """A wrong ACAO is explained by what exactly differs from the Origin."""
        assert phrase in actual(((ACAO, value),)).explanation

    def test_hostile_values_are_escaped_and_cut(self) -> None:
        """A 100 KB ACAO with control bytes shows up escaped and truncated, never raw."""
        verdict = actual(((ACAO, "\x01" + "a" * 100_000),))
        assert verdict.reason == "InvalidAllowOriginValue"
        assert "\\u0001" in verdict.explanation and "\x01" not in verdict.explanation
        assert len(verdict.explanation) < 1_000

    def test_status_hint_for_unrouted_options(self) -> None:
        """A 405 preflight points at the missing CORS layer."""
        assert "No CORS layer" in preflight(ECHO, status=405).explanation


def request(
    *extra: tuple[str, str],
    method: str = "GET",
    url: str = U,
    origin: str = ORIGIN,
    **fields: object,
) -> Request:
    """A cross-origin request leg with these extra headers (Request fields as keywords)."""
    return Request(method, url, (("origin", origin), *extra), **fields)  # type: ignore[arg-type]


class TestInitiator:
    """What the server can tell about the page API, and Chromium's wording for each (checked in Chromium 156)."""

    @pytest.mark.parametrize(
        ("headers", "initiator"),
        [
            ((("sec-fetch-dest", "script"),), "script"),
            ((("sec-fetch-dest", "image"),), "image"),
            ((("sec-fetch-dest", "font"),), "font"),
            ((("sec-fetch-dest", "style"),), "style"),
            ((("sec-fetch-dest", "audio"),), "audio"),
            ((("sec-fetch-dest", "video"),), "video"),
            ((("sec-fetch-dest", "track"),), "track"),
            ((("sec-fetch-dest", "empty"),), "fetch_or_xhr"),
            ((), "fetch_or_xhr"),
            (
                (("sec-fetch-dest", "empty"), ("accept", "text/event-stream"), ("cache-control", "no-cache")),
                "resource",
            ),
            # A fetch() that asks for an event stream (fetch-event-source and friends) is still a fetch.
            ((("sec-fetch-dest", "empty"), ("accept", "text/event-stream")), "fetch_or_xhr"),
            ((("sec-fetch-dest", "worker"),), "fetch_or_xhr"),
        ],
        ids=repr,
    )
    def test_inferred_from_sec_fetch_dest_and_accept(
        self, headers: tuple[tuple[str, str], ...], initiator: str
    ) -> None:
        """Sec-Fetch-Dest names subresources; EventSource shows in its Accept and Cache-Control."""
        assert evaluate(request(*headers, credentials="omit"), Response(200)).initiator == initiator

    @pytest.mark.parametrize(
        ("dest", "kind"),
        [
            ("script", "script"),
            ("image", "image"),
            ("font", "font"),
            ("style", "CSS stylesheet"),
            ("audio", "audio"),
            ("video", "video"),
            ("track", "text track"),
        ],
    )
    def test_subresource_prefix_without_valid_value_suffix(self, dest: str, kind: str) -> None:
        """Chromium names the resource type, and adds "Have the server send…" for fetch() only."""
        verdict = evaluate(
            request(("sec-fetch-dest", dest), credentials="omit"), Response(200, ((ACAO, "http://x.test"),))
        )
        assert verdict.browser_message == (
            f"Access to {kind} at '{U}' from origin '{ORIGIN}' has been blocked by CORS policy: The "
            "'Access-Control-Allow-Origin' header has a value 'http://x.test' that is not equal to the supplied origin."
        )
        assert verdict.browser_message_xhr is None

    def test_event_source_is_a_resource_without_xhr_suffix(self) -> None:
        """EventSource reads "Access to resource at"; its withCredentials failure has no XHR sentence."""
        headers = (("accept", "text/event-stream"), ("cache-control", "no-cache"), ("sec-fetch-dest", "empty"))
        verdict = evaluate(request(*headers, credentials="include"), Response(200, ((ACAO, "*"),)))
        assert verdict.browser_message == (
            f"Access to resource at '{U}' from origin '{ORIGIN}' has been blocked by CORS policy: {WILDCARD}"
        )

    def test_fetch_or_xhr_carries_both_texts(self) -> None:
        """When the server cannot tell fetch() from XMLHttpRequest, browser_message_xhr has XHR's wording."""
        verdict = evaluate(request(("sec-fetch-dest", "empty"), credentials="omit"), Response(200, ((ACAO, "x y"),)))
        body = "The 'Access-Control-Allow-Origin' header contains multiple values 'x y', but only one is allowed."
        assert verdict.browser_message == PREFIX + body + VALID
        assert verdict.browser_message_xhr == (
            f"Access to XMLHttpRequest at '{U}' from origin '{ORIGIN}' has been blocked by CORS policy: {body}"
        )

    def test_xhr_text_on_the_credentialed_outcome(self) -> None:
        """if_credentialed also carries XMLHttpRequest's text, with the withCredentials sentence."""
        verdict = evaluate(request(credentials=None), Response(200, ECHO))
        assert verdict.if_credentialed is not None
        assert verdict.if_credentialed.browser_message == PREFIX + acac("")
        assert verdict.if_credentialed.browser_message_xhr == (
            f"Access to XMLHttpRequest at '{U}' from origin '{ORIGIN}' has been blocked by CORS policy: {acac('')} "
            "The credentials mode of requests initiated by the XMLHttpRequest is controlled by the withCredentials "
            "attribute."
        )
        assert (
            verdict.as_dict()["if_credentialed"]["browser_message_xhr"] == verdict.if_credentialed.browser_message_xhr
        )

    @pytest.mark.parametrize("initiator", ["fetch", "XMLHttpRequest", "resource"])
    def test_explicit_initiator_has_one_text(self, initiator: str) -> None:
        """A caller that knows the initiator gets only its text."""
        verdict = evaluate(request(credentials="omit", initiator=initiator), Response(200))
        assert verdict.initiator == initiator and verdict.browser_message_xhr is None
        kind = {"fetch": "fetch", "XMLHttpRequest": "XMLHttpRequest", "resource": "resource"}[initiator]
        assert verdict.browser_message == (
            f"Access to {kind} at '{U}' from origin '{ORIGIN}' has been blocked by CORS policy: {NO_ACAO}"
        )

    def test_allowed_has_no_texts(self) -> None:
        """Nothing is printed for an allowed request, whatever the initiator."""
        verdict = evaluate(request(credentials="omit"), Response(200, ECHO))
        assert (verdict.browser_message, verdict.browser_message_xhr, verdict.firefox_console) == (None, None, ())


class TestStorageAccessHeader:
    """Sec-Fetch-Storage-Access proves credentials: 'include', like a Cookie."""

    @pytest.mark.parametrize("value", ["none", "inactive", "active"])
    def test_proves_include_on_the_actual_request(self, value: str) -> None:
        """Chromium 156 sends it on cross-site requests whose credentials mode is include."""
        verdict = evaluate(request(("sec-fetch-storage-access", value)), Response(200, ECHO))
        assert (verdict.credentials, verdict.reason, verdict.if_credentialed) == (
            "include",
            "InvalidAllowCredentials",
            None,
        )

    def test_proves_include_on_a_preflight(self) -> None:
        """Firefox ESR 153 sends it on the preflight of a credentialed request too."""
        verdict = evaluate(
            request(("access-control-request-method", "PUT"), ("sec-fetch-storage-access", "none"), method="OPTIONS"),
            Response(200, (*ECHO, (ACAM, "PUT"))),
        )
        assert (verdict.credentials, verdict.reason) == ("include", "PreflightInvalidAllowCredentials")

    def test_absent_stays_unknown(self) -> None:
        """Without it (a same-site request, or an uncredentialed one) the server cannot tell."""
        verdict = evaluate(request(("sec-fetch-site", "same-site")), Response(200, ECHO))
        assert verdict.credentials == "unknown" and verdict.if_credentialed is not None


class TestRedirectChain:
    """Later hops of a redirect chain, as Chromium words them (checked with a chain across two ports)."""

    HOP = "http://127.0.0.1:9000/next"

    def test_tainted_hop_names_the_page_origin(self) -> None:
        """After a cross-origin hop the request says Origin: null, but Chromium names the page's origin."""
        leg = request(origin="null", url=self.HOP, credentials="omit", redirected_from=U, page_origin=ORIGIN)
        verdict = evaluate(leg, Response(200, ((ACAO, ORIGIN),)))
        assert verdict.reason == "AllowOriginMismatch" and verdict.origin == "null"
        assert verdict.browser_message == (
            f"Access to fetch at '{self.HOP}' (redirected from '{U}') from origin '{ORIGIN}' has been blocked by CORS "
            f"policy: The 'Access-Control-Allow-Origin' header has a value '{ORIGIN}' that is not equal to the "
            f"supplied origin.{VALID}"
        )
        assert "`Origin: null`" in verdict.explanation and verdict.fix is not None and "directly" in verdict.fix

    def test_tainted_hop_passes_with_a_null_echo(self) -> None:
        """The judgement uses the Origin the browser sent: echoing `null` passes."""
        leg = request(origin="null", url=self.HOP, credentials="omit", redirected_from=U, page_origin=ORIGIN)
        assert evaluate(leg, Response(200, ((ACAO, "null"),))).verdict == "allowed"

    def test_page_origin_only_replaces_null(self) -> None:
        """An untainted leg names its own Origin, whatever page_origin says."""
        leg = request(url=self.HOP, credentials="omit", redirected_from=U, page_origin="http://elsewhere.test")
        message = evaluate(leg, Response(200)).browser_message
        assert message is not None and f"from origin '{ORIGIN}'" in message

    def test_opaque_page_without_page_origin(self) -> None:
        """A sandboxed page sends Origin: null and Chromium names 'null'."""
        message = evaluate(request(origin="null", credentials="omit"), Response(200)).browser_message
        assert message is not None and "from origin 'null'" in message

    def test_preflight_at_a_redirect_target(self) -> None:
        """A 307/308 target's failed preflight also says "(redirected from …)"."""
        leg = request(("access-control-request-method", "PUT"), method="OPTIONS", url=self.HOP, redirected_from=U)
        assert evaluate(leg, Response(200)).browser_message == (
            f"Access to fetch at '{self.HOP}' (redirected from '{U}') from origin '{ORIGIN}' has been blocked by CORS "
            f"policy: {PF}{NO_ACAO}"
        )


FF = "Cross-Origin Request Blocked: The Same Origin Policy disallows reading the remote resource at "
DID_NOT_SUCCEED = f"{FF}{U}. (Reason: CORS request did not succeed). Status code: (null)."


class TestFirefoxConsole:
    """Every line Firefox ESR 153 prints for a leg, in order (checked over Marionette)."""

    def test_actual_request_prints_one_line(self) -> None:
        """A final response that fails prints just its reason."""
        verdict = actual((), status=404)
        assert verdict.firefox_console == (
            f"{FF}{U}. (Reason: CORS header ‘Access-Control-Allow-Origin’ missing). Status code: 404.",
        )
        assert verdict.firefox_message == verdict.firefox_console[0]

    def test_failed_preflight_is_followed_by_did_not_succeed(self) -> None:
        """After a failed preflight Firefox also reports the request itself."""
        verdict = preflight(ECHO)
        assert verdict.firefox_console == (
            f"{FF}{U}. (Reason: Did not find method in CORS header ‘Access-Control-Allow-Methods’).",
            DID_NOT_SUCCEED,
        )

    def test_failed_redirect_hop_is_followed_by_did_not_succeed(self) -> None:
        """A redirect without ACAO names its 30x status, then the failed request."""
        verdict = actual((("location", "/next"),), status=302)
        assert verdict.firefox_console == (
            f"{FF}{U}. (Reason: CORS header ‘Access-Control-Allow-Origin’ missing). Status code: 302.",
            DID_NOT_SUCCEED,
        )

    def test_redirected_preflight_prints_three_lines(self) -> None:
        """A redirected preflight with a good ACAO: the redirect, its status, the failed request."""
        verdict = preflight((*ECHO, ("location", "/x")), status=307)
        assert verdict.firefox_console == (
            f"{FF}{U}. (Reason: CORS request external redirect not allowed).",
            f"{FF}{U}. (Reason: CORS preflight response did not succeed). Status code: 307.",
            DID_NOT_SUCCEED,
        )

    def test_redirected_preflight_without_acao(self) -> None:
        """Firefox checks the redirected preflight's ACAO first (Chromium reports the redirect)."""
        verdict = preflight((("location", "/x"),), status=302)
        assert verdict.reason == "PreflightDisallowedRedirect"
        assert verdict.firefox_console == (
            f"{FF}{U}. (Reason: CORS header ‘Access-Control-Allow-Origin’ missing). Status code: 302.",
            DID_NOT_SUCCEED,
            DID_NOT_SUCCEED,
        )
        assert verdict.firefox_message == verdict.firefox_console[0]

    def test_redirect_with_userinfo_is_one_failed_channel(self) -> None:
        """Firefox cancels a redirect to a URL with userinfo: one "did not succeed" line."""
        verdict = actual((*ECHO, ("location", "http://u:p@x.test/")), status=307)
        assert verdict.firefox_console == (DID_NOT_SUCCEED,)

    def test_authorization_under_star_warns_when_allowed(self) -> None:
        """An allowed preflight where `*` covered Authorization prints Firefox's deprecation warning."""
        verdict = preflight(((ACAO, "*"), (ACAH, "*")), method="GET", request_headers="authorization")
        assert verdict.verdict == "allowed" and verdict.firefox_message is None
        assert len(verdict.firefox_console) == 1
        assert verdict.firefox_console[0].startswith("Cross-Origin Request Warning: ")

    def test_hint_is_read_as_utf8(self) -> None:
        """Firefox decodes header bytes as UTF-8 (invalid bytes become U+FFFD); Chromium escapes them."""
        valid = actual(((ACAO, "http://a\xc3\xa9.test"),))
        invalid = actual(((ACAO, "http://ex\xe9.test"),))
        assert valid.firefox_message is not None and "does not match ‘http://aé.test’" in valid.firefox_message
        assert (
            invalid.firefox_message is not None and "does not match ‘http://ex\ufffd.test’" in invalid.firefox_message
        )

    def test_credentialed_outcome_has_its_lines(self) -> None:
        """if_credentialed carries Firefox's lines for the credentialed request."""
        verdict = preflight((*ECHO, (ACAM, "PUT")), credentials=None)
        assert verdict.if_credentialed is not None
        assert verdict.if_credentialed.firefox_console == (
            f"{FF}{U}. (Reason: expected ‘true’ in CORS header ‘Access-Control-Allow-Credentials’).",
            DID_NOT_SUCCEED,
        )


class TestWarningsThatBite:
    """Warnings only for what a page can run into (issue 17)."""

    def test_followed_redirect_hides_nothing(self) -> None:
        """A page never sees a followed redirect's headers, so their exposure is moot."""
        verdict = actual(((ACAO, "*"), ("location", "/next"), ("x-trace", "1")), status=302)
        assert "header_not_exposed" not in [caveat.code for caveat in verdict.warnings]

    def test_allow_on_a_405_is_not_worth_exposing(self) -> None:
        """The Allow header of a 405 is for the client library, not a reason to warn."""
        verdict = actual(((ACAO, "*"), ("allow", "GET")), status=405)
        assert "header_not_exposed" not in [caveat.code for caveat in verdict.warnings]

    def test_allow_elsewhere_still_warns(self) -> None:
        """On a 200 an unexposed Allow is still reported."""
        verdict = actual(((ACAO, "*"), ("allow", "GET")))
        assert "header_not_exposed" in [caveat.code for caveat in verdict.warnings]


class TestExplanationOrder:
    """The cause comes first, then the browser's mechanics, then the credentials note (issue 15)."""

    def test_cause_first_and_no_json_key_in_prose(self) -> None:
        """The explanation starts with what the server did and never names a JSON key."""
        assert "if_credentialed" not in actual(ECHO, credentials=None).explanation
        verdict = actual(((ACAO, "*"),), credentials=None)
        assert verdict.explanation.startswith("`Access-Control-Allow-Origin: *` allows any origin")
        assert verdict.explanation.endswith("the browser blocks it (WildcardOriginNotAllowed).")

    def test_blocked_preflight_order(self) -> None:
        """Cause, mechanics, where the browser stops, credentials."""
        verdict = preflight(ECHO, status=400, credentials=None)
        text = verdict.explanation
        assert text.startswith("The preflight answered 400.")
        assert text.index("2xx status") < text.index("The browser stops here") < text.index("cannot tell")
        assert "if_credentialed" not in text


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("+0", 0), ("-0", 0), ("00", 0), ("10abc", 5), (" 5", 5), ("+5", 5), ("", 5), ("0x10", 5), ("1e3", 5)],
    ids=repr,
)
def test_max_age_edge_values(value: str, seconds: int) -> None:
    """Chromium's base::StringToInt64 rules, checked by counting preflights in Chromium 156."""
    headers = ((ACAO, "*"), (ACAM, "PUT"), ("access-control-max-age", value))
    assert preflight(headers).preflight_cache_seconds == seconds


def test_failed_preflight_is_never_cached_whatever_its_max_age() -> None:
    """A 400 preflight asking for 600 s is not cached (the inspector showed 600 s)."""
    assert preflight((*ECHO, (ACAM, "PUT"), ("access-control-max-age", "600")), status=400).preflight_cache_seconds == 0

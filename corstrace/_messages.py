"""Console messages, word for word: Chromium 156 (cors_error_string.cc) and Firefox (security.properties).

The Chromium suffixes were checked against Debian's Chromium 156.0.8078.108 by
tests/test_engine_browser.py: fetch() gets " Have the server send the header with a valid value."
after the three bad-ACAO bodies and nothing after the missing-ACAO body (the old "set the request's
mode to 'no-cors'" advice is gone); XHR gets no ACAO suffix but the withCredentials sentence after
the two credential errors.
"""

from __future__ import annotations

from corstrace._fetch import escape_hint

PREFLIGHT_PREFIX = "Response to preflight request doesn't pass access control check: "

_NO_ACAO = "No 'Access-Control-Allow-Origin' header is present on the requested resource."
_WILDCARD = (
    "The value of the 'Access-Control-Allow-Origin' header in the response must not be the wildcard '*' "
    "when the request's credentials mode is 'include'."
)
_MULTIPLE = "The 'Access-Control-Allow-Origin' header contains multiple values '{hint}', but only one is allowed."
_INVALID = "The 'Access-Control-Allow-Origin' header contains the invalid value '{hint}'."
_MISMATCH = "The 'Access-Control-Allow-Origin' header has a value '{hint}' that is not equal to the supplied origin."
_ACAC = (
    "The value of the 'Access-Control-Allow-Credentials' header in the response is '{hint}' which must be 'true' "
    "when the request's credentials mode is 'include'."
)

# Body per Network.CorsError name, for the reasons a server's response can decide.
CHROMIUM_BODIES: dict[str, str] = {
    "WildcardOriginNotAllowed": _WILDCARD,
    "MissingAllowOriginHeader": _NO_ACAO,
    "MultipleAllowOriginValues": _MULTIPLE,
    "InvalidAllowOriginValue": _INVALID,
    "AllowOriginMismatch": _MISMATCH,
    "InvalidAllowCredentials": _ACAC,
    "PreflightWildcardOriginNotAllowed": _WILDCARD,
    "PreflightMissingAllowOriginHeader": _NO_ACAO,
    "PreflightMultipleAllowOriginValues": _MULTIPLE,
    "PreflightInvalidAllowOriginValue": _INVALID,
    "PreflightAllowOriginMismatch": _MISMATCH,
    "PreflightInvalidAllowCredentials": _ACAC,
    "PreflightInvalidStatus": "It does not have HTTP ok status.",
    "PreflightDisallowedRedirect": "Redirect is not allowed for a preflight request.",
    "InvalidAllowMethodsPreflightResponse": (
        "Cannot parse Access-Control-Allow-Methods response header field in preflight response."
    ),
    "InvalidAllowHeadersPreflightResponse": (
        "Cannot parse Access-Control-Allow-Headers response header field in preflight response."
    ),
    "MethodDisallowedByPreflightResponse": (
        "Method {hint} is not allowed by Access-Control-Allow-Methods in preflight response."
    ),
    "HeaderDisallowedByPreflightResponse": (
        "Request header field {hint} is not allowed by Access-Control-Allow-Headers in preflight response."
    ),
    "RedirectContainsCredentials": (
        "Redirect location '{hint}' contains a username and password, which is disallowed for cross-origin requests."
    ),
    "InvalidResponse": "The response is invalid.",
}

_PREFLIGHT_PREFIXED = frozenset(
    {
        "PreflightWildcardOriginNotAllowed",
        "PreflightMissingAllowOriginHeader",
        "PreflightMultipleAllowOriginValues",
        "PreflightInvalidAllowOriginValue",
        "PreflightAllowOriginMismatch",
        "PreflightInvalidAllowCredentials",
        "PreflightInvalidStatus",
        "PreflightDisallowedRedirect",
    }
)
_VALID_VALUE_SUFFIX = " Have the server send the header with a valid value."
_BAD_ACAO = frozenset(
    {
        "MultipleAllowOriginValues",
        "InvalidAllowOriginValue",
        "AllowOriginMismatch",
        "PreflightMultipleAllowOriginValues",
        "PreflightInvalidAllowOriginValue",
        "PreflightAllowOriginMismatch",
    }
)
_XHR_SUFFIX = (
    " The credentials mode of requests initiated by the XMLHttpRequest is controlled by the withCredentials attribute."
)
_CREDENTIAL_ERRORS = frozenset(
    {
        "WildcardOriginNotAllowed",
        "InvalidAllowCredentials",
        "PreflightWildcardOriginNotAllowed",
        "PreflightInvalidAllowCredentials",
    }
)


def chromium_message(
    reason: str, *, url: str, origin: str, hint: str | None, initiator: str, redirected_from: str | None
) -> str:
    """Chromium's console line for ``reason`` (a Network.CorsError name)."""
    redirected = f"(redirected from '{redirected_from}') " if redirected_from else ""
    parts = [f"Access to {initiator} at '{url}' {redirected}from origin '{origin}' has been blocked by CORS policy: "]
    if reason in _PREFLIGHT_PREFIXED:
        parts.append(PREFLIGHT_PREFIX)
    body = CHROMIUM_BODIES.get(reason, CHROMIUM_BODIES["InvalidResponse"])
    parts.append(body.replace("{hint}", escape_hint(hint or "")) if "{hint}" in body else body)
    if initiator == "fetch" and reason in _BAD_ACAO:
        parts.append(_VALID_VALUE_SUFFIX)
    elif initiator == "XMLHttpRequest" and reason in _CREDENTIAL_ERRORS:
        parts.append(_XHR_SUFFIX)
    return "".join(parts)


_FIREFOX_PREFIX = "Cross-Origin Request Blocked: The Same Origin Policy disallows reading the remote resource at "


def firefox_message(reason: str, *, url: str, hint: str | None, status: int, acao_lines: int) -> str:
    """Firefox's console line for the situation Chromium calls ``reason`` (security.properties wording)."""
    hint = hint or ""
    base = reason.removeprefix("Preflight") if reason.startswith("Preflight") else reason
    if base == "WildcardOriginNotAllowed":
        # CORSNotSupportingCredentials is the one message that quotes the URL.
        return (
            f"{_FIREFOX_PREFIX}‘{url}’. (Reason: Credential is not supported if the CORS header "
            "‘Access-Control-Allow-Origin’ is ‘*’)."
        )
    if base == "MissingAllowOriginHeader":
        text = f"CORS header ‘Access-Control-Allow-Origin’ missing). Status code: {status}."
    elif base in ("MultipleAllowOriginValues", "InvalidAllowOriginValue", "AllowOriginMismatch"):
        # Firefox only objects to several header *lines*; one line "a, b" is a plain mismatch there.
        if acao_lines > 1:
            text = "Multiple CORS header ‘Access-Control-Allow-Origin’ not allowed)."
        else:
            text = f"CORS header ‘Access-Control-Allow-Origin’ does not match ‘{hint}’)."
    elif base == "InvalidAllowCredentials":
        text = "expected ‘true’ in CORS header ‘Access-Control-Allow-Credentials’)."
    elif base == "InvalidStatus":
        text = f"CORS preflight response did not succeed). Status code: {status}."
    elif base == "DisallowedRedirect":
        text = "CORS request external redirect not allowed)."
    elif reason == "InvalidAllowMethodsPreflightResponse":
        text = f"invalid token ‘{hint}’ in CORS header ‘Access-Control-Allow-Methods’)."
    elif reason == "InvalidAllowHeadersPreflightResponse":
        text = f"invalid token ‘{hint}’ in CORS header ‘Access-Control-Allow-Headers’)."
    elif reason == "MethodDisallowedByPreflightResponse":
        text = "Did not find method in CORS header ‘Access-Control-Allow-Methods’)."
    elif reason == "HeaderDisallowedByPreflightResponse":
        text = (
            f"header ‘{hint}’ is not allowed according to header ‘Access-Control-Allow-Headers’ "
            "from CORS preflight response)."
        )
    else:
        # Firefox cancels a redirect to a URL with userinfo (and other failures) as a failed channel.
        text = "CORS request did not succeed). Status code: (null)."
    return f"{_FIREFOX_PREFIX}{url}. (Reason: {text}"


FIREFOX_AUTHORIZATION_WARNING = (
    "Cross-Origin Request Warning: The Same Origin Policy will disallow reading the remote resource at {url} soon. "
    "(Reason: When the `Access-Control-Allow-Headers` is `*`, the `Authorization` header is not covered. To include "
    "the `Authorization` header, it must be explicitly listed in CORS header `Access-Control-Allow-Headers`)."
)

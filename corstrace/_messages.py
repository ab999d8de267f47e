"""Console messages, word for word: Chromium 156 (cors_error_string.cc) and Firefox ESR 153 (security.properties).

Checked against Debian's Chromium 156 and Firefox ESR 153 by tests/test_engine_browser*.py:

* Chromium names the page API: ``Access to fetch at``, ``XMLHttpRequest``, ``script``, ``image``, ``font``,
  ``CSS stylesheet``, ``audio``, ``video``, ``text track``, and ``resource`` for EventSource and sendBeacon.
  Only fetch() gets " Have the server send the header with a valid value." after the three bad-ACAO bodies
  (nothing after the missing-ACAO body: the old "set the request's mode to 'no-cors'" advice is gone); only
  XMLHttpRequest gets the withCredentials sentence after the credential errors.
* Firefox words every initiator alike, but prints follow-up lines after a failed preflight or redirect hop.
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


# Chromium's word for the page API in "Access to <kind> at ...", per initiator (Resource::ResourceTypeToString,
# checked in Chromium 156). `fetch_or_xhr`, which the server cannot split, gets fetch's wording.
_KINDS = {
    "fetch": "fetch",
    "fetch_or_xhr": "fetch",
    "XMLHttpRequest": "XMLHttpRequest",
    "script": "script",
    "image": "image",
    "font": "font",
    "style": "CSS stylesheet",
    "audio": "audio",
    "video": "video",
    "track": "text track",
    "resource": "resource",
}


def chromium_message(
    reason: str,
    *,
    url: str,
    origin: str,
    hint: str | None,
    initiator: str,
    redirected_from: str | None,
) -> str:
    """Chromium's console line for ``reason`` (a Network.CorsError name) when ``initiator`` made the request.

    ``origin`` is the origin Chromium names (the page's, also after a tainting redirect), ``redirected_from``
    the URL the page asked for when ``url`` is a later hop of its redirect chain.
    """
    redirected = f"(redirected from '{redirected_from}') " if redirected_from else ""
    kind = _KINDS.get(initiator, initiator)
    parts = [f"Access to {kind} at '{url}' {redirected}from origin '{origin}' has been blocked by CORS policy: "]
    if reason in _PREFLIGHT_PREFIXED:
        parts.append(PREFLIGHT_PREFIX)
    body = CHROMIUM_BODIES.get(reason, CHROMIUM_BODIES["InvalidResponse"])
    parts.append(body.replace("{hint}", escape_hint(hint or "")) if "{hint}" in body else body)
    if kind == "fetch" and reason in _BAD_ACAO:
        parts.append(_VALID_VALUE_SUFFIX)
    elif kind == "XMLHttpRequest" and reason in _CREDENTIAL_ERRORS:
        parts.append(_XHR_SUFFIX)
    return "".join(parts)


_FIREFOX_PREFIX = "Cross-Origin Request Blocked: The Same Origin Policy disallows reading the remote resource at "
# CORSDidNotSucceed2 without a status: Firefox's follow-up line after a failed preflight or redirect hop, and
# its only line for a redirect it cancels (a Location with userinfo).
_DID_NOT_SUCCEED = "CORS request did not succeed). Status code: (null)."


def firefox_text(value: str) -> str:
    """A header value as Firefox quotes it: the received bytes read as UTF-8, invalid bytes as U+FFFD."""
    try:
        return value.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return value  # already decoded text (e.g. from a HAR file)


def firefox_message(reason: str, *, url: str, hint: str | None, status: int, exact_acao_lines: int) -> str:
    """Firefox's console line for the failure Chromium calls ``reason`` (security.properties wording).

    ``hint`` is the value Chromium quotes; ``exact_acao_lines`` counts the response's header lines whose name
    is spelled exactly ``Access-Control-Allow-Origin`` (Firefox says "Multiple CORS header" only for those).
    """
    hint = firefox_text(hint or "")
    base = reason.removeprefix("Preflight") if reason.startswith("Preflight") else reason
    if base == "WildcardOriginNotAllowed":
        # CORSNotSupportingCredentials is the one message that quotes the URL.
        return (
            f"{_FIREFOX_PREFIX}‘{url}’. (Reason: Credential is not supported if the CORS header "
            "‘Access-Control-Allow-Origin’ is ‘*’)."
        )
    return f"{_FIREFOX_PREFIX}{url}. (Reason: {_firefox_reason(reason, base, hint, status, exact_acao_lines)}"


def _firefox_reason(reason: str, base: str, hint: str, status: int, exact_acao_lines: int) -> str:
    if base == "MissingAllowOriginHeader":
        return f"CORS header ‘Access-Control-Allow-Origin’ missing). Status code: {status}."
    if base in ("MultipleAllowOriginValues", "InvalidAllowOriginValue", "AllowOriginMismatch"):
        # Firefox counts header lines by their spelled name; otherwise it compares the joined value.
        if exact_acao_lines > 1:
            return "Multiple CORS header ‘Access-Control-Allow-Origin’ not allowed)."
        return f"CORS header ‘Access-Control-Allow-Origin’ does not match ‘{hint}’)."
    return _FIREFOX_REASONS.get(reason, _DID_NOT_SUCCEED).format(hint=hint, status=status)


# Firefox's `(Reason: …)` text for the failures that need no special casing. Anything else (a redirect to a URL
# with userinfo, an invalid response) Firefox reports as a failed channel.
_FIREFOX_REASONS = {
    "InvalidAllowCredentials": "expected ‘true’ in CORS header ‘Access-Control-Allow-Credentials’).",
    "PreflightInvalidAllowCredentials": "expected ‘true’ in CORS header ‘Access-Control-Allow-Credentials’).",
    "PreflightInvalidStatus": "CORS preflight response did not succeed). Status code: {status}.",
    "PreflightDisallowedRedirect": "CORS request external redirect not allowed).",
    "InvalidAllowMethodsPreflightResponse": "invalid token ‘{hint}’ in CORS header ‘Access-Control-Allow-Methods’).",
    "InvalidAllowHeadersPreflightResponse": "invalid token ‘{hint}’ in CORS header ‘Access-Control-Allow-Headers’).",
    "MethodDisallowedByPreflightResponse": "Did not find method in CORS header ‘Access-Control-Allow-Methods’).",
    "HeaderDisallowedByPreflightResponse": (
        "header ‘{hint}’ is not allowed according to header ‘Access-Control-Allow-Headers’ from CORS preflight "
        "response)."
    ),
}


def firefox_console(
    first: str, *, url: str, status: int, preflight: bool, redirect: bool, access_failed: bool
) -> tuple[str, ...]:
    """Every CORS line Firefox ESR 153 prints for a leg it blocks, in order; ``first`` is its first line.

    A failed preflight and a failed redirect hop are followed by "CORS request did not succeed" (the channel
    the page opened fails too). A redirected preflight prints three lines: the failed access check and two
    follow-ups, or (access check passed) the redirect, the non-ok status and one follow-up.
    """
    follow_up = f"{_FIREFOX_PREFIX}{url}. (Reason: {_DID_NOT_SUCCEED}"
    if first == follow_up:
        return (first,)  # a cancelled redirect: the follow-up is the whole report
    if preflight and redirect:
        if access_failed:
            return (first, follow_up, follow_up)
        status_line = firefox_message("PreflightInvalidStatus", url=url, hint=None, status=status, exact_acao_lines=0)
        return (first, status_line, follow_up)
    if preflight or redirect:
        return (first, follow_up)
    return (first,)


# Firefox's warning on a preflight it lets through because `Access-Control-Allow-Headers: *` covered Authorization.
FIREFOX_AUTHORIZATION_WARNING = (
    "Cross-Origin Request Warning: The Same Origin Policy will disallow reading the remote resource at {url} soon. "
    "(Reason: When the `Access-Control-Allow-Headers` is `*`, the `Authorization` header is not covered. To include "
    "the `Authorization` header, it must be explicitly listed in CORS header `Access-Control-Allow-Headers`)."
)

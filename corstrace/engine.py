"""The verdict engine: what Chromium does with one leg of a cross-origin exchange.

Pure functions, no I/O. Input is what the server saw (:class:`Request`) and what it answered
(:class:`Response`, or ``None`` when an exception escaped before a response started). Output is
one immutable :class:`Verdict` carrying the browser's decision, Chromium's ``Network.CorsError``
name and console message, Firefox's wording, warnings, an explanation and a fix.

Everything else in corstrace (structlog events, the inspector, the CLI) only presents it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Credentials = Literal["include", "omit", "unknown"]
VerdictName = Literal["allowed", "blocked"]
Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Request:
    """What the server saw of one request leg.

    ``headers`` are ``(name, value)`` pairs as received (ASGI bytes decoded as latin-1, duplicates
    kept, order kept). ``preflight=None`` means "decide like CORSMiddleware": OPTIONS with both
    ``Origin`` and ``Access-Control-Request-Method``. ``credentials=None`` means "infer": a
    ``Cookie`` header on a cross-origin request proves ``include``, otherwise it is ``unknown``.
    """

    method: str
    url: str
    headers: Headers = ()
    preflight: bool | None = None
    credentials: Credentials | None = None
    # Chromium names the API in its message: "Access to fetch at ..." or "Access to XMLHttpRequest at ...".
    initiator: Literal["fetch", "XMLHttpRequest"] = "fetch"
    # Set when this leg is a hop after a redirect; Chromium then says "(redirected from '...')".
    redirected_from: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """What the server answered: the status and headers of ``http.response.start``."""

    status: int
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class Caveat:
    """A warning: something that does not block this request but will bite."""

    code: str  # stable machine id, e.g. "header_not_exposed", "missing_vary_origin"
    message: str  # one sentence for a human


@dataclass(frozen=True, slots=True)
class Outcome:
    """A verdict for one credentials mode (used for ``Verdict.if_credentialed``)."""

    verdict: VerdictName
    reason: str | None
    browser_message: str | None
    firefox_message: str | None
    fix: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The browser's decision on one request leg (preflight or actual)."""

    verdict: VerdictName
    # Chrome DevTools `Network.CorsError` name (e.g. "PreflightMissingAllowOriginHeader"); None when allowed.
    reason: str | None
    browser_message: str | None  # Chromium's console text, exactly; None when allowed
    firefox_message: str | None  # Firefox's console text; None when allowed
    credentials: Credentials
    # When credentials are unknown and `include` would change the outcome: what the browser does then.
    if_credentialed: Outcome | None
    warnings: tuple[Caveat, ...]
    explanation: str
    fix: str | None
    preflight: bool
    origin: str | None
    url: str
    method: str
    requested_method: str | None = None  # Access-Control-Request-Method on a preflight
    requested_headers: tuple[str, ...] = ()  # Access-Control-Request-Headers, lower-cased, in order
    # Chromium's `failed_parameter`: the ACAO/ACAC value, method or header name quoted in the message.
    failed_parameter: str | None = None
    # Lower-cased names of the request/response headers that decided the verdict (the inspector highlights them).
    decisive_headers: tuple[str, ...] = ()
    # Seconds Chromium caches this preflight's result (None for actual requests).
    preflight_cache_seconds: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The verdict as plain JSON-ready data (the keys the structlog events use)."""
        raise NotImplementedError


def evaluate(request: Request, response: Response | None) -> Verdict:
    """Predict what Chromium does with ``request`` answered by ``response``.

    ``response=None`` means no response started because an exception escaped: the outer
    server-error layer then sends a 500 without CORS headers, and that is what is judged.
    Never raises, whatever the input.
    """
    raise NotImplementedError

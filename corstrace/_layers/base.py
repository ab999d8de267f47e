"""The adapter protocol: what corstrace knows of a CORS layer that is not Starlette's ``CORSMiddleware``.

A :class:`Layer` is found once, when the app's stack is discovered (:func:`corstrace._layers.find`), and then
answers two questions in its framework's own terms: what its configuration gets wrong at startup
(:meth:`Layer.lint`), and why it answered one leg as it did (:meth:`Layer.explain`: the setting that refused,
near-misses, the fix written as that framework spells it). :class:`Ask` is the leg as the browser asked it,
decoded once; :class:`Cause` is the answer, shaped like :class:`corstrace._cause.ServerCause`.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from corstrace._config import Finding, near_miss
from corstrace._facts import LegFacts, Texts
from corstrace._fetch import default_port
from corstrace.engine import REFUSAL_HINT, Verdict, cors_unsafe_request_header_names

CREDENTIAL_REASONS = frozenset({"InvalidAllowCredentials", "PreflightInvalidAllowCredentials"})
WILDCARD_REASONS = frozenset({"WildcardOriginNotAllowed", "PreflightWildcardOriginNotAllowed"})
_PRIVATE_NETWORK = "access-control-request-private-network"


@dataclass(frozen=True, slots=True)
class Cause:
    """Why the layer answered as it did (fields as :class:`corstrace._cause.ServerCause` names them)."""

    layer: str | None = None  # the event's `layer`
    text: str | None = None  # the cause, leading the explanation
    replaces: bool = False  # ``text`` already says the browser's side too
    fix: str | None = None
    fix_code: str | None = None  # what "Copy fix" copies
    fix_verified: bool = False  # replayed through the real layer with the change: the exchange passes
    credentialed_fix: str | None = None  # the fix for a request with credentials (`if_credentialed`)
    reason: str | None = None  # `server_reason`: the refusal in the layer's vocabulary
    details: tuple[str, ...] = ()  # `server_details`: near-misses


class Ask(NamedTuple):
    """One leg as the browser asked it: the actual request it is (or prepares), decoded once."""

    origin: str
    method: str  # the actual request's method (Access-Control-Request-Method on a preflight)
    url: str  # unredacted: a replay never leaves the process
    path: str
    preflight: bool
    headers: tuple[str, ...]  # lower-cased names the browser preflights
    private_network: bool
    status: int | None
    response: dict[str, str]  # lower-cased response header names -> value (repeated lines joined)
    redirected: bool  # the leg follows a redirect (replays start at the first URL, which this leg does not hold)


def ask_of(facts: LegFacts, texts: Texts, verdict: Verdict) -> Ask:
    response: dict[str, str] = {}
    for name, value in texts.response:
        key = name.lower()
        response[key] = f"{response[key]}, {value}" if key in response else value
    if facts.preflight:
        method = verdict.requested_method or ""
        headers = tuple(h.strip().lower() for h in verdict.requested_headers if h.strip())
    else:
        method = facts.method
        headers = tuple(cors_unsafe_request_header_names(texts.request))
    private = any(name.lower() == _PRIVATE_NETWORK for name, _ in texts.request)
    return Ask(facts.origin, method, facts.target.url(), facts.path, facts.preflight, headers, private, facts.status,
               response, facts.hop is not None)  # fmt: skip


class Layer(abc.ABC):
    """One app's CORS layer (or the lack of one), as corstrace can read it."""

    #: The event's ``layer`` when this layer answered; None when nothing is known of it.
    name: str | None = None
    #: The framework, for messages ("Litestar", "Django").
    framework: str = ""

    @abc.abstractmethod
    def lint(self) -> list[Finding]:
        """Configuration problems worth one warning at startup (none for a configuration that works)."""

    @abc.abstractmethod
    def explain(self, ask: Ask, verdict: Verdict) -> Cause | None:
        """The server-side cause of ``verdict``: the setting that refused and the fix, in the framework's terms."""


# --- Shared wording -------------------------------------------------------------------------------


def browser_side(verdict: Verdict) -> str:
    """The engine's explanation without its guess at who refused a 400 preflight: this layer is known."""
    return verdict.explanation.replace(" " + REFUSAL_HINT, "")


def lead(text: str, verdict: Verdict) -> str:
    """``text`` (the server-side cause) followed by the browser's mechanics."""
    return f"{text} {browser_side(verdict)}"


def unverified(code: str, why: str) -> str:
    return f"{code} Not verified: {why}."


def py(value: Any) -> str:
    """A configuration value as Python source, as the user would write it (strings in double quotes)."""
    if isinstance(value, re.Pattern):
        return f"re.compile({py(value.pattern)})"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
        inner = ", ".join(py(item) for item in items)
        if isinstance(value, tuple):
            return f"({inner},)" if len(items) == 1 else f"({inner})"
        return f"[{inner}]"
    if isinstance(value, bytes):
        return py(value.decode("latin-1"))
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def call(name: str, options: Iterable[tuple[str, Any]], first: Sequence[str] = ()) -> str:
    """``name(first..., option=value, ...)``."""
    return f"{name}(" + ", ".join([*first, *(f"{key}={py(value)}" for key, value in options)]) + ")"


def closest(origin: str, configured: Iterable[Any], setting: str) -> list[str]:
    """The near-miss of ``origin`` among the configured origins, as one detail (none when nothing is close)."""
    for candidate in configured:
        text = candidate.decode("latin-1") if isinstance(candidate, bytes) else candidate
        if not isinstance(text, str):
            continue
        miss = near_miss(origin, text)
        if miss:
            return [f"closest origin in {setting}, {text!r}, differs: {miss}"]
    return []


def with_origin(configured: Iterable[Any], origin: str) -> list[str]:
    """The configured origins with ``origin`` added; another spelling of the same origin (a trailing slash,
    upper case, the default port) is replaced, not kept."""
    kept = [str(o) for o in configured if isinstance(o, str) and o != "*" and _spelling(o) != origin]
    return list(dict.fromkeys([*kept, origin]))


def _spelling(configured: str) -> str:
    """The origin a configured entry means: lower case, no path, no default port."""
    try:
        parts = urlsplit(configured.strip())
        port = parts.port
    except ValueError:
        return configured
    if not parts.scheme or not parts.hostname:
        return configured
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    default = default_port(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def added(current: Iterable[Any], new: Iterable[str], *, fold: bool) -> list[str]:
    """``current`` with ``new`` appended (each once; compared case-insensitively when ``fold``)."""
    items = [str(item) for item in current]
    seen = {item.lower() if fold else item for item in items}
    for item in new:
        key = item.lower() if fold else item
        if key not in seen:
            seen.add(key)
            items.append(item)
    return items


def names(items: Sequence[str]) -> str:
    return ", ".join(f"'{item}'" for item in items)


def needs_credentials(verdict: Verdict) -> tuple[bool, bool]:
    """(the leg fails for credentials, the leg would fail for them if the page sends credentials)."""
    outcome = verdict.if_credentialed
    now = verdict.verdict == "blocked" and (verdict.reason or "") in CREDENTIAL_REASONS | WILDCARD_REASONS
    later = (
        outcome is not None
        and outcome.verdict == "blocked"
        and (outcome.reason or "") in (CREDENTIAL_REASONS | WILDCARD_REASONS)
    )
    return now, later

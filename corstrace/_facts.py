"""Everything a leg's event is made of, as one hashable value, and the engine's verdict on it.

:class:`LegFacts` is the single input of :func:`corstrace._event.leg_event`: an event remembered by its facts
is complete by construction, because the builder has nothing else to read. A new event field means a new
fact here (read from the leg by :func:`facts_of`), and with it a new part of the cache key.
"""

from __future__ import annotations

from typing import NamedTuple

from corstrace._config import Stack
from corstrace._crash import Crash
from corstrace._exchange import Hop
from corstrace._leg import Leg, Pair, Target, TextHeaders, decoded
from corstrace._limits import URL_LIMIT, truncate
from corstrace._redact import redact_url
from corstrace.engine import Request, Response, Verdict, evaluate


class LegFacts(NamedTuple):
    method: str
    origin: str
    target: Target
    path: str  # root_path + path, decoded
    request_headers: tuple[Pair, ...]
    status: int | None  # None: no response started (an exception escaped, or the client left)
    response_headers: tuple[Pair, ...]
    preflight: bool
    outcome: str
    crash: Crash | None
    healed: bool
    hop: Hop | None  # the redirect this leg follows
    client: str | None
    stack: Stack | None  # the app's CORS setup, as found (None: not found yet)
    # For an actual request no preflight came before: the cached preflight the browser reused, as
    # (its exchange id, the seconds Chromium caches it), when one was seen.
    cached_preflight: tuple[str, int] | None = None


def facts_of(leg: Leg, hop: Hop | None, crash: Crash | None, stack: Stack | None) -> LegFacts:
    """The facts of ``leg`` (which alone reads the scope), with what the pipeline learnt about it."""
    if hop is not None:
        # Only what the event shows of the hop; its timestamp would make every hop's facts unique.
        hop = hop._replace(exchange_id=0, at=0.0)
    return LegFacts(
        leg.method,
        leg.origin(),
        leg.target(),
        leg.path(),
        leg.request_pairs(),
        leg.status,
        leg.response_pairs(),
        leg.is_preflight(),
        leg.outcome,
        crash,
        leg.healed,
        hop,
        leg.client(),
        stack,
    )


class Texts(NamedTuple):
    """The facts' headers and URL, decoded once for everything built from them."""

    url: str  # redacted
    request: TextHeaders
    response: TextHeaders


def texts_of(facts: LegFacts) -> Texts:
    url = truncate(redact_url(facts.target.url()), URL_LIMIT)
    return Texts(url, decoded(facts.request_headers), decoded(facts.response_headers))


def judge(facts: LegFacts, texts: Texts) -> Verdict:
    """The engine's verdict on the leg: the one place corstrace turns a leg into the engine's input."""
    response = Response(facts.status, texts.response) if facts.status is not None else None
    hop = facts.hop
    # After a redirect Chromium names the chain's first URL ("redirected from") and the page's origin, even when
    # the hop itself says `Origin: null`.
    first_url = hop.first_url if hop is not None else None
    page_origin = hop.origin if hop is not None else None
    request = Request(
        facts.method, texts.url, texts.request, preflight=facts.preflight, redirected_from=first_url,
        page_origin=page_origin,
    )  # fmt: skip
    return evaluate(request, response)

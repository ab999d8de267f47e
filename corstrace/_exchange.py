"""Linking request legs into exchanges: a preflight and the actual request that follows it, and redirect hops.

The browser sends the actual request right after a successful preflight (same origin, URL and method), and
follows a redirect with a request to the ``Location``. Both are matched here within a short window;
everything is bounded, so a flood of unmatched legs cannot grow memory.

Exchange ids are plain integers while a leg is recorded (most are never shown); :meth:`Tracker.id_text`
turns one into its public form when an event is built.
"""

from __future__ import annotations

import itertools
import os
from typing import Any, NamedTuple, TypeVar

from corstrace._leg import LinkKey, Target, link_url
from corstrace._limits import ORIGIN_LIMIT

# The browser sends the actual request within milliseconds of the preflight's answer; a generous window still
# tolerates a paused debugger.
LINK_WINDOW = 10.0
MAX_PENDING = 1024
SWEEP_EVERY = 1.0


class Waiting:
    """A passed preflight whose actual request has not arrived yet, under its :data:`LinkKey`.

    Made by :func:`_waiting` without a constructor call: one is made per preflight, and calling a class (or a
    NamedTuple's) runs Python code in a frame of its own, several times the cost of the rest of the linking.
    """

    __slots__ = ("at", "exchange_id", "key")

    exchange_id: int
    at: float
    key: LinkKey

    @property
    def origin(self) -> str:
        return self.key[0].decode("latin-1")

    @property
    def method(self) -> str:
        return self.key[5]

    def url(self) -> str:
        """The preflighted URL (not redacted)."""
        return link_url(self.key)


def _waiting(exchange_id: int, at: float, key: LinkKey) -> Waiting:
    waiting = _new(Waiting)
    waiting.exchange_id = exchange_id
    waiting.at = at
    waiting.key = key
    return waiting


_new = object.__new__


class Hop(NamedTuple):
    """An allowed redirect whose next hop has not arrived yet."""

    exchange_id: int
    at: float
    origin: str  # the page's origin: the next hop may say `Origin: null`
    method: str
    from_url: str  # the URL that answered with the redirect
    first_url: str  # the chain's original URL (what Chromium names in "redirected from")


class Cached(NamedTuple):
    """A passed preflight the browser may reuse instead of sending another (Chromium's preflight cache)."""

    exchange_id: int
    until: float
    seconds: int


class Link(NamedTuple):
    """What an actual request continues: a preflight (``hop`` None) or a redirect ``hop``."""

    exchange_id: int
    hop: Hop | None


_Entry = TypeVar("_Entry", Waiting, Hop)


class Tracker:
    """Assigns exchange ids and links legs; reports passed preflights whose actual request never came.

    Preflights are keyed by their :data:`~corstrace._leg.LinkKey` (raw origin, URL parts, method: nothing
    decoded), redirect hops by the absolute URL of their
    ``Location``. Both tables are plain dicts in arrival order (re-inserted on repeat): the first entry is
    always the oldest, which makes expiry a look at the front.
    """

    __slots__ = ("_cached", "_ids", "_prefix", "_preflights", "_redirects", "next_sweep", "window")

    def __init__(self, window: float = LINK_WINDOW) -> None:
        self.window = window
        self._prefix = os.urandom(3).hex()
        self._ids = itertools.count(1)
        self._preflights: dict[LinkKey, Waiting] = {}
        self._redirects: dict[str, Hop] = {}
        # Passed preflights by (origin, target), for as long as Chromium caches them.
        self._cached: dict[tuple[str, Target], Cached] = {}
        # expired() looks at the oldest entries at most once per SWEEP_EVERY seconds, not on every leg: a caller
        # may skip calling it before then.
        self.next_sweep = 0.0

    # Methods, not properties: called for every leg, and a property is a call the interpreter cannot inline.

    def is_pending(self) -> bool:
        """Whether a preflight or redirect waits for a later leg (or may expire): else nothing can link."""
        return bool(self._preflights or self._redirects)

    def redirects_pending(self) -> bool:
        """Whether a redirect hop waits: only then does an actual request need its URL to be linked."""
        return bool(self._redirects)

    def sizes(self) -> dict[str, int]:
        return {
            "tracker preflights": len(self._preflights),
            "tracker redirects": len(self._redirects),
            "tracker cached preflights": len(self._cached),
        }

    def new_id(self) -> int:
        return next(self._ids)

    def id_text(self, exchange_id: int) -> str:
        """The public form of an exchange id: unique per process, not guessable across restarts."""
        return f"{self._prefix}-{exchange_id}"

    def preflight(self, key: LinkKey, allowed: bool, now: float, exchange_id: int = 0) -> int:
        """A preflight leg (``key`` with the method it asked for; ``exchange_id``: of the redirect it follows, if
        any); an accepted one awaits its actual request."""
        exchange_id = exchange_id or next(self._ids)
        if allowed and len(key[0]) <= ORIGIN_LIMIT:
            _put(self._preflights, key, _waiting(exchange_id, now, key))
        return exchange_id

    def actual(self, key: LinkKey, url: str | None, now: float) -> Link | None:
        """What an actual request continues: a redirect hop (looked up by ``url``), a preflight, or nothing.

        A hop to a 307/308 target may have been preflighted again there: both are consumed, the hop wins.
        """
        waiting = self._preflights.pop(key, None)
        if url is not None:
            hop = self._redirects.pop(url, None)
            if hop is not None and now - hop.at <= self.window:
                return Link(hop.exchange_id, hop)
        if waiting is not None and now - waiting.at <= self.window:
            return Link(waiting.exchange_id, None)
        return None

    def hop_to(self, url: str, now: float) -> Hop | None:
        """The redirect that led to ``url``, left in place (a preflight there comes before the actual request)."""
        hop = self._redirects.get(url)
        return hop if hop is not None and now - hop.at <= self.window else None

    def redirect(
        self, exchange_id: int, origin: str, from_url: str, location: str, method: str, now: float, after: Hop | None
    ) -> None:
        """An allowed redirect from ``from_url`` to ``location`` (absolute): its next hop continues the exchange.

        ``after`` is the hop this redirect itself followed, if any: the chain keeps its first URL and the page's
        origin (later hops may say ``Origin: null``).
        """
        first_url = after.first_url if after is not None else from_url
        page_origin = after.origin if after is not None else origin
        if len(page_origin) <= ORIGIN_LIMIT:  # no browser sends a longer one; a flood must not grow memory
            _put(self._redirects, location, Hop(exchange_id, now, page_origin, method, from_url, first_url))

    def cache(self, origin: str, target: Target, exchange_id: int, seconds: int, now: float) -> None:
        """A passed preflight Chromium caches for ``seconds``: requests to ``target`` may come without one."""
        if len(origin) > ORIGIN_LIMIT:
            return
        self._cached.pop((origin, target), None)
        self._cached[(origin, target)] = Cached(exchange_id, now + seconds, seconds)
        if len(self._cached) > MAX_PENDING:
            del self._cached[next(iter(self._cached))]

    def cached(self, origin: str, target: Target, now: float) -> Cached | None:
        """The preflight cached for ``target``, if the browser may still be reusing it."""
        entry = self._cached.get((origin, target))
        return entry if entry is not None and now < entry.until else None

    def expired(self, now: float) -> list[Waiting]:
        """Passed preflights whose actual request did not arrive within the window (redirect hops just go).

        Checked at most once per :data:`SWEEP_EVERY` seconds: a preflight is reported that much late at most.
        """
        if now < self.next_sweep:
            return []
        self.next_sweep = now + SWEEP_EVERY
        _take_expired(self._redirects, now, self.window)
        return _take_expired(self._preflights, now, self.window)


def _take_expired(table: dict[Any, _Entry], now: float, window: float) -> list[_Entry]:
    """Remove and return the entries more than ``window`` old: the first ones, as the dict is in arrival order."""
    gone: list[_Entry] = []
    while table:
        key = next(iter(table))
        if now - table[key].at <= window:
            break
        gone.append(table.pop(key))
    return gone


def _put(table: dict[Any, _Entry], key: Any, value: _Entry) -> None:
    # Re-inserted at the end, so the dict stays in arrival order.
    table.pop(key, None)
    table[key] = value
    if len(table) > MAX_PENDING:
        del table[next(iter(table))]

"""Linking request legs into exchanges: a preflight and the actual request that follows it, and redirect hops.

The browser sends the actual request right after a successful preflight (same origin, URL and
method), and follows a redirect with a request to the ``Location``. Both are matched here within
a short window; everything is bounded, so a flood of unmatched legs cannot grow memory.

Exchange ids are plain integers while a leg is recorded (most are never shown); :meth:`Tracker.id_text`
turns one into its public form when an event is built.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Hashable
from typing import Any, Final, TypeVar

K = TypeVar("K")

# The browser sends the actual request within milliseconds of the preflight's answer; a generous
# window still tolerates a paused debugger.
LINK_WINDOW = 10.0
MAX_PENDING = 1024
SWEEP_EVERY = 1.0


# A leg waiting for the next one: (exchange id, when, origin, method, target). A plain tuple, not a dataclass:
# one is made per preflight, and building a tuple costs a fifth of calling a generated __init__.
# ``target`` is where the leg went: an absolute URL for redirect hops; for preflights, the caller's target key
# (whatever it passed to preflight()), turned into a URL only if the preflight expires unmatched.
_Pending = tuple[int, float, str, str, Any]
_AT: Final = 1


class Tracker:
    """Assigns exchange ids; reports allowed preflights whose actual request never came.

    Preflights are keyed by ``(origin, target, method)``, where ``target`` is any hashable the caller
    derives from the request URL (the middleware uses the raw scope parts: no URL is built per request).
    Redirect hops are keyed by the absolute URL of their ``Location``.
    """

    __slots__ = ("_ids", "_prefix", "_preflights", "_redirects", "_sweep_at", "window")

    def __init__(self, window: float = LINK_WINDOW) -> None:
        self.window = window
        self._prefix = os.urandom(3).hex()
        self._ids = itertools.count(1)
        # Plain dicts in arrival order (re-inserted on repeat): the first entry is always the oldest.
        self._preflights: dict[tuple[str, Hashable, str], _Pending] = {}
        self._redirects: dict[str, _Pending] = {}
        # expired() looks at the oldest entries at most once per SWEEP_EVERY seconds, not on every leg.
        self._sweep_at = 0.0

    @property
    def pending(self) -> bool:
        """Whether a preflight or redirect waits for a later leg (or may expire): else nothing can link."""
        return bool(self._preflights or self._redirects)

    @property
    def redirects_pending(self) -> bool:
        """Whether a redirect hop waits: only then does an actual request need its URL to be linked."""
        return bool(self._redirects)

    def new_id(self) -> int:
        return next(self._ids)

    def id_text(self, exchange_id: int) -> str:
        """The public form of an exchange id: unique per process, not guessable across restarts."""
        return f"{self._prefix}-{exchange_id}"

    def preflight(self, origin: str, target: Hashable, method: str, allowed: bool, now: float) -> int:
        """A preflight leg; when the browser accepted it, the actual request is expected next."""
        exchange_id = next(self._ids)
        if allowed:
            _put(self._preflights, (origin, target, method), (exchange_id, now, origin, method, target))
        return exchange_id

    def actual(self, origin: str, target: Hashable, url: str | None, method: str, now: float) -> tuple[int, str | None]:
        """An actual request leg: ``(exchange id, URL it was redirected from or None)``.

        The continuation of a redirect hop (looked up by ``url``, which may be None when no hop waits),
        of a preflight, or a new exchange.
        """
        if url is not None:
            hop = self._redirects.pop(url, None)
            if hop is not None:
                exchange_id, at, _, _, from_url = hop
                if now - at <= self.window:
                    return exchange_id, from_url
        pending = self._preflights.pop((origin, target, method), None)
        if pending is not None:
            exchange_id, at, _, _, _ = pending
            if now - at <= self.window:
                return exchange_id, None
        return next(self._ids), None

    def redirect(self, exchange_id: int, origin: str, from_url: str, location: str, method: str, now: float) -> None:
        """The actual request was answered with a redirect to ``location`` (absolute URL)."""
        _put(self._redirects, location, (exchange_id, now, origin, method, from_url))

    def expired(self, now: float) -> list[_Pending]:
        """Allowed preflights whose actual request did not arrive within the window (redirect hops just go).

        Checked at most once per :data:`SWEEP_EVERY` seconds: a preflight is reported that much late at most.
        """
        if now < self._sweep_at:
            return []
        self._sweep_at = now + SWEEP_EVERY
        _take_expired(self._redirects, now, self.window)
        return _take_expired(self._preflights, now, self.window)


def _take_expired(table: dict[K, _Pending], now: float, window: float) -> list[_Pending]:
    """Remove and return the entries more than ``window`` old: the first ones, as the dict is in arrival order."""
    gone: list[_Pending] = []
    while table:
        key = next(iter(table))
        if now - table[key][_AT] <= window:
            break
        gone.append(table.pop(key))
    return gone


def _put(table: dict[K, _Pending], key: K, value: _Pending) -> None:
    # Re-inserted at the end, so the dict stays in arrival order.
    table.pop(key, None)
    table[key] = value
    if len(table) > MAX_PENDING:
        del table[next(iter(table))]

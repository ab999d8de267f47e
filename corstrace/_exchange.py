"""Linking request legs into exchanges: a preflight and the actual request that follows it, and redirect hops.

The browser sends the actual request right after a successful preflight (same origin, URL and
method), and follows a redirect with a request to the ``Location``. Both are matched here within
a short window; everything is bounded, so a flood of unmatched legs cannot grow memory.
"""

from __future__ import annotations

import itertools
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import TypeVar

K = TypeVar("K")

# The browser sends the actual request within milliseconds of the preflight's answer; a generous
# window still tolerates a paused debugger.
LINK_WINDOW = 10.0
MAX_PENDING = 1024


@dataclass(slots=True)
class _Pending:
    exchange_id: str
    at: float
    origin: str
    method: str
    url: str


@dataclass(frozen=True, slots=True)
class Link:
    exchange_id: str
    # The URL this leg was redirected from, when it is a redirect hop.
    redirected_from: str | None = None
    # True when this actual request follows a preflight seen earlier.
    after_preflight: bool = False


class Tracker:
    """Assigns exchange ids; reports allowed preflights whose actual request never came."""

    __slots__ = ("_ids", "_prefix", "_preflights", "_redirects", "window")

    def __init__(self, window: float = LINK_WINDOW) -> None:
        self.window = window
        self._prefix = os.urandom(3).hex()
        self._ids = itertools.count(1)
        self._preflights: OrderedDict[tuple[str, str, str], _Pending] = OrderedDict()
        self._redirects: OrderedDict[str, _Pending] = OrderedDict()

    @property
    def pending(self) -> bool:
        """Whether a preflight or redirect waits for a later leg (or may expire): else nothing can link."""
        return bool(self._preflights or self._redirects)

    def new_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    def preflight(self, origin: str, url: str, method: str, allowed: bool, now: float) -> str:
        """A preflight leg; when the browser accepted it, the actual request is expected next."""
        exchange_id = self.new_id()
        if allowed:
            _put(self._preflights, (origin, url, method), _Pending(exchange_id, now, origin, method, url))
        return exchange_id

    def actual(self, origin: str, url: str, method: str, now: float) -> Link:
        """An actual request leg: the continuation of a preflight or redirect, or a new exchange."""
        hop = self._redirects.pop(url, None)
        if hop is not None and now - hop.at <= self.window:
            return Link(hop.exchange_id, redirected_from=hop.url)
        pending = self._preflights.pop((origin, url, method), None)
        if pending is not None and now - pending.at <= self.window:
            return Link(pending.exchange_id, after_preflight=True)
        return Link(self.new_id())

    def redirect(self, exchange_id: str, origin: str, from_url: str, location: str, method: str, now: float) -> None:
        """The actual request was answered with a redirect to ``location`` (absolute URL)."""
        _put(self._redirects, location, _Pending(exchange_id, now, origin, method, from_url))

    def expired(self, now: float) -> list[_Pending]:
        """Allowed preflights whose actual request did not arrive within the window."""
        gone: list[_Pending] = []
        while self._preflights:
            key, oldest = next(iter(self._preflights.items()))
            if now - oldest.at <= self.window:
                break
            del self._preflights[key]
            gone.append(oldest)
        while self._redirects:
            location, hop = next(iter(self._redirects.items()))
            if now - hop.at <= self.window:
                break
            del self._redirects[location]
        return gone


def _put(table: OrderedDict[K, _Pending], key: K, value: _Pending) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > MAX_PENDING:
        table.popitem(last=False)

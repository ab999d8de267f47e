"""Remembered decisions: the verdict, reason and requested method of a leg, without re-running the engine.

A frontend repeats a handful of exchanges; the engine's answer depends only on what
:data:`corstrace.engine.DECISIVE_REQUEST_HEADERS` and :data:`~corstrace.engine.DECISIVE_RESPONSE_HEADERS`
name, the method, the status and the request URL's origin. The cache key is derived from those two exported
constants when the cache is made, so a rule the engine learns to read is part of the key by construction
(tests/test_decision.py varies request and response headers against ``evaluate()``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from corstrace import engine
from corstrace._leg import Leg

# Distinct combinations remembered; a frontend produces a handful, a scanner many.
MAX_DECISIONS = 512
MAX_KEY_BYTES = 4096


class Decision(NamedTuple):
    verdict: str  # "allowed" or "blocked"
    reason: str | None
    requested_method: str | None  # Access-Control-Request-Method on a preflight


def request_key_names() -> frozenset[bytes]:
    """Request header names (bytes, lower-case) the key holds: the engine's, plus Host (the URL's origin)."""
    return frozenset(name.encode("latin-1") for name in engine.DECISIVE_REQUEST_HEADERS) | {b"host"}


def response_key_bytes() -> frozenset[int]:
    """First bytes of the response header names the key holds, in either case.

    Response header names come from the app in any spelling. Keeping every name whose first byte is that of a
    decisive one is one cheap test per header, and covers every spelling; the few others it keeps (Age, Allow,
    Last-Modified...) make the key finer than needed, never a stale decision.
    """
    return frozenset(
        byte
        for name in engine.DECISIVE_RESPONSE_HEADERS
        for byte in (name[:1].lower().encode("latin-1") + name[:1].upper().encode("latin-1"))
    )


class Decisions:
    """A bounded map from a leg's key to its :class:`Decision`."""

    __slots__ = ("_decisions", "_first_bytes")

    def __init__(self) -> None:
        self._first_bytes = response_key_bytes()
        self._decisions: dict[tuple[Any, ...], Decision] = {}

    def key(self, leg: Leg) -> tuple[Any, ...] | None:
        """Everything ``evaluate()`` reads to decide this leg (Host is among ``leg.keyed``); None when unsure.

        Unsure: a URL whose origin is not ``scheme://Host`` (``OPTIONS *``, absolute-form targets).
        """
        if not leg.absolute_path():
            return None
        first = self._first_bytes
        response = []
        # A plain loop over the first byte as an int: cheaper than a comprehension (a call of its own in CPython
        # 3.11) and than a slice (an object per header). An empty name has no first byte: keyed whole.
        for pair in leg.response_headers:
            name = pair[0]
            if not name or name[0] in first:
                response.append(pair)
        return (leg.method, leg.scope.get("scheme"), tuple(leg.keyed), leg.status, tuple(response))

    def get(self, key: tuple[Any, ...] | None) -> Decision | None:
        try:
            return self._decisions.get(key)  # type: ignore[arg-type]  # None is never a key: nothing found
        except TypeError:
            # Header pairs given as lists (ASGI allows any two-item iterable) are not hashable: not remembered.
            return None

    def put(self, key: tuple[Any, ...], decision: Decision) -> None:
        # Memory is bounded in bytes, not only in entries: a key holding huge values (a flood of 0.5 MB
        # Origins) is not kept. Checked here, on a miss, never on the path of a remembered decision.
        keyed, response = key[2], key[4]
        if sum([len(value) for _, value in keyed]) + sum([len(value) for _, value in response]) > MAX_KEY_BYTES:
            return
        if len(self._decisions) >= MAX_DECISIONS:
            self._decisions.clear()
        try:
            self._decisions[key] = decision
        except TypeError:
            pass  # list-valued pairs: see get()

    def __len__(self) -> int:
        return len(self._decisions)


def decision_of(verdict: engine.Verdict) -> Decision:
    return Decision(verdict.verdict, verdict.reason, verdict.requested_method)

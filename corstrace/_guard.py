"""corstrace's one promise to the app it observes: a bug in corstrace never fails a request.

Every step corstrace takes on the request path runs under :class:`Guard` (as sentry-python runs its own
code under ``capture_internal_exceptions``): an ``Exception`` raised inside is logged once per kind and
place as ``corstrace.internal_error`` and swallowed; the request carries on. Cancellation and other
``BaseException``\\ s pass through untouched.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, TypeVar

from corstrace._escape import escape_control
from corstrace._limits import truncate
from corstrace._log import logger
from corstrace._redact import redact_text
from corstrace._traceback import format_exception_plain

# Distinct internal errors reported per process; the rest are dropped (a bug hit on every request must not
# flood the log).
MAX_REPORTS = 64


class Guarded(Protocol):
    guard: Guard


_Owner = TypeVar("_Owner", bound=Guarded)
_Arg = TypeVar("_Arg")


def guarded(method: Callable[[_Owner, _Arg], None]) -> Callable[[_Owner, _Arg], None]:
    """Run ``method(self, arg)`` under ``self.guard``: the same promise as ``with guard:``, for the request path.

    A decorator rather than a ``with`` block because it costs one plain Python call per leg, where entering
    and leaving a context manager costs two calls the interpreter cannot inline.
    """

    @functools.wraps(method)
    def call(self: _Owner, arg: _Arg) -> None:
        try:
            method(self, arg)
        except Exception as exc:
            self.guard.report(exc)

    return call


class Guard:
    """``with guard: ...`` — swallow and report any ``Exception`` raised inside."""

    __slots__ = ("_reported",)

    def __init__(self) -> None:
        self._reported: set[tuple[str, str, int | None]] = set()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        if not isinstance(exc, Exception):
            return False
        self.report(exc)
        return True

    def report(self, exc: Exception) -> None:
        """Log ``exc`` once per type and raising line; never raises."""
        try:
            frames = traceback.extract_tb(exc.__traceback__)
            last = frames[-1] if frames else None
            key = (type(exc).__name__, last.filename if last else "", last.lineno if last else None)
            if key in self._reported or len(self._reported) >= MAX_REPORTS:
                return
            self._reported.add(key)
            # A pre-formatted traceback, not exc_info: rich-style renderers would print the frames' local
            # variables, which hold the request's headers (cookies, tokens).
            text = format_exception_plain(exc)
            error = escape_control(redact_text(truncate(f"{type(exc).__name__}: {exc}", 500)))
            logger.error("corstrace.internal_error", error=error, traceback=text)
        except Exception:  # pragma: no cover - the last line of defence
            pass

"""Tracebacks for logs as plain text: no local variables, no secrets, bounded, terminal-safe.

Logging ``exc_info=exc`` hands the live exception to the application's renderer; with ``rich`` installed,
structlog's ConsoleRenderer shows rich tracebacks with ``show_locals=True``, printing every frame's locals,
among them the request's raw ``Authorization`` and ``Cookie`` bytes. A traceback formatted here is text: the
renderer prints it as it is.

- :func:`format_exception_plain` the whole chain (causes, context, notes) as ``traceback`` prints it, without
  locals, the request's secrets scrubbed (corstrace._redact.scrub), cut in the middle past a limit, control
  characters escaped but newlines. It never raises.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence

from corstrace._escape import escape_control
from corstrace._limits import EXCEPTION_TEXT_LIMIT, truncate_middle
from corstrace._redact import scrub

__all__ = ["format_exception_plain"]


def format_exception_plain(
    exc: BaseException, *, secrets: Sequence[str] = (), limit: int = EXCEPTION_TEXT_LIMIT
) -> str:
    """``exc``'s traceback as safe plain text (see the module docstring); ``secrets`` from Redactor.secrets()."""
    try:
        formatted = traceback.TracebackException(type(exc), exc, exc.__traceback__, capture_locals=False)
        text = "".join(formatted.format()).rstrip("\n")
    except Exception:
        # An exception whose formatting fails (a broken __str__ is handled by traceback; a recursion or a
        # MemoryError may not be) still gets a line.
        text = f"{type(exc).__name__}: <the traceback could not be formatted>"
    return escape_control(truncate_middle(scrub(text, secrets), limit), keep_newlines=True)

"""What an exception that escaped the app looks like in an event: type, message, ``file:line`` and frames.

Describing an exception reads source lines, so it is remembered by what the description is made of (see
:func:`crash_key`): a route that keeps failing the same way is described once.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import traceback
from types import TracebackType
from typing import Any, NamedTuple

# Frames a crash description shows (the last ones: where it was raised).
TRACEBACK_FRAMES = 6
MAX_MESSAGE = 500
_MAX_CRASHES = 256
# Where installed packages and the standard library live: their frames are "library" frames.
_LIBRARY_DIRS = tuple(
    {
        os.path.normcase(path)
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (path := sysconfig.get_path(key))
    }
)


class Frame(NamedTuple):
    file: str
    line: int | None
    function: str
    code: str
    library: bool

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "function": self.function, "code": self.code,
                "library": self.library}  # fmt: skip


class Crash(NamedTuple):
    """An exception, described; hashable, so events built from it can be remembered."""

    type: str
    message: str
    where: str | None  # file:line of the raising frame
    traceback: str  # the last frames and the exception line, as Python prints them
    frames: tuple[Frame, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "message": self.message,
            "where": self.where,
            "traceback": self.traceback,
            "frames": [frame.as_dict() for frame in self.frames],
        }


def shown_tracebacks(exc: BaseException | None) -> list[TracebackType]:
    """The traceback entries whose frames a description shows: the last :data:`TRACEBACK_FRAMES`.

    All of them when ``sys.tracebacklimit`` is set (``extract_tb`` then applies it). Only the last ones
    otherwise: looking up the source lines of the whole stack (a dozen framework frames under FastAPI) cost
    hundreds of µs per failed request.
    """
    entries = []
    tb = exc.__traceback__ if exc is not None else None
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    # Not getattr(sys, "tracebacklimit", None): a missing module attribute builds an AttributeError.
    if sys.__dict__.get("tracebacklimit") is None:
        return entries[-TRACEBACK_FRAMES:]
    return entries


def crash_key(exc: BaseException) -> tuple[Any, ...]:
    """What :func:`describe` makes its description from: type, message, and where each frame it shows was.

    A frame is keyed by its code's file, first line and name and by the instruction it was at: the instruction
    fixes the line and the traceback's carets. All are stored values, cheap to read and hash. Not
    ``tb_lineno`` (computed from the line table on every read) nor the code object (re-hashes its bytecode).
    """
    frames = []
    for tb in shown_tracebacks(exc):
        code = tb.tb_frame.f_code
        frames.append((code.co_filename, code.co_firstlineno, code.co_name, tb.tb_lasti))
    # The description shows at most MAX_MESSAGE characters of the message; a longer one is keyed on a bit more.
    return (type(exc), str(exc)[: MAX_MESSAGE + 1], tuple(frames))


def _relative(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:
        return filename
    return filename if relative.startswith("..") else relative


def _is_library(filename: str) -> bool:
    normalized = os.path.normcase(os.path.abspath(filename))
    return "site-packages" in normalized or normalized.startswith(_LIBRARY_DIRS)


def describe(exc: BaseException) -> Crash:
    """Describe ``exc`` (see :class:`Crash`)."""
    shown = shown_tracebacks(exc)
    # extract_tb follows tb_next from the first entry shown to the end of the traceback.
    summary = traceback.extract_tb(shown[0]) if shown else traceback.StackSummary()
    where = f"{_relative(summary[-1].filename)}:{summary[-1].lineno}" if summary else None
    message = str(exc)
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "…"
    kept = summary[-TRACEBACK_FRAMES:]
    text = "".join(traceback.format_list(kept)) + f"{type(exc).__name__}: {message}"
    frames = tuple(
        Frame(_relative(f.filename), f.lineno, f.name, (f.line or "").strip(), _is_library(f.filename)) for f in kept
    )
    return Crash(type(exc).__name__, message, where, text, frames)


class Crashes:
    """Descriptions remembered by :func:`crash_key`; bounded."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: dict[tuple[Any, ...], Crash] = {}

    def describe(self, exc: BaseException) -> Crash:
        key = crash_key(exc)
        known = self._known.get(key)
        if known is None:
            if len(self._known) >= _MAX_CRASHES:
                self._known.clear()
            known = self._known[key] = describe(exc)
        return known

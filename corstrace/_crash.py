"""What an exception that escaped the app looks like in an event: type, message, ``file:line`` and frames.

Describing an exception reads source lines, so it is remembered by what the description is made of (see
:func:`crash_key`): a route that keeps failing the same way is described once.
"""

from __future__ import annotations

import linecache
import os
import sys
import sysconfig
import threading
import traceback
from types import TracebackType
from typing import Any, NamedTuple

# Frames a crash description shows (the last ones: where it was raised).
TRACEBACK_FRAMES = 6
MAX_MESSAGE = 500
_MAX_CRASHES = 256
# Read once: os.getcwd() is a blocking call, and a crash is described inside the event loop.
_CWD = os.getcwd()
_CWD_PREFIX = os.path.join(_CWD, "")
# Files whose source is being read into linecache in a thread (bounded: a flood of odd files stays small).
_WARMING: set[str] = set()
_MAX_WARMED = 4096
_READERS: list[threading.Thread] = []
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

    When ``sys.tracebacklimit`` is set, the first that many, as ``traceback.extract_tb`` keeps. Only the last ones
    otherwise: looking up the source lines of the whole stack (a dozen framework frames under FastAPI) cost
    hundreds of µs per failed request.
    """
    entries = []
    tb = exc.__traceback__ if exc is not None else None
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    # Not getattr(sys, "tracebacklimit", None): a missing module attribute builds an AttributeError.
    limit = sys.__dict__.get("tracebacklimit")
    if limit is None:
        return entries[-TRACEBACK_FRAMES:]
    # As traceback.extract_tb applies it: the first `limit` entries (none for a negative limit).
    return entries[: max(int(limit), 0)]


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
    """``filename`` relative to the working directory when it lies below it (read once: no I/O per crash)."""
    if filename.startswith(_CWD_PREFIX):
        return filename[len(_CWD_PREFIX) :]
    return filename


def _is_library(filename: str) -> bool:
    normalized = os.path.normcase(filename if os.path.isabs(filename) else os.path.join(_CWD, filename))
    return "site-packages" in normalized or normalized.startswith(_LIBRARY_DIRS)


def _cached_line(filename: str, lineno: int | None) -> str | None:
    """The source line if linecache already holds the file: reading it would block the event loop."""
    entry = linecache.cache.get(filename)
    if entry is None or lineno is None or len(entry) < 3:
        return None
    lines = entry[2]
    return lines[lineno - 1].strip() if 0 < lineno <= len(lines) else None


def describe(exc: BaseException) -> Crash:
    """Describe ``exc`` (see :class:`Crash`), reading no file: source lines only from linecache's memory."""
    kept = [
        traceback.FrameSummary(
            tb.tb_frame.f_code.co_filename,
            tb.tb_lineno,
            tb.tb_frame.f_code.co_name,
            lookup_line=False,
            line=_cached_line(tb.tb_frame.f_code.co_filename, tb.tb_lineno) or "",
        )
        for tb in shown_tracebacks(exc)
    ][-TRACEBACK_FRAMES:]
    where = f"{_relative(kept[-1].filename)}:{kept[-1].lineno}" if kept else None
    message = str(exc)
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "…"
    text = "".join(traceback.format_list(kept)) + f"{type(exc).__name__}: {message}"
    frames = tuple(
        Frame(_relative(f.filename), f.lineno, f.name, (f.line or "").strip(), _is_library(f.filename)) for f in kept
    )
    complete = all(frame.code for frame in frames)
    if not complete:
        _warm([f.filename for f in kept])
    return Crash(type(exc).__name__, message, where, text, frames)


def _warm(filenames: list[str]) -> None:
    """Read the source of ``filenames`` into linecache off the event loop, for the next description of a crash."""
    todo = [name for name in dict.fromkeys(filenames) if name not in linecache.cache and name not in _WARMING]
    if not todo or len(_WARMING) > _MAX_WARMED:
        return
    _WARMING.update(todo)
    thread = threading.Thread(target=_read_sources, args=(todo,), name="corstrace-linecache", daemon=True)
    thread.start()
    _READERS[:] = [reader for reader in _READERS if reader.is_alive()] + [thread]


def settle(timeout: float = 5.0) -> None:
    """Wait until the source files being read for crash descriptions are in linecache (for tests and tools)."""
    for reader in list(_READERS):
        reader.join(timeout)


def _read_sources(filenames: list[str]) -> None:
    for name in filenames:
        linecache.updatecache(name)


class Crashes:
    """Descriptions remembered by :func:`crash_key`; bounded."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: dict[tuple[Any, ...], Crash] = {}

    def describe(self, exc: BaseException) -> Crash:
        key = crash_key(exc)
        known = self._known.get(key)
        if known is None:
            known = describe(exc)
            # A description still missing source lines is not kept: the next one may have them.
            if all(frame.code for frame in known.frames):
                if len(self._known) >= _MAX_CRASHES:
                    self._known.clear()
                self._known[key] = known
        return known

"""A tiny colour helper for the CLI: ANSI styles on a terminal, plain text everywhere else."""

from __future__ import annotations

import os
from typing import TextIO

_CODES = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "cyan": "36",
}


def wants_colour(stream: TextIO) -> bool:
    """Whether to colour output to ``stream``: a TTY, no ``NO_COLOR`` (https://no-color.org), not a dumb terminal."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def paint(text: str, *styles: str, enabled: bool) -> str:
    """``text`` wrapped in the ANSI codes for ``styles`` (names from ``_CODES``) when ``enabled``."""
    if not enabled or not styles:
        return text
    codes = ";".join(_CODES[style] for style in styles)
    return f"\x1b[{codes}m{text}\x1b[0m"

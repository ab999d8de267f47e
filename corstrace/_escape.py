"""Terminal-safe text: control characters from traffic are shown, never obeyed.

A percent-decoded path holding ``ESC ] 0 ; … BEL ESC [ 2 J`` retitles and clears the developer's terminal when a
console log prints it raw; a bidi override (U+202E) makes ``exe.txt`` read as ``txt.exe``; a lone surrogate
(from a ``surrogateescape`` decode) makes ``print()`` raise. :func:`escape_control` writes each such code
point as a visible escape (``\\x1b``, ``\\u202e``, ``\\udcff``), the way ``repr()`` would, and leaves
everything else (accents, emoji, backslashes) as it is.

Escaped: C0 controls and DEL, C1 controls, line and paragraph separators (U+2028/2029), bidi controls
(U+061C, U+200E/200F, U+202A–202E, U+2066–2069), invisible format characters (soft hyphen, zero-width
spaces and joiners, word joiner, BOM, tag characters), whitespace other than the space (tab, NBSP, U+3000 …)
and surrogates.

- :func:`escape_control` one string (``keep_newlines=True`` keeps ``\\n`` for multi-line text such as a
  traceback); free when there is nothing to escape (a C-speed ``str.isprintable()`` check).
- :func:`escape_all` every string inside a structure of dicts, lists and tuples (an event), returning the
  same object when nothing needed escaping.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["escape_all", "escape_control"]

_DANGEROUS = (
    "\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff"
    "\ufff9-\ufffb\ud800-\udfff\U000e0000-\U000e007f"
)
# ``[^\S ]`` is every whitespace character but the space: tabs, newlines, NBSP, U+3000 …
_UNSAFE = re.compile(f"[{_DANGEROUS}]|[^\\S ]")
_UNSAFE_BUT_NEWLINE = re.compile(f"(?!\n)(?:[{_DANGEROUS}]|[^\\S ])")


def escape_control(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every terminal-dangerous code point written as a visible escape."""
    if text.isprintable():
        return text
    pattern = _UNSAFE_BUT_NEWLINE if keep_newlines else _UNSAFE
    return pattern.sub(_escaped, text)


def escape_all(value: Any, *, keep_newlines: bool = False) -> Any:
    """``value`` with :func:`escape_control` applied to every string in it (dict values, list and tuple items).

    Dict keys are left alone (they are corstrace's own field names). The same object comes back when
    nothing changed, so a clean event costs no copies.
    """
    if isinstance(value, str):
        return escape_control(value, keep_newlines=keep_newlines)
    if isinstance(value, dict):
        changed = None
        for key, item in value.items():
            shown = escape_all(item, keep_newlines=keep_newlines)
            if shown is not item:
                if changed is None:
                    changed = dict(value)
                changed[key] = shown
        return value if changed is None else changed
    if isinstance(value, (list, tuple)):
        items = [escape_all(item, keep_newlines=keep_newlines) for item in value]
        if all(shown is item for shown, item in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    return value


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"

"""Bounds on what corstrace records from traffic, and the visible marker a cut value carries.

Memory must be bounded in bytes, not in records: one request can carry a 0.5 MB Origin. Every
traffic-derived value is cut to a limit below and ends with ``…[truncated N bytes]`` (N counts the UTF-8
bytes cut), so a reader knows it is incomplete.

- :func:`truncate` keeps the start (header values, origins, URLs); :func:`truncate_middle` keeps both ends
  (a traceback: the frames at the top, the exception line at the bottom).
- Both are idempotent and their result is never longer than ``limit`` characters (for any limit of at
  least :data:`MIN_LIMIT`), so a value cut twice by two layers is cut once.
- :func:`truncation_marker` is the marker alone, for code that cuts, transforms the kept part (redaction),
  then appends it.

Redact before cutting text (a secret cut in half is no longer recognisable, see corstrace._redact), or cut
the way ``Redactor.headers(value_limit=)`` does: redact the part kept, and cut a token straddling the limit
whole, then append the marker.
"""

from __future__ import annotations

__all__ = [
    "EXCEPTION_TEXT_LIMIT",
    "HEADER_NAME_LIMIT",
    "HEADER_VALUE_LIMIT",
    "MAX_HEADERS",
    "MIN_LIMIT",
    "ORIGIN_LIMIT",
    "URL_LIMIT",
    "truncate",
    "truncate_middle",
    "truncation_marker",
]

HEADER_VALUE_LIMIT = 2048
# A real header name is a few dozen characters; a longer one is an attack or a bug.
HEADER_NAME_LIMIT = 256
# A valid origin is at most scheme + 253-character host + port (~270 characters).
ORIGIN_LIMIT = 512
URL_LIMIT = 4096
EXCEPTION_TEXT_LIMIT = 8192
# Headers kept per request or response; browsers send about 20.
MAX_HEADERS = 64
# The longest marker ("…[truncated 18446744073709551615 bytes]") fits in this, with room for some text.
MIN_LIMIT = 64


def truncation_marker(cut: str) -> str:
    """The marker that replaces ``cut``: ``…[truncated N bytes]``, N the UTF-8 size of ``cut``."""
    size = len(cut) if cut.isascii() else len(cut.encode("utf-8", "surrogatepass"))
    return f"…[truncated {size} bytes]"


def truncate(value: str, limit: int) -> str:
    """``value`` if it has at most ``limit`` characters, else its start and a marker, ``limit`` at most in all."""
    if len(value) <= limit:
        return value
    keep = _kept(value, limit)
    return value[:keep] + truncation_marker(value[keep:])


def truncate_middle(value: str, limit: int) -> str:
    """Like :func:`truncate`, but the marker sits in the middle: both the start and the end are kept."""
    if len(value) <= limit:
        return value
    keep = _kept(value, limit)
    head = keep - keep // 2
    tail = keep // 2
    return value[:head] + truncation_marker(value[head : len(value) - tail]) + value[len(value) - tail :]


def _kept(value: str, limit: int) -> int:
    """How many characters of ``value`` fit beside the marker. The marker for all of ``value`` is the longest
    any cut of it can have, so the result is at most ``limit`` long."""
    longest = len(f"…[truncated {len(value) * 4} bytes]")
    return max(0, limit - longest)

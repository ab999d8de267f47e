"""What corstrace records from traffic is bounded in bytes, and a cut value says so (issue 13 item 4)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from corstrace._limits import MIN_LIMIT, truncate, truncate_middle, truncation_marker


def test_a_value_within_the_limit_is_the_same_object() -> None:
    value = "http://localhost:5173"
    assert truncate(value, 512) is value and truncate_middle(value, 512) is value


def test_a_long_value_keeps_its_start_and_says_how_much_was_cut() -> None:
    shown = truncate("a" * 10_000, 2048)
    kept, marker = shown.split("…")
    assert len(shown) <= 2048 and set(kept) == {"a"} and marker == f"[truncated {10_000 - len(kept)} bytes]"


def test_the_marker_counts_utf8_bytes() -> None:
    """Memory is bounded in bytes; 'é' is two of them."""
    assert truncation_marker("éé") == "…[truncated 4 bytes]"
    assert truncation_marker("\udcff") == "…[truncated 3 bytes]"


def test_truncate_middle_keeps_both_ends() -> None:
    """A traceback's frames are at the top and its exception line at the bottom."""
    shown = truncate_middle("HEAD" + "x" * 10_000 + "TAIL", 200)
    assert shown.startswith("HEAD") and shown.endswith("TAIL") and "…[truncated " in shown and len(shown) <= 200


@given(st.text(), st.integers(min_value=MIN_LIMIT, max_value=5000))
def test_a_cut_value_never_exceeds_the_limit_and_cutting_again_changes_nothing(value: str, limit: int) -> None:
    """Two layers cutting the same value (the event, then the inspector's frame) cut it once."""
    for cut in (truncate, truncate_middle):
        once = cut(value, limit)
        assert len(once) <= limit and cut(once, limit) == once

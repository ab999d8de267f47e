"""placeholder"""

from __future__ import annotations

from typing import Any

from corstrace._layers.base import Layer


def detect(node: Any) -> Layer | None:
    return None

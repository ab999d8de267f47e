"""The live inspector: a ring buffer of exchanges fanned out over WebSocket to a local page.

Private: the middleware builds a :class:`~corstrace._inspector.hub.Hub` and an
:class:`~corstrace._inspector.server.Inspector` and routes the inspector's path prefix to it.
"""

from __future__ import annotations

from corstrace._inspector.hub import Hub, Subscription
from corstrace._inspector.server import Inspector
from corstrace._inspector.token import current_token, current_token_async, inspector_enabled, load_token

__all__ = [
    "Hub",
    "Inspector",
    "Subscription",
    "current_token",
    "current_token_async",
    "inspector_enabled",
    "load_token",
]

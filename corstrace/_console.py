"""``ConsoleView``: corstrace's events as a developer reads them in a terminal.

A structlog processor. A ``cors.blocked`` event becomes a headline (what happened) and three lines — the
browser's console message, why, and the fix — instead of 30 keys in alphabetical order; headers and the other
bulky fields stay in the event for JSON logs and the inspector. Put it before the renderer::

    structlog.configure(processors=[..., corstrace.ConsoleView(), structlog.dev.ConsoleRenderer()])

When the application has not configured structlog at all, corstrace renders its own events this way on its
own (structlog's defaults plus this view): a plain ``uvicorn app:app`` prints readable lines. It never calls
``structlog.configure()``.
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from corstrace import _term

_LEG_EVENTS = frozenset({"cors.blocked", "cors.allowed", "cors.websocket"})
_DETAILS = (("browser_message", "browser"), ("explanation", "why"), ("fix", "fix"))
_KEPT = ("timestamp", "level", "log_level", "logger")


class ConsoleView:
    """A structlog processor that turns corstrace's events into a few readable lines (other events pass through).

    Args:
        colors: Colour the verdict (ANSI). ``None``: when standard output is a terminal and ``NO_COLOR`` is unset.
        drop_inspector_url: Drop the ``corstrace.inspector`` startup event (an app that prints the URL itself).
    """

    def __init__(self, *, colors: bool | None = None, drop_inspector_url: bool = False) -> None:
        self.colors = _term.wants_colour(sys.stdout) if colors is None else colors
        self.drop_inspector_url = drop_inspector_url

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event = event_dict.get("event")
        if event == "corstrace.inspector":
            if self.drop_inspector_url:
                raise structlog.DropEvent
            return self._kept(event_dict, f"corstrace inspector: {event_dict.get('url') or event_dict.get('message')}")
        if event in _LEG_EVENTS and "verdict" in event_dict:
            return self._kept(event_dict, self._leg(event_dict))
        if event == "cors.lint":
            fix = f"\n    fix:     {event_dict['fix']}" if event_dict.get("fix") else ""
            return self._kept(event_dict, f"cors.lint {event_dict.get('code')}: {event_dict.get('message')}{fix}")
        return event_dict

    def _leg(self, event: MutableMapping[str, Any]) -> str:
        blocked = event.get("verdict") == "blocked"
        name = _term.paint(str(event.get("event")), "bold", "red" if blocked else "green", enabled=self.colors)
        kind = "preflight " if event.get("preflight") else ""
        headline = f"{name} {kind}{event.get('method', '?')} {event.get('path', '?')} -> {event.get('status')}"
        headline += f" from {event.get('origin')}"
        if event.get("reason"):
            headline += f" ({event['reason']})"
        repeats = event.get("repeats_suppressed")
        if repeats:
            headline += f"; {repeats} identical leg(s) before this one not shown"
        credentialed = event.get("if_credentialed")
        if not blocked and isinstance(credentialed, dict) and credentialed.get("verdict") == "blocked":
            headline += f"; blocked if sent with credentials ({credentialed.get('reason')})"
        lines = [headline]
        if event.get("exception_type"):
            where = f" at {event['exception_where']}" if event.get("exception_where") else ""
            lines.append(f"    crash:   {event['exception_type']}: {event.get('exception_message')}{where}")
        if blocked or event.get("websocket") and event.get("warnings"):
            for key, label in _DETAILS:
                if event.get(key):
                    lines.append(f"    {label + ':':<8} {event[key]}")
        return "\n".join(lines)

    @staticmethod
    def _kept(event_dict: MutableMapping[str, Any], text: str) -> MutableMapping[str, Any]:
        view: MutableMapping[str, Any] = {key: event_dict[key] for key in _KEPT if key in event_dict}
        view["event"] = text
        return view

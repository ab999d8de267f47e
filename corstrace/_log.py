"""The structlog sink: the events corstrace logs, and the flood control in front of them.

The events are a public contract (documented in the README): logger ``corstrace``, one event per
request leg — ``cors.blocked`` at warning, ``cors.allowed`` at debug — plus ``cors.lint`` at
warning, ``cors.websocket``, ``cors.aborted`` and ``cors.exchange``. corstrace never configures
structlog: events render through whatever the application set up.

A sink receives finished events and never changes them: the name of a leg's event comes from its own
``verdict``, and the log's rendering of ``exception`` (traceback text, as structlog's renderers expect) is
made here, on a copy.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

# The application's structlog configuration, whatever it is (debug_enabled() reads what it would drop).
_configured = structlog.get_logger("corstrace")


class _Logger:
    """corstrace's logger: the application's structlog configuration; when the app configured none at all,
    structlog's defaults with :class:`~corstrace._console.ConsoleView` before the renderer, so a plain app prints
    readable lines. Never configures structlog itself."""

    __slots__ = ("_readable",)

    def __init__(self) -> None:
        self._readable: Any = None

    def _target(self) -> Any:
        if structlog.is_configured():
            return _configured
        if self._readable is None:
            from corstrace._console import ConsoleView

            processors = list(structlog.get_config()["processors"])
            processors.insert(max(len(processors) - 1, 0), ConsoleView())
            self._readable = structlog.wrap_logger(None, processors=processors)
        return self._readable

    def debug(self, event: str, **fields: Any) -> None:
        self._target().debug(event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._target().info(event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._target().warning(event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._target().error(event, **fields)


logger = _Logger()

# structlog's filtering wrapper classes (``make_filtering_bound_logger(level)`` returns one cached class per
# level) mapped to the lowest level they let through. Only these classes are *known* to drop an event
# before any processor runs; for any other wrapper class an event might be consumed, so it is built.
_FILTERING_CLASSES: dict[type[Any], int] = {
    structlog.make_filtering_bound_logger(level): level
    for level in (logging.NOTSET, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
}

# A scanner sending random Origins, or a broken frontend in a loop, must not flood the logs: the first
# LOG_FIRST blocked legs per (origin, method, path, reason) and window are logged (a developer clicking the same
# broken button twice sees both), later repeats within the window are counted and reported on the next logged
# one, and at most MAX_ORIGINS_PER_TARGET distinct origins are logged per (method, path, reason) per window.
AGGREGATE_WINDOW = 60.0
LOG_FIRST = 3
_KEY_PART_LIMIT = 512
MAX_KEYS = 2048
MAX_ORIGINS_PER_TARGET = 5


@dataclass(slots=True)
class _Window:
    started: float
    logged: int = 1
    suppressed: int = 0
    origins: int = 1
    # Distinct origins suppressed for this target (a scanner), counted separately.
    other_origins: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Admission:
    log: bool
    # Identical legs suppressed since this key was last logged (reported on the next logged one).
    suppressed: int = 0
    # Blocked legs from other origins suppressed for the same method, path and reason.
    other_origins: int = 0


# Admissions are immutable: the flood's common answers are shared rather than built per blocked leg.
_SUPPRESSED = Admission(False)
_LOGGED = Admission(True)


class Aggregator:
    """Decides which blocked legs are logged; memory is bounded by MAX_KEYS whatever the traffic."""

    __slots__ = ("_keys", "_targets", "window")

    def __init__(self, window: float = AGGREGATE_WINDOW) -> None:
        self.window = window
        self._keys: OrderedDict[tuple[bytes, str, str, str], _Window] = OrderedDict()
        self._targets: OrderedDict[tuple[str, str, str], _Window] = OrderedDict()

    def admit(self, origin: bytes, method: str, path: str, reason: str, now: float) -> Admission:
        """Whether to log a blocked leg; ``origin`` as received (decoded only for the shutdown summary)."""
        if len(origin) > _KEY_PART_LIMIT or len(path) > _KEY_PART_LIMIT:
            # Memory is bounded in bytes: a flood of huge values is counted under their bounded prefixes.
            origin, path = origin[:_KEY_PART_LIMIT], path[:_KEY_PART_LIMIT]
        key = (origin, method, path, reason)
        seen = self._keys.get(key)
        if seen is not None and now - seen.started < self.window:
            self._keys.move_to_end(key)
            if seen.logged < LOG_FIRST:
                seen.logged += 1
                return _LOGGED
            seen.suppressed += 1
            return _SUPPRESSED
        target_key = (method, path, reason)
        target = self._targets.get(target_key)
        if target is None or now - target.started >= self.window:
            other = target.other_origins if target is not None else 0
            self._targets[target_key] = _Window(now)
            _trim(self._targets)
        elif target.origins >= MAX_ORIGINS_PER_TARGET and seen is None:
            target.other_origins += 1
            self._targets.move_to_end(target_key)
            return _SUPPRESSED
        else:
            target.origins += 1
            other = 0
        self._keys[key] = _Window(now)
        self._keys.move_to_end(key)
        _trim(self._keys)
        return Admission(True, seen.suppressed if seen is not None else 0, other)

    def sizes(self) -> dict[str, int]:
        return {"aggregator keys": len(self._keys), "aggregator targets": len(self._targets)}

    def pending(self) -> list[dict[str, Any]]:
        """Suppressed counts not yet reported (flushed as a summary at shutdown)."""
        summaries = [
            {"origin": k[0].decode("latin-1"), "method": k[1], "path": k[2], "reason": k[3], "suppressed": w.suppressed}
            for k, w in self._keys.items()
            if w.suppressed
        ]
        summaries += [
            {"method": k[0], "path": k[1], "reason": k[2], "suppressed_other_origins": w.other_origins}
            for k, w in self._targets.items()
            if w.other_origins
        ]
        return summaries


def _trim(table: OrderedDict[Any, _Window]) -> None:
    while len(table) > MAX_KEYS:
        table.popitem(last=False)


def debug_enabled() -> bool:
    """False only when a ``debug`` event through :data:`logger` is certain to be dropped unseen.

    Building a ``cors.allowed`` event costs far more than serving the request; in production structlog drops
    it anyway. Decided from the wrapper class that will handle the call, looked up on every call (no cache to
    invalidate): ``structlog.configure()`` and ``structlog.testing.capture_logs()`` take effect at once.
    """
    # With cache_logger_on_first_use, the proxy replaced its ``bind`` by one returning the cached logger.
    bind = _configured.__dict__.get("bind")
    wrapper: Any = type(bind()) if bind is not None else structlog.get_config()["wrapper_class"]
    min_level = _FILTERING_CLASSES.get(wrapper)
    return min_level is None or min_level <= logging.DEBUG


def emit(event: str, level: str, fields: dict[str, Any]) -> None:
    """Log one event through the application's structlog configuration."""
    getattr(logger, level)(event, **fields)


def leg_fields(event: Mapping[str, Any], admission: Admission | None) -> dict[str, Any]:
    """The structlog fields of a leg's event: a copy, with ``exception`` as the traceback text renderers expect.

    The parts stay greppable as separate keys; the frames are the inspector's (too bulky for a log line).
    """
    fields = dict(event)
    crash = event.get("exception")
    if crash is not None:
        fields["exception"] = crash["traceback"]
        fields["exception_type"] = crash["type"]
        fields["exception_message"] = crash["message"]
        fields["exception_where"] = crash["where"]
    if admission is not None:
        if admission.suppressed:
            fields["repeats_suppressed"] = admission.suppressed
        if admission.other_origins:
            fields["other_origins_suppressed"] = admission.other_origins
    return fields


def log_leg(event: Mapping[str, Any], admission: Admission | None) -> None:
    """Log one leg's finished event: ``cors.blocked`` at warning or ``cors.allowed`` at debug, by its verdict."""
    if event["verdict"] == "blocked":
        logger.warning("cors.blocked", **leg_fields(event, admission))
    else:
        logger.debug("cors.allowed", **leg_fields(event, admission))

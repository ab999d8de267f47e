"""Quart with quart-cors: ``app = cors(app, allow_origin=..., ...)``, read from the app's ``after_request`` hooks.

quart-cors adds its headers after the route answered (Quart's own ``OPTIONS`` answer for a preflight): every
header for an allowed origin (exact string, or ``re.match`` of a compiled pattern, or ``*``), none for another.
It sends ``Access-Control-Allow-Methods`` only when the requested method is in ``allow_methods``
(case-insensitive), and of the requested headers only those in ``allow_headers``: the browser refuses the
rest. Options left out fall back to ``app.config["QUART_CORS_*"]``, then quart-cors' defaults. Fixes are written
as the ``cors(app, ...)`` call; they are not replayed (quart-cors needs a running Quart request context).
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from corstrace._config import Finding
from corstrace._layers.base import (
    Ask,
    Cause,
    Layer,
    added,
    call,
    closest,
    lead,
    names,
    needs_credentials,
    py,
    unverified,
    with_origin,
)
from corstrace.engine import Verdict

_OPTIONS = ("allow_origin", "allow_methods", "allow_headers", "allow_credentials", "expose_headers", "max_age",
            "send_origin_wildcard")  # fmt: skip
_NOT_VERIFIED = "corstrace cannot replay quart-cors outside a running Quart request"


def detect(node: Any) -> Layer | None:
    if not type(node).__module__.startswith("quart") or not hasattr(node, "after_request_funcs"):
        return None
    for hook in node.after_request_funcs.get(None, ()):
        func = getattr(hook, "func", None)
        if getattr(func, "__module__", None) == "quart_cors" and getattr(func, "__name__", "") == "_after_request":
            return QuartCORS(node, dict(hook.keywords))
    return QuartCORS(node, None)


class QuartCORS(Layer):
    framework = "Quart"

    def __init__(self, app: Any, keywords: dict[str, Any] | None) -> None:
        self.app = app
        self.written = {k: v for k, v in (keywords or {}).items() if v is not None}
        self.name = "quart-cors" if keywords is not None else None
        self.options = self._effective(keywords) if keywords is not None else {}

    def _effective(self, keywords: dict[str, Any]) -> dict[str, Any]:
        defaults = importlib.import_module("quart_cors").DEFAULTS
        options = {}
        for name in _OPTIONS:
            value = keywords.get(name)
            if value is None:
                key = "QUART_CORS_" + name.upper()
                value = self.app.config.get(key, defaults.get(key))
            options[name] = value
        origins = options["allow_origin"]
        options["allow_origin"] = [origins] if isinstance(origins, (str, re.Pattern)) else list(origins or ())
        for name in ("allow_methods", "allow_headers"):
            value = options[name]
            options[name] = [value] if isinstance(value, str) else list(value or ())
        return options

    def lint(self) -> list[Finding]:
        if self.name is None:
            return [Finding(
                "no_cors_layer",
                "This Quart app has no CORS layer (no quart-cors cors(app, ...) hook): nothing adds CORS headers, "
                "so the browser blocks every cross-origin request that needs them.",
                'from quart_cors import cors; app = cors(app, allow_origin="http://localhost:3000")',
            )]  # fmt: skip
        options = self.options
        if "*" in options["allow_origin"] and options["allow_credentials"]:
            return [Finding(
                "wildcard_with_credentials",
                "quart-cors has allow_origin '*' with allow_credentials=True: it raises ValueError('Cannot allow "
                "credentials with wildcard allowed origins') on every cross-origin request, which then answers 500.",
                self.code(allow_origin=["https://your-frontend.example"]),
            )]  # fmt: skip
        return []

    def code(self, **changes: Any) -> str:
        options = {**self.written, **changes}
        return "app = " + call("cors", [(k, options[k]) for k in _OPTIONS if k in options], first=["app"])

    def explain(self, ask: Ask, verdict: Verdict) -> Cause | None:
        if self.name is None:
            if verdict.verdict != "blocked" or "access-control-allow-origin" in ask.response:
                return None
            text = "This Quart app has no CORS layer: no quart-cors cors(app, ...) hook adds CORS headers."
            fix = unverified(f"{self.code(allow_origin=[ask.origin])}  # from quart_cors import cors", _NOT_VERIFIED)
            return Cause(text=lead(text, verdict), replaces=True, fix=fix, reason="no quart-cors")
        parts, details, changes = self._refusals(ask, verdict)
        if not parts:
            return Cause(layer=self.name)
        text = f"quart-cors: {'; '.join(parts)}."
        if details:
            text += " " + "; ".join(details) + "."
        code = self.code(**changes)
        return Cause(layer=self.name, text=lead(text, verdict), replaces=True, fix=unverified(code, _NOT_VERIFIED),
                     fix_code=code, reason="; ".join(parts), details=tuple(details))  # fmt: skip

    def _refusals(self, ask: Ask, verdict: Verdict) -> tuple[list[str], list[str], dict[str, Any]]:
        options = self.options
        parts: list[str] = []
        details: list[str] = []
        changes: dict[str, Any] = {}
        origins = options["allow_origin"]
        if not _origin_allowed(origins, ask.origin):
            parts.append(f"origin '{ask.origin}' is not in allow_origin {py(origins)}")
            details += closest(ask.origin, origins, "allow_origin")
            changes["allow_origin"] = with_origin(origins, ask.origin)
        if ask.preflight:
            methods = options["allow_methods"]
            if "*" not in methods and ask.method.lower() not in {m.lower() for m in methods}:
                parts.append(f"{ask.method} is not in allow_methods {py(methods)}")
                changes["allow_methods"] = added(methods, [ask.method], fold=True)
            allowed = {h.lower() for h in options["allow_headers"]}
            missing = [h for h in ask.headers if "*" not in allowed and h not in allowed]
            if missing:
                noun = "header" if len(missing) == 1 else "headers"
                parts.append(f"request {noun} {names(missing)} not in allow_headers {py(options['allow_headers'])}")
                changes["allow_headers"] = added(options["allow_headers"], missing, fold=True)
        now, _ = needs_credentials(verdict)
        if (now or verdict.credentials == "include") and not options["allow_credentials"]:
            parts.append("allow_credentials is not set, so quart-cors never sends `Access-Control-Allow-Credentials`")
            changes["allow_credentials"] = True
            if "*" in origins:
                changes["allow_origin"] = with_origin(changes.get("allow_origin", ()), ask.origin)
        return parts, details, changes


def _origin_allowed(origins: list[Any], origin: str) -> bool:
    for allowed in origins:
        if allowed == "*" or allowed == origin:
            return True
        if isinstance(allowed, re.Pattern) and allowed.match(origin):
            return True
    return False

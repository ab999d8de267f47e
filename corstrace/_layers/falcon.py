"""Falcon: ``falcon.asgi.App(cors_enable=True)`` or ``middleware=[falcon.CORSMiddleware(...)]``.

Falcon's CORSMiddleware works on every response (errors included): an origin in ``allow_origins`` (exact,
case-sensitive; ``"*"`` for all) gets ``Access-Control-Allow-Origin``, and ``Access-Control-Allow-Credentials``
only when it is also in ``allow_credentials``. A preflight is answered by the route's ``OPTIONS`` responder;
the middleware copies the ``Allow`` header (the methods the resource implements) into
``Access-Control-Allow-Methods`` and mirrors the requested headers, so a refused method means the resource has
no responder for it. Fixes are written as the middleware list; they are not replayed.
"""

from __future__ import annotations

from typing import Any

from corstrace._config import Finding
from corstrace._layers.base import Ask, Cause, Layer, call, closest, lead, needs_credentials, py, unverified
from corstrace.engine import Verdict

_NOT_VERIFIED = "corstrace does not replay Falcon's CORSMiddleware"


def detect(node: Any) -> Layer | None:
    if not type(node).__module__.startswith("falcon") or not hasattr(node, "add_middleware"):
        return None
    found = [m for m in getattr(node, "_unprepared_middleware", ()) if type(m).__name__ == "CORSMiddleware"]
    return FalconCORS(node, found[0] if found else None)


class FalconCORS(Layer):
    framework = "Falcon"

    def __init__(self, app: Any, middleware: Any) -> None:
        self.middleware = middleware
        self.enabled = bool(getattr(app, "_cors_enable", False))
        self.name = "Falcon CORSMiddleware" if middleware is not None else None

    def lint(self) -> list[Finding]:
        if self.middleware is None:
            return [Finding(
                "no_cors_layer",
                "This Falcon app has no CORS layer (neither cors_enable=True nor falcon.CORSMiddleware): nothing "
                "adds CORS headers, so the browser blocks every cross-origin request that needs them.",
                self.code(["http://localhost:3000"], None),
            )]  # fmt: skip
        return []

    def _origins(self) -> list[str]:
        allowed = self.middleware.allow_origins
        return ["*"] if allowed == "*" else sorted(allowed)

    def code(self, origins: list[str], credentials: list[str] | None) -> str:
        options: list[tuple[str, Any]] = [("allow_origins", origins if origins != ["*"] else "*")]
        if credentials:
            options.append(("allow_credentials", credentials))
        expose = getattr(self.middleware, "expose_headers", None) if self.middleware is not None else None
        if expose:
            options.append(("expose_headers", [h.strip() for h in str(expose).split(",")]))
        return f"falcon.asgi.App(middleware=[{call('falcon.CORSMiddleware', options)}])"

    def explain(self, ask: Ask, verdict: Verdict) -> Cause | None:
        if verdict.verdict != "blocked" and verdict.if_credentialed is None:
            return Cause(layer=self.name)
        if self.middleware is None:
            if verdict.verdict != "blocked" or "access-control-allow-origin" in ask.response:
                return None
            text = "This Falcon app has no CORS layer: neither cors_enable=True nor falcon.CORSMiddleware."
            code = self.code([ask.origin], None)
            return Cause(text=lead(text, verdict), replaces=True, fix=unverified(code, _NOT_VERIFIED), fix_code=code,
                         reason="no CORS layer")  # fmt: skip
        parts, details, origins, credentials = self._refusals(ask, verdict)
        if not parts:
            return Cause(layer=self.name)
        text = f"Falcon's CORSMiddleware: {'; '.join(parts)}."
        if details:
            text += " " + "; ".join(details) + "."
        config = self.code(origins, credentials) if origins is not None else None
        if config is not None and self.enabled:
            config += "  # instead of cors_enable=True"
        fix = unverified(config, _NOT_VERIFIED) if config is not None else None
        if ask.preflight and _method_refused(ask):
            route = (f"Add an on_{ask.method.lower()} responder to the resource routed at {ask.path} (Falcon lists "
                     "only the methods a resource implements).")  # fmt: skip
            fix = unverified(route, _NOT_VERIFIED) if fix is None else f"{route} {fix}"
        return Cause(layer=self.name, text=lead(text, verdict), replaces=True, fix=fix, fix_code=config,
                     reason="; ".join(parts), details=tuple(details))  # fmt: skip

    def _refusals(self, ask: Ask, verdict: Verdict) -> tuple[list[str], list[str], list[str] | None, list[str] | None]:
        middleware = self.middleware
        parts: list[str] = []
        details: list[str] = []
        origins: list[str] | None = None
        written = middleware.allow_credentials
        credentials: list[str] | None = ["*"] if written == "*" else sorted(written) or None
        allowed = self._origins()
        if allowed != ["*"] and ask.origin not in allowed:
            parts.append(f"origin '{ask.origin}' is not in allow_origins {py(allowed)}")
            details += closest(ask.origin, allowed, "allow_origins")
            origins = [*allowed, ask.origin]
        if ask.preflight and _method_refused(ask):
            shown = ask.response.get("access-control-allow-methods", "")
            parts.append(f"the resource at {ask.path} implements no {ask.method} responder (its Allow: {shown})")
        now, _ = needs_credentials(verdict)
        if (now or verdict.credentials == "include") and written != "*" and ask.origin not in written:
            parts.append(f"origin '{ask.origin}' is not in allow_credentials {py(credentials or [])}, so no "
                         "`Access-Control-Allow-Credentials: true` is sent")  # fmt: skip
            credentials = [*(credentials or []), ask.origin]
            origins = origins or allowed
        return parts, details, origins, credentials


def _method_refused(ask: Ask) -> bool:
    methods = [m.strip() for m in ask.response.get("access-control-allow-methods", "").split(",")]
    return ask.method not in methods and ask.method not in ("GET", "HEAD", "POST") and "*" not in methods

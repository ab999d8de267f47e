"""Litestar: ``Litestar(cors_config=CORSConfig(...))``, read from the app, explained and fixed as ``CORSConfig``.

Litestar wraps its router in its own CORS middleware when ``cors_config`` is set. That middleware answers
every ``OPTIONS`` with an ``Origin`` itself: 204 with the preflight headers, or 400 ``Disallowed CORS method,
Origin, headers`` with no CORS header at all. It checks methods exactly, headers case-insensitively (the four
safelisted ones always pass), origins by a full match of ``allow_origins`` (``*`` inside an entry is a
wildcard) or ``allow_origin_regex``. Fixes are replayed through a real Litestar CORS middleware built with
the proposed ``CORSConfig``.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any
from urllib.parse import urlsplit

from corstrace import _inprocess
from corstrace._config import Finding
from corstrace._layers import replay
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
from corstrace.engine import Response, Verdict

_ORDER = ("allow_origins", "allow_methods", "allow_headers", "allow_credentials", "allow_origin_regex",
          "expose_headers", "max_age")  # fmt: skip
_SAFELISTED = frozenset({"accept", "accept-language", "content-language", "content-type"})
_EXAMPLE = 'cors_config=CORSConfig(allow_origins=["http://localhost:3000"])'
_MAX_REPLAYS = 64


def detect(node: Any) -> Layer | None:
    if not type(node).__module__.startswith("litestar") or not hasattr(node, "cors_config"):
        return None
    return LitestarCORS(node)


class LitestarCORS(Layer):
    framework = "Litestar"

    def __init__(self, app: Any) -> None:
        self.app = app
        self.config: Any = app.cors_config
        self.name = "Litestar CORSMiddleware (cors_config)" if self.config is not None else None
        self.written = _written(self.config) if self.config is not None else {}
        self._replays: dict[tuple[tuple[str, str], ...], Any] = {}

    # --- startup ---------------------------------------------------------------------------------

    def lint(self) -> list[Finding]:
        config = self.config
        if config is None:
            return [
                Finding(
                    "no_cors_config",
                    "This Litestar app has no cors_config: nothing adds CORS headers, so the browser blocks every "
                    "cross-origin request that needs them.",
                    f"Litestar(route_handlers=[...], {_EXAMPLE})",
                )
            ]
        findings = []
        if config.is_allow_all_origins and config.allow_credentials:
            findings.append(
                Finding(
                    "wildcard_with_credentials",
                    "CORSConfig has allow_origins=['*'] with allow_credentials=True: Litestar answers preflights "
                    "with `Access-Control-Allow-Origin: *`, which browsers refuse for requests with credentials, "
                    "and echoes ANY origin with credentials on requests that carry a cookie.",
                    self.code(allow_origins=["https://your-frontend.example"]),
                )
            )
        for origin in config.allow_origins:
            problem = _shape_problem(origin)
            if problem:
                findings.append(
                    Finding(
                        "malformed_origin",
                        f"CORSConfig allow_origins entry {origin!r} {problem}; the browser's Origin never matches it.",
                        self.code(allow_origins=[_clean(o) for o in config.allow_origins]),
                    )
                )
        lower = [m for m in config.allow_methods if m != "*" and m != m.upper()]
        if lower:
            findings.append(
                Finding(
                    "lowercase_methods",
                    f"CORSConfig allow_methods {lower} are not upper case: Litestar compares methods exactly and "
                    "browsers send them upper case, so these preflights fail with 400 'Disallowed CORS method'.",
                    self.code(allow_methods=[m.upper() for m in config.allow_methods]),
                )
            )
        return findings

    # --- one leg ---------------------------------------------------------------------------------

    def code(self, **changes: Any) -> str:
        """The ``cors_config=CORSConfig(...)`` argument with ``changes`` applied."""
        options = {**self.written, **changes}
        return "cors_config=" + call("CORSConfig", [(k, options[k]) for k in _ORDER if k in options])

    def explain(self, ask: Ask, verdict: Verdict) -> Cause | None:
        if self.config is None:
            return self._no_config(ask, verdict)
        parts, details, changes = self._refusals(ask, verdict)
        now, later = needs_credentials(verdict)
        credentialed = None
        if later and not now:
            extra = self._credential_changes(ask, changes)
            credentialed = self._fix({**changes, **extra}, ask, ("include",))[0]
        if not parts:
            return Cause(layer=self.name, credentialed_fix=credentialed)
        what = "refused the preflight" if ask.preflight else "does not allow this request"
        text = f"Litestar's CORSConfig {what}: {'; '.join(parts)}."
        if details:
            text += " " + "; ".join(details) + "."
        if ask.preflight and ask.status == 400:
            failures = _failures(self.config, ask)
            text += (
                f" Litestar answers a refused preflight with 400 'Disallowed CORS {', '.join(failures)}' and no CORS "
                f"headers at all, which is why the browser reports {verdict.reason}."
            )
        modes: tuple[replay.Mode, ...] = ("include",) if now or verdict.credentials == "include" else ("omit",)
        fix, code, verified = self._fix(changes, ask, modes)
        return Cause(layer=self.name, text=lead(text, verdict), replaces=True, fix=fix, fix_code=code,
                     fix_verified=verified, credentialed_fix=credentialed, reason="; ".join(parts),
                     details=tuple(details))  # fmt: skip

    def _refusals(self, ask: Ask, verdict: Verdict) -> tuple[list[str], list[str], dict[str, Any]]:
        config = self.config
        parts: list[str] = []
        details: list[str] = []
        changes: dict[str, Any] = {}
        if not config.is_origin_allowed(ask.origin):
            part = f"origin '{ask.origin}' is not in allow_origins {py(config.allow_origins)}"
            if config.allow_origin_regex:
                part += f" and does not fully match allow_origin_regex {py(config.allow_origin_regex)}"
            parts.append(part)
            details += closest(ask.origin, config.allow_origins, "allow_origins")
            changes["allow_origins"] = with_origin(config.allow_origins, ask.origin)
        if ask.preflight and not config.is_allow_all_methods and ask.method not in config.allow_methods:
            parts.append(f"{ask.method} is not in allow_methods {py(config.allow_methods)}")
            methods = [m.upper() for m in config.allow_methods]
            if methods != list(config.allow_methods):
                details.append("allow_methods has lower-case entries; Litestar compares methods exactly")
            changes["allow_methods"] = added(methods, [ask.method], fold=False)
        if ask.preflight and not config.is_allow_all_headers:
            allowed = set(config.allow_headers) | _SAFELISTED
            missing = [h for h in ask.headers if h not in allowed]
            if missing:
                noun = "header" if len(missing) == 1 else "headers"
                parts.append(f"request {noun} {names(missing)} not in allow_headers {py(config.allow_headers)}")
                changes["allow_headers"] = added(config.allow_headers, missing, fold=True)
        now, _ = needs_credentials(verdict)
        if now or verdict.credentials == "include":
            credential_parts = self._credential_parts()
            if credential_parts:
                parts += credential_parts
                changes.update(self._credential_changes(ask, changes))
        return parts, details, changes

    def _credential_parts(self) -> list[str]:
        config = self.config
        parts = []
        if not config.allow_credentials:
            parts.append(
                "allow_credentials is False, so Litestar never sends `Access-Control-Allow-Credentials: true`, "
                "which a request with credentials needs"
            )
        if config.is_allow_all_origins:
            parts.append(
                "allow_origins=['*'] makes Litestar answer `Access-Control-Allow-Origin: *` (on every preflight, and "
                "on requests without a cookie), which the browser refuses for a request with credentials"
            )
        return parts

    def _credential_changes(self, ask: Ask, changes: dict[str, Any]) -> dict[str, Any]:
        extra: dict[str, Any] = {"allow_credentials": True}
        if self.config.is_allow_all_origins:
            # "*" with credentials never passes a preflight: the origins that send credentials must be named.
            extra["allow_origins"] = with_origin(changes.get("allow_origins", ()), ask.origin)
        return extra

    def _fix(self, changes: dict[str, Any], ask: Ask, modes: tuple[replay.Mode, ...]) -> tuple[str, str, bool]:
        code = self.code(**changes)
        why = self._verify(changes, ask, modes)
        text = f"Pass {code} to Litestar(...)."
        return (text if why is None else unverified(text, why)), code, why is None

    def _no_config(self, ask: Ask, verdict: Verdict) -> Cause | None:
        if verdict.verdict != "blocked" or "access-control-allow-origin" in ask.response:
            return None
        changes: dict[str, Any] = {"allow_origins": [ask.origin]}
        now, _ = needs_credentials(verdict)
        if now or verdict.credentials == "include":
            changes["allow_credentials"] = True
        modes: tuple[replay.Mode, ...] = ("include",) if "allow_credentials" in changes else ("omit",)
        fix, code, verified = self._fix(changes, ask, modes)
        text = "This Litestar app has no cors_config, so nothing adds CORS headers to its responses."
        return Cause(text=lead(text, verdict), replaces=True, fix=fix, fix_code=code, fix_verified=verified,
                     reason="no cors_config")  # fmt: skip

    # --- replay ----------------------------------------------------------------------------------

    def _verify(self, changes: dict[str, Any], ask: Ask, modes: tuple[replay.Mode, ...]) -> str | None:
        """None when the exchange passes through Litestar's CORS middleware built with the changed config."""
        middleware = self._middleware({**self.written, **changes})
        if middleware is None:
            return "corstrace could not build Litestar's CORS middleware with this configuration"

        def answer(leg: replay.Leg) -> Response | None:
            return _inprocess.answer(middleware, replay.scope_of(leg, litestar_app=self.app, app=self.app))

        return replay.blocked(answer, ask, modes)

    def _middleware(self, options: dict[str, Any]) -> Any:
        key = tuple(sorted((name, repr(value)) for name, value in options.items()))
        if key not in self._replays:
            if len(self._replays) >= _MAX_REPLAYS:
                self._replays.clear()
            self._replays[key] = _build(self.app, options)
        return self._replays[key]


def _build(app: Any, options: dict[str, Any]) -> Any:
    """Litestar's own CORS middleware (the class the app uses) around the replay stub, with ``options``."""
    try:
        cors = importlib.import_module("litestar.config.cors")
        config = cors.CORSConfig(**options)
        cls = _middleware_class(app)
        return cls(app=replay.stub, config=config) if cls is not None else None
    except Exception:  # an option this Litestar version does not know: nothing to prove with
        return None


def _middleware_class(app: Any) -> Any:
    node = getattr(app, "asgi_handler", None)
    for _ in range(16):
        if node is None:
            break
        if type(node).__name__ == "CORSMiddleware" and hasattr(node, "config"):
            return type(node)
        node = getattr(node, "app", None)
    if app.cors_config is None:
        # The app has none to copy: a throwaway app with a default config shows which class Litestar uses.
        litestar = importlib.import_module("litestar")
        cors = importlib.import_module("litestar.config.cors")
        probe = litestar.Litestar(route_handlers=[], cors_config=cors.CORSConfig(), logging_config=None)
        return _middleware_class(probe)
    return None


def _written(config: Any) -> dict[str, Any]:
    """The CORSConfig options that differ from their defaults: what the user wrote."""
    written = {}
    for item in dataclasses.fields(config):
        if item.default is not dataclasses.MISSING:
            default = item.default
        elif item.default_factory is not dataclasses.MISSING:
            default = item.default_factory()
        else:  # pragma: no cover - every CORSConfig field has a default
            continue
        value = getattr(config, item.name)
        if value != default:
            written[item.name] = value
    return written


def _failures(config: Any, ask: Ask) -> list[str]:
    """The words of Litestar's 400 body, in its order: ``Disallowed CORS method, Origin, headers``."""
    failures = []
    if not config.is_allow_all_methods and ask.method not in config.allow_methods:
        failures.append("method")
    if not config.is_origin_allowed(ask.origin):
        failures.append("Origin")
    if not config.is_allow_all_headers and any(h not in set(config.allow_headers) | _SAFELISTED for h in ask.headers):
        failures.append("headers")
    return failures


def _shape_problem(origin: str) -> str | None:
    if "*" in origin or origin == "null":
        return None
    if "://" not in origin:
        return "has no scheme (write 'https://…')"
    parts = urlsplit(origin)
    if parts.path == "/":
        return "has a trailing slash"
    if parts.path or parts.query or parts.fragment:
        return f"has a path ({parts.path!r})"
    return None


def _clean(origin: str) -> str:
    if "*" in origin or "://" not in origin:
        return origin
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}"

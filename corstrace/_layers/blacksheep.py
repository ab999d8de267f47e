"""BlackSheep: ``app.use_cors(...)`` (and named policies, ``app.add_cors_policy``), read from the app.

BlackSheep's CORS middleware runs first and refuses with its own 400 and a ``CORS-Error`` header that says
why (origin, method or header), on preflights *and* on actual requests; it answers 404 to a preflight for a
path no route matches. The policy for a leg is the one its route is bound to, else the default one.
Fixes are written as the ``use_cors(...)`` (or ``add_cors_policy``) call; they are not replayed.
"""

from __future__ import annotations

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

_NOT_VERIFIED = "corstrace does not replay BlackSheep's CORS middleware"


def detect(node: Any) -> Layer | None:
    if not type(node).__module__.startswith("blacksheep") or not hasattr(node, "use_cors"):
        return None
    return BlackSheepCORS(getattr(node, "_cors_strategy", None))


class BlackSheepCORS(Layer):
    framework = "BlackSheep"

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy
        self.name = "BlackSheep CORS (use_cors)" if strategy is not None else None

    def lint(self) -> list[Finding]:
        if self.strategy is None:
            return [Finding(
                "no_cors_layer",
                "This BlackSheep app has no CORS layer (app.use_cors() was not called): nothing adds CORS headers, "
                "so the browser blocks every cross-origin request that needs them.",
                'app.use_cors(allow_origins=["http://localhost:3000"], allow_methods=["GET", "POST"])',
            )]  # fmt: skip
        policy = self.strategy.default_policy
        if not policy.allow_methods:
            return [Finding(
                "no_allowed_methods",
                "app.use_cors() has no allow_methods: BlackSheep answers 400 'The method of the request is not "
                "enabled by CORS rules.' to every cross-origin request, even a simple GET.",
                _code(policy, None, allow_methods=["GET", "POST"]),
            )]  # fmt: skip
        return []

    def _policy(self, ask: Ask) -> tuple[Any, str | None]:
        """The policy BlackSheep applies to this leg, and its name when it is not the default one."""
        strategy = self.strategy
        route = strategy.router.get_matching_route(ask.method, ask.path)
        policy = strategy.get_policy_by_route(route) if route is not None else None
        if policy is None:
            return strategy.default_policy, None
        named = next((name for name, known in strategy.policies.items() if known is policy), None)
        return policy, named

    def explain(self, ask: Ask, verdict: Verdict) -> Cause | None:
        if self.strategy is None:
            if verdict.verdict != "blocked" or "access-control-allow-origin" in ask.response:
                return None
            text = "This BlackSheep app has no CORS layer: app.use_cors() was not called."
            code = f'app.use_cors(allow_origins=["{ask.origin}"], allow_methods=["{ask.method}"])'
            return Cause(text=lead(text, verdict), replaces=True, fix=unverified(code, _NOT_VERIFIED),
                         fix_code=code, reason="no use_cors()")  # fmt: skip
        policy, named = self._policy(ask)
        parts, details, changes = _refusals(policy, ask, verdict)
        said = ask.response.get("cors-error")
        if not parts:
            return Cause(layer=self.name)
        text = f"BlackSheep's CORS policy{f' {named!r}' if named else ''}: {'; '.join(parts)}."
        if details:
            text += " " + "; ".join(details) + "."
        if said and ask.status == 400:
            text += f" BlackSheep answered 400 with `CORS-Error: {said}` and no CORS headers."
        code = _code(policy, named, **changes)
        return Cause(layer=self.name, text=lead(text, verdict), replaces=True, fix=unverified(code, _NOT_VERIFIED),
                     fix_code=code, reason="; ".join(parts), details=tuple(details))  # fmt: skip


def _refusals(policy: Any, ask: Ask, verdict: Verdict) -> tuple[list[str], list[str], dict[str, Any]]:
    parts: list[str] = []
    details: list[str] = []
    changes: dict[str, Any] = {}
    origins = sorted(policy.allow_origins)
    if "*" not in origins and ask.origin not in origins:
        parts.append(f"origin '{ask.origin}' is not in allow_origins {py(origins)}")
        details += closest(ask.origin, origins, "allow_origins")
        changes["allow_origins"] = with_origin(origins, ask.origin)
    methods = sorted(policy.allow_methods)
    if "*" not in methods and ask.method not in methods:
        parts.append(f"{ask.method} is not in allow_methods {py(methods)}")
        changes["allow_methods"] = added(methods, [ask.method], fold=False)
    allowed = set(policy.allow_headers)
    missing = [h for h in ask.headers if ask.preflight and "*" not in allowed and h not in allowed]
    if missing:
        noun = "header" if len(missing) == 1 else "headers"
        parts.append(f"request {noun} {names(missing)} not in allow_headers {py(sorted(allowed))}")
        changes["allow_headers"] = added(sorted(allowed), missing, fold=True)
    now, _ = needs_credentials(verdict)
    if (now or verdict.credentials == "include") and not policy.allow_credentials:
        parts.append("allow_credentials is False, so BlackSheep never sends `Access-Control-Allow-Credentials`")
        changes["allow_credentials"] = True
        if "*" in origins:
            changes["allow_origins"] = with_origin(changes.get("allow_origins", ()), ask.origin)
    return parts, details, changes


def _code(policy: Any, named: str | None, **changes: Any) -> str:
    options: dict[str, Any] = {
        "allow_origins": sorted(policy.allow_origins),
        "allow_methods": sorted(policy.allow_methods),
        "allow_headers": sorted(policy.allow_headers),
        "allow_credentials": policy.allow_credentials,
    }
    options.update(changes)
    shown = [(k, v) for k, v in options.items() if v]
    if named is not None:
        return "app." + call("add_cors_policy", shown, first=[py(named)])
    return "app." + call("use_cors", shown)

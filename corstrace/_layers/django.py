"""Django with django-cors-headers: ``CorsMiddleware`` in ``settings.MIDDLEWARE``, configured by ``CORS_*`` settings.

django-cors-headers answers every preflight on an enabled path (``CORS_URLS_REGEX``) itself with 200 and an
empty body, and checks only the origin (scheme and host of each ``CORS_ALLOWED_ORIGINS`` entry, a
``re.match`` of each ``CORS_ALLOWED_ORIGIN_REGEXES``, or ``CORS_ALLOW_ALL_ORIGINS``): an allowed origin gets
every CORS header, a refused one none. Methods and headers are the browser's to check, against the
``Access-Control-Allow-Methods``/``-Headers`` built from ``CORS_ALLOW_METHODS``/``CORS_ALLOW_HEADERS``. The
settings are read live through django-cors-headers' own ``conf``; fixes are written for ``settings.py`` and
replayed through django-cors-headers' own middleware code, run with the proposed settings (never by changing
Django's settings, which other requests read).
"""

from __future__ import annotations

import importlib
import re
import types
from typing import Any
from urllib.parse import urlsplit

from corstrace._config import Finding
from corstrace._layers import replay
from corstrace._layers.base import (
    Ask,
    Cause,
    Layer,
    added,
    closest,
    lead,
    names,
    needs_credentials,
    py,
    unverified,
    with_origin,
)
from corstrace.engine import Response, Verdict

_CORS = "corsheaders.middleware.CorsMiddleware"
# Middleware django-cors-headers' README names: they answer requests themselves, so they belong below it.
_RESPONDERS = ("django.middleware.common.CommonMiddleware", "whitenoise.middleware.WhiteNoiseMiddleware")
_SAFELISTED_METHODS = frozenset({"GET", "HEAD", "POST"})
_DEFAULTS = {"CORS_ALLOW_METHODS": "default_methods", "CORS_ALLOW_HEADERS": "default_headers"}
_ORDER = ("CORS_ALLOW_ALL_ORIGINS", "CORS_ALLOWED_ORIGINS", "CORS_ALLOW_METHODS", "CORS_ALLOW_HEADERS",
          "CORS_ALLOW_CREDENTIALS")  # fmt: skip
_INSTALL = (
    'INSTALLED_APPS += ["corsheaders"]; MIDDLEWARE = ["corsheaders.middleware.CorsMiddleware", *MIDDLEWARE]; '
    'CORS_ALLOWED_ORIGINS = ["http://localhost:3000"]'
)
_NOT_VERIFIED = "corstrace cannot replay a middleware above CorsMiddleware"
_MAX_REPLAYS = 64


def detect(node: Any) -> Layer | None:
    if type(node).__module__ != "django.core.handlers.asgi":
        return None
    return DjangoCORS()


class DjangoCORS(Layer):
    framework = "Django"

    def __init__(self) -> None:
        self.settings: Any = importlib.import_module("django.conf").settings
        middleware = [str(m) for m in getattr(self.settings, "MIDDLEWARE", None) or ()]
        self.installed = _CORS in middleware
        self.above = middleware[: middleware.index(_CORS)] if self.installed else []
        self.name = "django-cors-headers CorsMiddleware" if self.installed else None
        self.conf: Any = importlib.import_module("corsheaders.conf").conf if self.installed else None
        self._replays: dict[str, Any] = {}

    # --- startup ---------------------------------------------------------------------------------

    def lint(self) -> list[Finding]:
        if not self.installed:
            apps = [str(a) for a in getattr(self.settings, "INSTALLED_APPS", None) or ()]
            if "corsheaders" in apps:
                return [Finding(
                    "cors_middleware_not_installed",
                    "django-cors-headers is in INSTALLED_APPS but its CorsMiddleware is not in settings.MIDDLEWARE: "
                    "nothing adds CORS headers, so the browser blocks every cross-origin request that needs them.",
                    f'MIDDLEWARE = ["{_CORS}", *MIDDLEWARE]  # as high as possible',
                )]  # fmt: skip
            return [Finding(
                "no_cors_layer",
                "This Django app has no CORS layer (django-cors-headers' CorsMiddleware is not in "
                "settings.MIDDLEWARE): nothing adds CORS headers, so the browser blocks every cross-origin "
                "request that needs them.",
                f"pip install django-cors-headers, then in settings.py: {_INSTALL}",
            )]  # fmt: skip
        return [*self._lint_order(), *self._lint_settings()]

    def _lint_order(self) -> list[Finding]:
        responders = [m for m in self.above if m in _RESPONDERS]
        if not responders:
            return []
        return [Finding(
            "layers_outside_cors",
            f"{', '.join(responders)} run(s) above CorsMiddleware in settings.MIDDLEWARE: a response they produce "
            "(a redirect, a static file) carries no CORS headers, and a preflight they answer fails in the browser.",
            f'Move "{_CORS}" above them, as high as possible in MIDDLEWARE.',
        )]  # fmt: skip

    def _lint_settings(self) -> list[Finding]:
        conf = self.conf
        findings = []
        origins = list(conf.CORS_ALLOWED_ORIGINS)
        if not conf.CORS_ALLOW_ALL_ORIGINS and not origins and not list(conf.CORS_ALLOWED_ORIGIN_REGEXES):
            findings.append(Finding(
                "no_allowed_origins",
                "django-cors-headers allows no origin: CORS_ALLOWED_ORIGINS, CORS_ALLOWED_ORIGIN_REGEXES and "
                "CORS_ALLOW_ALL_ORIGINS are unset, so it adds CORS headers to no response.",
                'CORS_ALLOWED_ORIGINS = ["http://localhost:3000"]',
            ))  # fmt: skip
        if conf.CORS_ALLOW_ALL_ORIGINS and conf.CORS_ALLOW_CREDENTIALS:
            findings.append(Finding(
                "wildcard_with_credentials",
                "CORS_ALLOW_ALL_ORIGINS = True with CORS_ALLOW_CREDENTIALS = True makes django-cors-headers echo ANY "
                "Origin together with `Access-Control-Allow-Credentials: true`: any website can read your users' "
                "data with their cookies.",
                'CORS_ALLOW_ALL_ORIGINS = False; CORS_ALLOWED_ORIGINS = ["https://your-frontend.example"]',
            ))  # fmt: skip
        for origin in origins:
            parts = urlsplit(str(origin)) if isinstance(origin, str) else None
            if origin != "null" and (parts is None or not parts.scheme or not parts.netloc):
                findings.append(Finding(
                    "malformed_origin",
                    f"CORS_ALLOWED_ORIGINS entry {origin!r} has no scheme or host, so no browser Origin matches it "
                    "(django-cors-headers' system check corsheaders.E013 says so too, but an ASGI server never runs "
                    "Django's system checks).",
                    f"CORS_ALLOWED_ORIGINS = {py([_clean(o) for o in origins])}",
                ))  # fmt: skip
        return findings

    # --- one leg ---------------------------------------------------------------------------------

    def explain(self, ask: Ask, verdict: Verdict) -> Cause | None:
        if not self.installed:
            return self._not_installed(ask, verdict)
        conf = self.conf
        if not re.match(conf.CORS_URLS_REGEX, ask.path):
            return self._not_enabled(ask, verdict)
        if "origin" not in ask.response.get("vary", "").lower() and verdict.verdict == "blocked":
            return self._bypassed(ask, verdict)
        parts, details, changes = self._refusals(ask, verdict)
        now, later = needs_credentials(verdict)
        credentialed = None
        if later and not now:
            credentialed = self._fix({**changes, **self._credential_changes(ask, changes)}, ask, ("include",))[0]
        if not parts:
            return Cause(layer=self.name, credentialed_fix=credentialed)
        text = f"django-cors-headers: {'; '.join(parts)}."
        if details:
            text += " " + "; ".join(details) + "."
        modes: tuple[replay.Mode, ...] = ("include",) if now or verdict.credentials == "include" else ("omit",)
        fix, code, verified = self._fix(changes, ask, modes)
        return Cause(layer=self.name, text=lead(text, verdict), replaces=True, fix=fix, fix_code=code,
                     fix_verified=verified, credentialed_fix=credentialed, reason="; ".join(parts),
                     details=tuple(details))  # fmt: skip

    def _refusals(self, ask: Ask, verdict: Verdict) -> tuple[list[str], list[str], dict[str, Any]]:
        conf = self.conf
        parts: list[str] = []
        details: list[str] = []
        changes: dict[str, Any] = {}
        credentialed = verdict.credentials == "include"
        if not self._origin_allowed(conf, ask.origin):
            part = f"origin '{ask.origin}' is not in CORS_ALLOWED_ORIGINS {py(list(conf.CORS_ALLOWED_ORIGINS))}"
            if list(conf.CORS_ALLOWED_ORIGIN_REGEXES):
                part += " and matches no CORS_ALLOWED_ORIGIN_REGEXES entry"
            parts.append(part)
            details += closest(ask.origin, conf.CORS_ALLOWED_ORIGINS, "CORS_ALLOWED_ORIGINS")
            changes["CORS_ALLOWED_ORIGINS"] = with_origin(conf.CORS_ALLOWED_ORIGINS, ask.origin)
        if ask.preflight:
            methods = [str(m) for m in conf.CORS_ALLOW_METHODS]
            wildcard = "*" in methods and not credentialed
            if ask.method not in methods and ask.method not in _SAFELISTED_METHODS and not wildcard:
                parts.append(f"{ask.method} is not in CORS_ALLOW_METHODS {self._shown('CORS_ALLOW_METHODS')}")
                changes["CORS_ALLOW_METHODS"] = added(methods, [ask.method], fold=False)
            allowed = [str(h).lower() for h in conf.CORS_ALLOW_HEADERS]
            missing = [h for h in ask.headers if h not in allowed and not ("*" in allowed and not credentialed)]
            if missing:
                noun = "header" if len(missing) == 1 else "headers"
                parts.append(
                    f"request {noun} {names(missing)} not in CORS_ALLOW_HEADERS {self._shown('CORS_ALLOW_HEADERS')}"
                )
                changes["CORS_ALLOW_HEADERS"] = added(conf.CORS_ALLOW_HEADERS, missing, fold=True)
        now, _ = needs_credentials(verdict)
        if (now or credentialed) and (not conf.CORS_ALLOW_CREDENTIALS or conf.CORS_ALLOW_ALL_ORIGINS):
            if not conf.CORS_ALLOW_CREDENTIALS:
                parts.append(
                    "CORS_ALLOW_CREDENTIALS is False, so it never sends `Access-Control-Allow-Credentials: true`, "
                    "which a request with credentials needs"
                )
            changes.update(self._credential_changes(ask, changes))
        return parts, details, changes

    def _credential_changes(self, ask: Ask, changes: dict[str, Any]) -> dict[str, Any]:
        extra: dict[str, Any] = {"CORS_ALLOW_CREDENTIALS": True}
        if self.conf.CORS_ALLOW_ALL_ORIGINS:
            # With credentials, "all origins" echoes every website's origin: name the ones that may send them.
            extra["CORS_ALLOW_ALL_ORIGINS"] = False
            extra["CORS_ALLOWED_ORIGINS"] = with_origin(changes.get("CORS_ALLOWED_ORIGINS", ()), ask.origin)
        return extra

    @staticmethod
    def _origin_allowed(conf: Any, origin: str) -> bool:
        if conf.CORS_ALLOW_ALL_ORIGINS:
            return True
        middleware = importlib.import_module("corsheaders.middleware").CorsMiddleware
        try:
            url = urlsplit(origin)
        except ValueError:
            return False
        # django-cors-headers' own test, on a throwaway instance (it reads only the origin and conf).
        probe = middleware.__new__(middleware)
        return bool(probe.origin_found_in_white_lists(origin, url))

    def _shown(self, name: str) -> str:
        value = getattr(self.conf, name)
        written = hasattr(self.settings, name)
        return py(list(value)) + ("" if written else " (the default)")

    def code(self, changes: dict[str, Any]) -> str:
        """The settings.py lines that make ``changes``, on one line (``; `` between them)."""
        lines = []
        for name in (*_ORDER, *sorted(set(changes) - set(_ORDER))):
            if name not in changes:
                continue
            value = changes[name]
            default = _DEFAULTS.get(name)
            if default is not None and not hasattr(self.settings, name):
                # Keep django-cors-headers' defaults and add to them, as its README does.
                new = [v for v in value if v not in getattr(self.conf, name)]
                lines.append(f"from corsheaders.defaults import {default}")
                lines.append(f"{name} = (*{default}, {', '.join(py(v) for v in new)})")
            else:
                lines.append(f"{name} = {py(list(value) if isinstance(value, (list, tuple)) else value)}")
        return "; ".join(lines)

    def _fix(self, changes: dict[str, Any], ask: Ask, modes: tuple[replay.Mode, ...]) -> tuple[str, str, bool]:
        code = self.code(changes)
        why = self._verify(changes, ask, modes)
        text = f"In settings.py: {code}"
        return (text if why is None else unverified(text, why)), code, why is None

    def _not_installed(self, ask: Ask, verdict: Verdict) -> Cause | None:
        if verdict.verdict != "blocked" or "access-control-allow-origin" in ask.response:
            return None
        text = "This Django app has no CORS layer: django-cors-headers' CorsMiddleware is not in settings.MIDDLEWARE."
        fix = unverified(f"pip install django-cors-headers, then in settings.py: {_INSTALL}",
                         "corstrace cannot replay a middleware the app does not have")  # fmt: skip
        return Cause(text=lead(text, verdict), replaces=True, fix=fix, reason="CorsMiddleware not in MIDDLEWARE")

    def _not_enabled(self, ask: Ask, verdict: Verdict) -> Cause | None:
        if verdict.verdict != "blocked":
            return None
        regex = self.conf.CORS_URLS_REGEX
        shown = regex.pattern if isinstance(regex, re.Pattern) else str(regex)
        text = f"django-cors-headers leaves {ask.path} alone: CORS_URLS_REGEX {shown!r} does not match it."
        fix = unverified(f"In settings.py, make CORS_URLS_REGEX match {ask.path} (e.g. CORS_URLS_REGEX = r\"^/.*$\").",
                         "corstrace does not know which paths you mean to open")  # fmt: skip
        return Cause(layer=self.name, text=lead(text, verdict), replaces=True, fix=fix,
                     reason=f"CORS_URLS_REGEX does not match {ask.path}")  # fmt: skip

    def _bypassed(self, ask: Ask, verdict: Verdict) -> Cause:
        above = ", ".join(self.above) or "a layer outside Django's middleware"
        text = (
            f"The response ({ask.status}) never went through CorsMiddleware (it has no `Vary: origin`): {above} "
            "runs above it in settings.MIDDLEWARE and answered first."
        )
        fix = unverified(f'Move "{_CORS}" to the top of MIDDLEWARE, above {above}.', _NOT_VERIFIED)
        return Cause(layer=above, text=lead(text, verdict), replaces=True, fix=fix)

    # --- replay ----------------------------------------------------------------------------------

    def _verify(self, changes: dict[str, Any], ask: Ask, modes: tuple[replay.Mode, ...]) -> str | None:
        try:
            middleware = self._middleware(changes)
        except Exception:  # a django-cors-headers version shaped differently: nothing to prove with
            return "corstrace could not build django-cors-headers' middleware with these settings"
        if middleware is None:
            return "a check_request_enabled signal receiver also decides, and corstrace cannot replay it"

        def answer(leg: replay.Leg) -> Response | None:
            try:
                response = middleware(_request(leg))
            except Exception:
                return None
            return Response(response.status_code, tuple((str(n), str(v)) for n, v in response.items()))

        return replay.blocked(answer, ask, modes)

    def _middleware(self, changes: dict[str, Any]) -> Any:
        signals = importlib.import_module("corsheaders.signals")
        if signals.check_request_enabled.has_listeners():
            return None
        key = repr(sorted(changes.items()))
        if key not in self._replays:
            if len(self._replays) >= _MAX_REPLAYS:
                self._replays.clear()
            http = importlib.import_module("django.http")
            self._replays[key] = _replayed_class(_Conf(self.conf, changes))(lambda request: http.HttpResponse())
        return self._replays[key]


class _Conf:
    """django-cors-headers' ``conf`` with some settings replaced (Django's own settings stay untouched)."""

    def __init__(self, conf: Any, changes: dict[str, Any]) -> None:
        self._conf = conf
        self._changes = changes

    def __getattr__(self, name: str) -> Any:
        changes = self.__dict__["_changes"]
        return changes[name] if name in changes else getattr(self.__dict__["_conf"], name)


def _replayed_class(conf: _Conf) -> Any:
    """django-cors-headers' ``CorsMiddleware``, its methods' code unchanged, reading ``conf`` for its settings."""
    module = importlib.import_module("corsheaders.middleware")
    namespace = dict(vars(module))
    namespace["conf"] = conf
    body: dict[str, Any] = {}
    for name, value in vars(module.CorsMiddleware).items():
        if isinstance(value, types.FunctionType):
            body[name] = types.FunctionType(value.__code__, namespace, value.__name__, value.__defaults__,
                                            value.__closure__)  # fmt: skip
    return type("ReplayedCorsMiddleware", (module.CorsMiddleware,), body)


def _request(leg: Any) -> Any:
    http = importlib.import_module("django.http")
    parts = urlsplit(leg.url)
    request = http.HttpRequest()
    request.method = "OPTIONS" if leg.preflight else leg.method
    request.path = request.path_info = parts.path or "/"
    meta = {"SERVER_NAME": parts.hostname or "localhost", "SERVER_PORT": str(parts.port or 80),
            "HTTP_HOST": parts.netloc}  # fmt: skip
    for name, value in leg.request_headers():
        meta["HTTP_" + name.upper().replace("-", "_")] = value
    request.META = meta
    return request


def _clean(origin: Any) -> Any:
    if not isinstance(origin, str) or "://" in origin or origin == "null":
        return origin
    return f"https://{origin.strip('/')}"

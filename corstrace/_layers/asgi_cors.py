"""asgi-cors: ``asgi_cors(app, hosts=[...], ...)``, a wrapper function whose settings live in its closure.

asgi-cors only rewrites ``http.response.start``: for an allowed origin (``allow_all``, an exact entry of
``hosts``, an ``fnmatch`` of ``host_wildcards``, or ``callback``) it adds ``Access-Control-Allow-Origin`` and,
when set, ``-Headers``/``-Methods``/``-Max-Age``. It never answers a preflight itself (the wrapped app must
answer ``OPTIONS`` with a 2xx) and has no credentials option. Fixes are written as the ``asgi_cors(...)``
call; they are not replayed.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from corstrace._config import Finding
from corstrace._layers.base import Ask, Cause, Layer, added, call, closest, lead, names, unverified, with_origin
from corstrace.engine import Verdict

_NOT_VERIFIED = "corstrace does not replay asgi-cors"
_OPTIONS = ("allow_all", "hosts", "host_wildcards", "headers", "methods", "max_age")


def detect(node: Any) -> Layer | None:
    code = getattr(node, "__code__", None)
    if code is None or code.co_name != "app_wrapped_with_cors" or not code.co_filename.endswith("asgi_cors.py"):
        return None
    cells = dict(zip(code.co_freevars, (cell.cell_contents for cell in node.__closure__ or ()), strict=False))
    return AsgiCORS(cells)


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


class AsgiCORS(Layer):
    framework = "asgi-cors"
    name = "asgi-cors"

    def __init__(self, cells: dict[str, Any]) -> None:
        self.allow_all = bool(cells.get("allow_all"))
        self.hosts = sorted(_text(h) for h in cells.get("hosts") or ())
        self.wildcards = [_text(h) for h in cells.get("host_wildcards") or ()]
        self.callback = cells.get("callback")
        self.headers = [_text(h) for h in cells.get("headers") or ()]
        self.methods = [_text(m) for m in cells.get("methods") or ()]
        self.max_age = cells.get("max_age")

    def lint(self) -> list[Finding]:
        if not (self.allow_all or self.hosts or self.wildcards or self.callback):
            return [Finding(
                "no_allowed_origins",
                "asgi-cors allows no origin (no allow_all, hosts, host_wildcards or callback): it adds CORS headers "
                "to no response.",
                'app = asgi_cors(app, hosts=["http://localhost:3000"])',
            )]  # fmt: skip
        return []

    def code(self, **changes: Any) -> str:
        options = {"allow_all": self.allow_all, "hosts": self.hosts, "host_wildcards": self.wildcards,
                   "headers": self.headers, "methods": self.methods, "max_age": self.max_age, **changes}  # fmt: skip
        return "app = " + call("asgi_cors", [(k, options[k]) for k in _OPTIONS if options.get(k)], first=["app"])

    def _allowed(self, origin: str) -> bool | None:
        if self.allow_all or origin in self.hosts or any(fnmatch.fnmatch(origin, w) for w in self.wildcards):
            return True
        return None if self.callback is not None else False

    def explain(self, ask: Ask, verdict: Verdict) -> Cause | None:
        if verdict.verdict != "blocked":
            return Cause(layer=self.name)
        parts: list[str] = []
        details: list[str] = []
        changes: dict[str, Any] = {}
        allowed = self._allowed(ask.origin)
        if allowed is False:
            parts.append(f"origin '{ask.origin}' is not in hosts {self.hosts} and matches no host_wildcards")
            details += closest(ask.origin, self.hosts, "hosts")
            changes["hosts"] = with_origin(self.hosts, ask.origin)
        if ask.preflight and ask.status is not None and not 200 <= ask.status < 300:
            parts.append(
                f"asgi-cors never answers a preflight itself, and the app answered OPTIONS {ask.path} with {ask.status}"
            )
        if ask.preflight and ask.method not in ("GET", "HEAD", "POST") and ask.method not in self.methods:
            parts.append(f"{ask.method} is not in methods {self.methods}")
            changes["methods"] = added(self.methods, [ask.method], fold=False)
        missing = [h for h in ask.headers if ask.preflight and h not in {x.lower() for x in self.headers}]
        if missing:
            parts.append(f"request header(s) {names(missing)} not in headers {self.headers}")
            changes["headers"] = added(self.headers, missing, fold=True)
        credentials = verdict.credentials == "include" or (verdict.reason or "").endswith("InvalidAllowCredentials")
        if credentials:
            parts.append("asgi-cors has no credentials option: it never sends `Access-Control-Allow-Credentials`")
        if not parts:
            return Cause(layer=self.name)
        text = f"asgi-cors: {'; '.join(parts)}."
        if details:
            text += " " + "; ".join(details) + "."
        fixes = []
        if changes:
            fixes.append(self.code(**changes))
        if ask.preflight and ask.status is not None and not 200 <= ask.status < 300:
            fixes.append(f"answer OPTIONS {ask.path} with 200 in the app (asgi-cors then adds its headers)")
        if credentials:
            fixes.append(
                "asgi-cors cannot allow credentials: make the page fetch without them (credentials: 'omit'), or "
                "replace asgi-cors with a CORS layer that has a credentials option"
            )
        fix = unverified("; ".join(fixes), _NOT_VERIFIED) if fixes else None
        return Cause(layer=self.name, text=lead(text, verdict), replaces=True, fix=fix,
                     fix_code=self.code(**changes) if changes else None, reason="; ".join(parts),
                     details=tuple(details))  # fmt: skip

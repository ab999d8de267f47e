"""Any other ASGI app: corstrace says plainly that it cannot read the app's CORS layer, and never guesses one.

The browser's verdict is exact whatever the server (it comes from the headers the browser receives); only the
server-side cause and a verified fix need to read the layer's configuration, and for this app nothing can.
"""

from __future__ import annotations

from typing import Any

from corstrace._config import Finding
from corstrace._layers.base import Ask, Cause, Layer, lead
from corstrace.engine import Verdict

# As corstrace._cause words an unverified header-level fix for an app whose CORS layer it cannot read.
_NOT_READ = (
    "Not verified: corstrace cannot read this app's CORS layer, so it could not replay the exchange with the change."
)
_KNOWN = (
    "Starlette/FastAPI's CORSMiddleware, Litestar's CORSConfig, django-cors-headers, quart-cors, Falcon's "
    "CORSMiddleware, BlackSheep's use_cors() and asgi-cors"
)


def describe(app: Any) -> str:
    """``module.Class`` of an app object (the function's name for a plain ASGI function)."""
    if callable(app) and hasattr(app, "__qualname__") and not isinstance(app, type):
        return f"{getattr(app, '__module__', '?')}.{app.__qualname__}"
    cls = type(app)
    return f"{cls.__module__}.{cls.__qualname__}"


class Unknown(Layer):
    def __init__(self, app: Any) -> None:
        self.app = describe(app)

    def lint(self) -> list[Finding]:
        return [
            Finding(
                "unknown_cors_layer",
                f"corstrace cannot read the CORS setup of {self.app} (it reads {_KNOWN}). Its verdicts are still "
                "exact (they come from the headers the browser receives), but it explains them from the headers "
                "alone and cannot verify fixes.",
            )
        ]

    def explain(self, ask: Ask, verdict: Verdict) -> Cause | None:
        if verdict.verdict != "blocked":
            return None
        text = f"corstrace cannot read the CORS setup of {self.app}, so this comes from the response headers alone."
        fix = f"{verdict.fix} {_NOT_READ}" if verdict.fix else None
        return Cause(text=lead(text, verdict), replaces=True, fix=fix)

"""corstrace: see why the browser blocked your cross-origin request."""

from __future__ import annotations

from corstrace._version import __version__
from corstrace.engine import Request, Response, Verdict, evaluate
from corstrace.middleware import CORSTraceMiddleware

__all__ = ["CORSTraceMiddleware", "Request", "Response", "Verdict", "__version__", "evaluate"]

"""corstrace: see why the browser blocked your cross-origin request."""

from __future__ import annotations

__version__ = "0.1.0"

from corstrace.engine import Request, Response, Verdict, evaluate
from corstrace.middleware import CORSTraceMiddleware

__all__ = ["CORSTraceMiddleware", "Request", "Response", "Verdict", "__version__", "evaluate"]

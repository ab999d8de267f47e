"""corstrace: see why the browser blocked your cross-origin request."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

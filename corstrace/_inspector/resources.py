"""Locating the ``inspector_ui`` static files.

The wheel force-includes the repository's ``inspector_ui/`` as ``corstrace/inspector_ui/``; in an
editable install that copy does not exist (hatch silently skips it), so fall back to the source tree.
"""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path

# Flat directory of plain file names: no path separators, no dot-files, so no traversal is possible.
_ASSET_NAME = re.compile(r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.(?:html|js|css|svg|png|ico|json|txt)$")

CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
    "png": "image/png",
    "ico": "image/x-icon",
    "json": "application/json",
    "txt": "text/plain; charset=utf-8",
}


def ui_dir() -> Path | None:
    """The directory holding ``index.html`` and its assets, or None when neither location has it."""
    candidates: list[Path] = []
    try:
        packaged = importlib.resources.files("corstrace") / "inspector_ui"
        candidates.append(Path(str(packaged)))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - corstrace is always importable here
        pass
    candidates.append(Path(__file__).resolve().parent.parent.parent / "inspector_ui")
    for candidate in candidates:
        if (candidate / "index.html").is_file():
            return candidate
    return None


def read_asset(name: str, directory: Path | None = None) -> tuple[bytes, str] | None:
    """The bytes and content type of the asset called ``name``, or None when there is no such file."""
    if not _ASSET_NAME.match(name):
        return None
    base = directory if directory is not None else ui_dir()
    if base is None:
        return None
    path = base / name
    try:
        body = path.read_bytes()
    except OSError:
        return None
    return body, CONTENT_TYPES[name.rsplit(".", 1)[1]]

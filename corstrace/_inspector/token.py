"""The inspector's access token and on/off switch.

The token must be the same in every worker process and survive ``uvicorn --reload`` restarts,
so an open inspector tab keeps working: it lives in a file in the user's cache directory,
created exactly once (``O_EXCL``) by whichever process gets there first.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

TOKEN_ENV = "CORSTRACE_INSPECTOR_TOKEN"
ENABLED_ENV = "CORSTRACE_INSPECTOR"
_FALSY = frozenset({"0", "false", "no", "off"})
# A token shorter than this is guessable by a page that can try it through the browser.
_MIN_TOKEN_LENGTH = 16


def inspector_enabled(option: bool | None) -> bool:
    """Whether the inspector is on: an explicit ``option`` wins, then ``CORSTRACE_INSPECTOR``, then on."""
    if option is not None:
        return option
    return os.environ.get(ENABLED_ENV, "").strip().lower() not in _FALSY


def token_path() -> Path:
    """Where the shared token is kept: ``$XDG_CACHE_HOME`` (or ``~/.cache``) ``/corstrace/inspector-token``."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "corstrace" / "inspector-token"


def load_token() -> str:
    """The inspector token: ``CORSTRACE_INSPECTOR_TOKEN`` if set, else the cached file, created on first use."""
    explicit = os.environ.get(TOKEN_ENV, "").strip()
    if explicit:
        return explicit
    path = token_path()
    existing = _read(path)
    if existing is not None:
        return existing
    token = secrets.token_urlsafe(24)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Write a private temp file, then hard-link it into place: the link either creates the
        # token file complete or fails because another worker already did, so nobody reads half a file.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(token + "\n")
            os.link(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    except FileExistsError:
        # Another worker won the race; everyone must agree on its token.
        return _read(path) or token
    except OSError:
        # No writable cache dir (read-only home, container) or no hard links: a per-process token
        # still protects the page, it just does not survive restarts.
        return token
    return token


def _read(path: Path) -> str | None:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        token = path.read_text(encoding="ascii").strip()
        if len(token) >= _MIN_TOKEN_LENGTH:
            return token
    return None

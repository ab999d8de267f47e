"""The inspector's access token and on/off switch.

The token must be the same in every worker process and survive ``uvicorn --reload`` restarts, so an open
inspector tab keeps working: it lives in a file in the user's cache directory (found with ``platformdirs``,
as pip and black do), created exactly once (write a private file, hard-link it into place) by whichever
process gets there first. ``CORSTRACE_INSPECTOR_TOKEN`` overrides it.

Whoever knows the token can read the live stream of real request headers, so a token is only trusted when
nobody else could have chosen or read it: a short or repetitive environment token, or a file another user
owns, others may read or write, that is a symlink, or sits where others can swap it, is refused, with the
reason logged once. The checks are plain functions (:func:`token_problem`, :func:`token_file_problem`,
:func:`directory_problem`) so other processes sharing the token can apply the same rules.

Reading the file is blocking I/O, and Starlette builds middleware lazily *inside* the running event loop:
so the token is read once per process when this module is imported (by a short-lived thread when the import
itself runs inside a loop), cached, and only re-read (in a worker thread, see :func:`current_token_async`)
when the environment changed since.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import threading
from pathlib import Path

import anyio.lowlevel
import anyio.to_thread
import platformdirs

from corstrace._log import logger

TOKEN_ENV = "CORSTRACE_INSPECTOR_TOKEN"
ENABLED_ENV = "CORSTRACE_INSPECTOR"
_FALSY = frozenset({"0", "false", "no", "off"})
# Any local program (another user's, a container sharing the host network) can try tokens against the port.
MIN_TOKEN_LENGTH = 24
MIN_DISTINCT_CHARACTERS = 8
# The token travels in every WebSocket handshake: a bound keeps that header small.
MAX_TOKEN_LENGTH = 512
# "-v2": earlier versions put the token of "inspector-token" in a cookie, which browsers sent to every local
# port; a new file means a new token, so whatever leaked that way opens nothing.
TOKEN_FILE_NAME = "inspector-token-v2"
_GENERATE_HINT = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


def inspector_enabled(option: bool | None) -> bool:
    """Whether the inspector is on: an explicit ``option`` wins, then ``CORSTRACE_INSPECTOR``, then on."""
    if option is not None:
        return option
    return os.environ.get(ENABLED_ENV, "").strip().lower() not in _FALSY


def token_path() -> Path:
    """Where the shared token is kept: the platform's user cache directory, ``corstrace/inspector-token-v2``.

    Linux: ``$XDG_CACHE_HOME`` or ``~/.cache``; macOS: ``~/Library/Caches``; Windows: ``%LOCALAPPDATA%``.
    """
    return platformdirs.user_cache_path("corstrace", appauthor=False) / TOKEN_FILE_NAME


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


# --- the rules ---------------------------------------------------------------------------------------


def token_problem(token: str) -> str | None:
    """Why ``token`` is too weak to guard the inspector, or None when it will do."""
    if len(token) < MIN_TOKEN_LENGTH:
        count = f"{len(token)} character{'' if len(token) == 1 else 's'}"
        return f"it is {count} long and the inspector needs at least {MIN_TOKEN_LENGTH}"
    if len(token) > MAX_TOKEN_LENGTH:
        return f"it is {len(token)} characters long, more than the {MAX_TOKEN_LENGTH} a handshake carries"
    if not all("\x21" <= char <= "\x7e" for char in token):
        return "it contains spaces, control or non-ASCII characters (it goes into a URL)"
    if len(set(token)) < MIN_DISTINCT_CHARACTERS:
        return f"it uses fewer than {MIN_DISTINCT_CHARACTERS} distinct characters"
    return None


def _posix() -> bool:
    return hasattr(os, "getuid")


def _owner_problem(what: str, info: os.stat_result, *, root_ok: bool) -> str | None:
    uid = os.getuid()
    if info.st_uid != uid and not (root_ok and info.st_uid == 0):
        return f"{what} is owned by another user (uid {info.st_uid}; you are uid {uid})"
    return None


def directory_problem(directory: Path) -> str | None:
    """Why a token kept in ``directory`` could be read or swapped by someone else, or None.

    The directory itself must be a real directory (not a symlink), owned by this user (or root) and
    writable by nobody else; above it, no directory may be world-writable without the sticky bit (anyone
    could rename the whole subtree away and put their own in its place). POSIX only: elsewhere, None.
    """
    if not _posix():
        return None
    try:
        info = os.lstat(directory)
    except OSError as exc:
        return f"{directory} cannot be inspected ({exc.strerror})"
    if stat.S_ISLNK(info.st_mode):
        return f"{directory} is a symlink"
    if not stat.S_ISDIR(info.st_mode):
        return f"{directory} is not a directory"
    problem = _owner_problem(str(directory), info, root_ok=True)
    if problem is not None:
        return problem
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{directory} is writable by its group or by everyone (mode {stat.S_IMODE(info.st_mode):o})"
    for ancestor in directory.resolve().parents:
        try:
            above = os.stat(ancestor)
        except OSError:
            continue
        if above.st_mode & stat.S_IWOTH and not above.st_mode & stat.S_ISVTX:
            return f"{ancestor} is writable by everyone without the sticky bit, so anyone can swap what is inside"
    return None


def token_file_problem(info: os.stat_result) -> str | None:
    """Why an opened token file (its ``fstat``) cannot be trusted, or None. POSIX only: elsewhere, None."""
    if not _posix():
        return None
    if not stat.S_ISREG(info.st_mode):
        return "it is not a regular file"
    problem = _owner_problem("it", info, root_ok=False)
    if problem is not None:
        return problem
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"other users may read or write it (mode {stat.S_IMODE(info.st_mode):o}; it must be 600)"
    return None


# --- reading and creating ----------------------------------------------------------------------------


class UntrustedTokenFile(Exception):
    """The token file exists but must not be used; the message says why."""


def read_token_file(path: Path) -> str | None:
    """The token stored at ``path``; None when there is no such file. Raises :class:`UntrustedTokenFile`."""
    problem = directory_problem(path.parent) if path.parent.exists() else None
    if problem is not None:
        raise UntrustedTokenFile(problem)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        if exc.errno == errno.ELOOP:
            raise UntrustedTokenFile("it is a symlink") from None
        raise UntrustedTokenFile(f"it cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as file:
        problem = token_file_problem(os.fstat(file.fileno()))
        if problem is not None:
            raise UntrustedTokenFile(problem)
        raw = file.read(MAX_TOKEN_LENGTH + 2)
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise UntrustedTokenFile("it does not hold a token (not ASCII)") from None
    problem = token_problem(token)
    if problem is not None:
        raise UntrustedTokenFile(f"the token in it is refused: {problem}")
    return token


def _create_token_file(path: Path) -> str:
    """Create ``path`` holding a new token, or read the one another worker created first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    problem = directory_problem(path.parent)
    if problem is not None:
        raise UntrustedTokenFile(problem)
    token = new_token()
    # Write a private temp file, then hard-link it into place: the link either creates the token file
    # complete or fails because another worker already did, so nobody reads half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(token + "\n")
        os.link(tmp, path)
    except FileExistsError:
        existing = read_token_file(path)  # another worker won the race; everyone must agree on its token
        if existing is None:  # pragma: no cover - it existed a moment ago and nobody deletes it
            raise
        return existing
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return token


_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(problem: str, message: str) -> None:
    """Log ``message`` once per process (every worker says it once; a reload says it again)."""
    with _warned_lock:
        if message in _warned:
            return
        _warned.add(message)
    with contextlib.suppress(Exception):
        logger.warning("corstrace.inspector_token", problem=problem, message=message)


def load_token() -> str:
    """The inspector token: ``CORSTRACE_INSPECTOR_TOKEN`` if strong enough, else the cached file (created on
    first use), else a token for this process only. Blocking I/O: see :func:`current_token`. Never raises."""
    explicit = os.environ.get(TOKEN_ENV, "").strip()
    path = token_path()
    if explicit:
        problem = token_problem(explicit)
        if problem is None:
            return explicit
        _warn_once(
            "weak_environment_token",
            f"{TOKEN_ENV} is ignored: {problem}. Whoever guesses the token reads the live stream of your "
            f"requests' headers, and any local program can try guesses. Generate one with {_GENERATE_HINT}. "
            f"Using the token file {path} instead.",
        )
    try:
        return read_token_file(path) or _create_token_file(path)
    except UntrustedTokenFile as exc:
        _warn_once(
            "untrusted_token_file",
            f"The inspector token file {path} is not used: {exc}. Another user could read or replace the token. "
            f"Delete it (and fix the folder) so corstrace recreates it privately, or set {TOKEN_ENV}. Until then "
            "this process uses a one-off token: other workers have their own, and open tabs stop working on "
            "restart.",
        )
    except OSError as exc:
        _warn_once(
            "no_token_file",
            f"The inspector token file {path} cannot be written ({exc.strerror or exc}). This process uses a "
            f"one-off token: other workers have their own, and open tabs stop working on restart. Set "
            f"{TOKEN_ENV} to share one.",
        )
    return new_token()


# --- the per-process cache -------------------------------------------------------------------------------

_cache: tuple[tuple[str, str], str] | None = None
_cache_lock = threading.Lock()
# The load started at import when a loop was already running (``uvicorn app:app`` imports the app inside it).
_inflight: threading.Thread | None = None


def _cache_key() -> tuple[str, str]:
    # What load_token() reads: a test or a launcher that changes either gets a fresh token.
    return os.environ.get(TOKEN_ENV, ""), str(token_path())


def cached_token() -> str | None:
    """The token, when it is loaded for the current environment; never touches the disk."""
    cache = _cache
    if cache is not None and cache[0] == _cache_key():
        return cache[1]
    return None


def current_token() -> str:
    """The token for the current environment: cached, else loaded now (blocking; see the module docstring)."""
    global _cache
    inflight = _inflight
    if inflight is not None:
        inflight.join()  # the import-time load: finished long before anyone asks, in practice
    key = _cache_key()
    with _cache_lock:
        if _cache is not None and _cache[0] == key:
            return _cache[1]
        token = load_token()
        _cache = (key, token)
        return token


async def current_token_async() -> str:
    """:func:`current_token` without blocking the event loop: a cache miss is loaded in a worker thread."""
    token = cached_token()
    if token is not None:
        return token
    return await anyio.to_thread.run_sync(current_token)


def _load_quietly() -> None:
    with contextlib.suppress(Exception):
        current_token()


def _in_event_loop() -> bool:
    try:
        anyio.lowlevel.current_token()
    except Exception:
        return False
    return True


def _preload() -> None:
    # At import: Starlette builds middleware lazily *inside* the running loop, and the inspector's URL (with
    # its token) is logged from there. Most imports happen before any loop runs; ``uvicorn app:app`` imports
    # the app inside its loop (before serving), so there the file is read by a thread instead.
    global _inflight
    if not inspector_enabled(None):
        return
    if _in_event_loop():
        _inflight = threading.Thread(target=_load_quietly, name="corstrace-inspector-token", daemon=True)
        _inflight.start()
    else:
        _load_quietly()


def _after_fork_in_child() -> None:
    # A fork while the import-time thread held the lock would leave it held forever in the child.
    global _cache_lock, _inflight
    _cache_lock = threading.Lock()
    _inflight = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
_preload()

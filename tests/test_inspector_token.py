"""The inspector token: where it is kept, which tokens and token files are trusted, and that refusals say why."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import platformdirs
import pytest
from structlog.testing import capture_logs

from corstrace._inspector import Hub, Inspector, load_token
from corstrace._inspector import token as token_module

posix_only = pytest.mark.skipif(not hasattr(os, "getuid"), reason="ownership and modes are POSIX")
STRONG = "Yk3vQ9-sP2xL7_mN4bR8tW1cZ6hJ0fD5"
OTHER_UID = 65534  # nobody


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache directory per test, found the way platformdirs finds it on Linux."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CORSTRACE_INSPECTOR_TOKEN", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured


def token_file(cache: Path) -> Path:
    return cache / "corstrace" / "inspector-token-v2"


def plant(cache: Path, content: str = STRONG, mode: int = 0o600) -> Path:
    """A token file as corstrace would have written it, then changed by the test."""
    path = token_file(cache)
    path.parent.mkdir(parents=True, mode=0o700)
    path.write_text(content + "\n")
    path.chmod(mode)
    return path


def warnings_of(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "corstrace.inspector_token"]


# --- where it lives ----------------------------------------------------------------------------------


def test_token_file_is_created_once_private_and_reused(cache: Path) -> None:
    """The first call creates a 0600 token file; later calls (other workers, reloads) read the same token."""
    first = load_token()
    path = token_file(cache)
    assert path.read_text().strip() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_token() == first
    assert len(first) >= 32


def test_cache_directory_is_the_one_platformdirs_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """macOS (~/Library/Caches) and Windows (%LOCALAPPDATA%) have their own place: platformdirs knows it."""
    elsewhere = tmp_path / "Library" / "Caches" / "corstrace"

    def user_cache_path(appname: str | None = None, appauthor: Any = None, **kwargs: Any) -> Path:
        assert (appname, appauthor) == ("corstrace", False)
        return elsewhere

    monkeypatch.setattr(platformdirs, "user_cache_path", user_cache_path)
    token = load_token()
    assert (elsewhere / "inspector-token-v2").read_text().strip() == token


def test_a_strong_environment_token_wins_and_no_file_is_written(cache: Path, logs: list[dict[str, Any]]) -> None:
    """CORSTRACE_INSPECTOR_TOKEN, when strong, is the token; nothing is written, nothing is said."""
    os.environ["CORSTRACE_INSPECTOR_TOKEN"] = STRONG
    assert load_token() == STRONG
    assert not token_file(cache).parent.exists()
    assert warnings_of(logs) == []


def test_unwritable_cache_still_yields_a_token_and_says_what_that_costs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs: list[dict[str, Any]]
) -> None:
    """Without a writable cache directory the token is per process, never missing, and the log says so."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert len(load_token()) >= 32
    (warning,) = warnings_of(logs)
    assert warning["problem"] == "no_token_file"
    assert "one-off token" in warning["message"]


def test_inspector_without_token_uses_the_process_token() -> None:
    """Inspector(token=None) uses the cached per-process token."""
    assert Inspector(Hub()).token == token_module.current_token()


def test_the_token_is_loaded_at_import_so_the_event_loop_never_reads_it() -> None:
    """Importing corstrace already loaded the token (Starlette builds middleware inside the running loop)."""
    import subprocess
    import sys

    code = "import corstrace; from corstrace._inspector import token; print(token.cached_token() is not None)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    assert done.stdout.strip() == "True"


# --- weak environment tokens ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("a", "it is 1 character long and the inspector needs at least 24"),
        ("correct-horse", "13 characters long"),
        ("x" * 40, "fewer than 8 distinct characters"),
        ("spaces are not allowed in it ok", "spaces, control or non-ASCII"),
        ("ünïcödé-tökén-ïs-nöt-äscïï-äll", "spaces, control or non-ASCII"),
        ("T" + "abcdefgh" * 70, "more than the 512"),
    ],
)
def test_a_weak_environment_token_is_refused_once_with_the_reason(
    cache: Path, logs: list[dict[str, Any]], value: str, why: str
) -> None:
    """A short, repetitive or odd CORSTRACE_INSPECTOR_TOKEN is ignored, the file token used, and the log says why."""
    os.environ["CORSTRACE_INSPECTOR_TOKEN"] = value
    token = load_token()
    assert token != value
    assert token == token_file(cache).read_text().strip()
    assert load_token() == token  # asked again (another middleware, a reload check): said only once
    (warning,) = warnings_of(logs)
    assert warning["log_level"] == "warning" and warning["problem"] == "weak_environment_token"
    assert why in warning["message"]
    assert "CORSTRACE_INSPECTOR_TOKEN is ignored" in warning["message"]
    assert "secrets.token_urlsafe(32)" in warning["message"]
    if len(value) > 8:
        assert value not in warning["message"]  # the rejected token itself is not logged


# --- untrusted token files ------------------------------------------------------------------------------


def assert_refused(cache: Path, logs: list[dict[str, Any]], planted: str | None, why: str) -> None:
    token = load_token()
    assert token != planted
    assert len(token) >= 32
    (warning,) = warnings_of(logs)
    assert warning["problem"] == "untrusted_token_file"
    assert why in warning["message"], warning["message"]
    assert "Delete it" in warning["message"]


@posix_only
def test_a_token_file_owned_by_another_user_is_refused(cache: Path, logs: list[dict[str, Any]]) -> None:
    """Someone else wrote that token (and can read it): not ours to trust."""
    path = plant(cache)
    os.chown(path, OTHER_UID, OTHER_UID)
    assert_refused(cache, logs, STRONG, f"owned by another user (uid {OTHER_UID}")
    assert path.read_text().strip() == STRONG  # untouched


@posix_only
@pytest.mark.parametrize("mode", [0o620, 0o602, 0o640, 0o604, 0o666])
def test_a_token_file_others_may_read_or_write_is_refused(cache: Path, logs: list[dict[str, Any]], mode: int) -> None:
    """Group or world access of any kind: another user could read the token or replace it."""
    plant(cache, mode=mode)
    assert_refused(cache, logs, STRONG, f"mode {mode:o}; it must be 600")


@posix_only
def test_a_token_file_that_is_a_symlink_is_refused(cache: Path, tmp_path: Path, logs: list[dict[str, Any]]) -> None:
    """A symlink may point anywhere, another user's file included."""
    target = tmp_path / "elsewhere"
    target.write_text(STRONG + "\n")
    target.chmod(0o600)
    path = token_file(cache)
    path.parent.mkdir(parents=True, mode=0o700)
    path.symlink_to(target)
    assert_refused(cache, logs, STRONG, "it is a symlink")


@posix_only
def test_a_token_folder_that_is_a_symlink_is_refused(cache: Path, tmp_path: Path, logs: list[dict[str, Any]]) -> None:
    """The corstrace folder itself must be a real directory."""
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (real / "inspector-token-v2").write_text(STRONG + "\n")
    (real / "inspector-token-v2").chmod(0o600)
    cache.mkdir()
    (cache / "corstrace").symlink_to(real)
    assert_refused(cache, logs, STRONG, "is a symlink")


@posix_only
@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_a_token_folder_others_may_write_is_refused(cache: Path, logs: list[dict[str, Any]], mode: int) -> None:
    """Whoever can write the folder can swap the file."""
    path = plant(cache)
    path.parent.chmod(mode)
    assert_refused(cache, logs, STRONG, f"writable by its group or by everyone (mode {mode:o})")


@posix_only
def test_a_token_folder_owned_by_another_user_is_refused(cache: Path, logs: list[dict[str, Any]]) -> None:
    """A folder someone else owns is theirs to change."""
    path = plant(cache)
    os.chown(path.parent, OTHER_UID, OTHER_UID)
    assert_refused(cache, logs, STRONG, f"owned by another user (uid {OTHER_UID}")


@posix_only
def test_a_cache_inside_a_world_writable_folder_without_sticky_bit_is_refused(
    cache: Path, logs: list[dict[str, Any]]
) -> None:
    """Anyone may rename the cache away and put their own in its place: the file is not trusted, not created."""
    cache.mkdir()
    cache.chmod(0o777)
    assert_refused(cache, logs, None, "is writable by everyone without the sticky bit")
    assert not token_file(cache).exists()


@posix_only
def test_a_cache_inside_a_sticky_world_writable_folder_is_fine(cache: Path, logs: list[dict[str, Any]]) -> None:
    """With the sticky bit (like /tmp) nobody else may rename what is ours: the token file is made and used."""
    cache.mkdir()
    cache.chmod(0o1777)
    token = load_token()
    assert token == token_file(cache).read_text().strip()
    assert warnings_of(logs) == []


@posix_only
def test_a_file_token_too_weak_to_use_is_refused(cache: Path, logs: list[dict[str, Any]]) -> None:
    """A hand-edited file holding a short token is refused like a short environment token."""
    plant(cache, content="short")
    assert_refused(cache, logs, "short", "the token in it is refused: it is 5 characters long")


@posix_only
def test_a_fifo_in_place_of_the_file_neither_hangs_nor_is_trusted(cache: Path, logs: list[dict[str, Any]]) -> None:
    """Opening is non-blocking and only a regular file counts."""
    path = token_file(cache)
    path.parent.mkdir(parents=True, mode=0o700)
    os.mkfifo(path, 0o600)
    assert_refused(cache, logs, None, "not a regular file")


def test_a_token_file_of_earlier_versions_is_not_reused(cache: Path) -> None:
    """Earlier versions sent the token of `inspector-token` in a cookie to every local port: it is not trusted."""
    old = cache / "corstrace" / "inspector-token"
    old.parent.mkdir(parents=True, mode=0o700)
    old.write_text(STRONG + "\n")
    old.chmod(0o600)
    assert load_token() != STRONG
    assert old.read_text().strip() == STRONG  # left alone for whichever older install still reads it


def test_the_rules_are_reusable_functions() -> None:
    """Other processes sharing the token (a collector for several workers) apply the same rules."""
    assert token_module.token_problem(STRONG) is None
    assert token_module.token_problem("a") is not None
    assert callable(token_module.directory_problem) and callable(token_module.token_file_problem)

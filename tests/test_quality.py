"""Lint and type checks run as tests, so the README's one test command covers them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


SOURCES = [name for name in ("corstrace", "tests", "examples", "bench") if (ROOT / name).is_dir()]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    """ruff is clean on the package, the tests, the examples and the benchmarks."""
    result = _run("ruff", "check", *SOURCES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_applied() -> None:
    """The code is formatted with ruff format."""
    result = _run("ruff", "format", "--check", *SOURCES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean_on_the_package() -> None:
    """mypy --strict passes on corstrace/."""
    result = _run("mypy", "--strict", "corstrace")
    assert result.returncode == 0, result.stdout + result.stderr

"""The ``corstrace`` command line: version, dispatch and usage errors."""

from __future__ import annotations

import io
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import corstrace
from corstrace import _term
from corstrace.__main__ import main

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=ROOT, capture_output=True, text=True, timeout=120)


def _console_script() -> Path | None:
    """The ``corstrace`` script installed for this interpreter (pip install -e . creates it), if any."""
    scripts = Path(sysconfig.get_path("scripts"))
    for name in ("corstrace", "corstrace.exe"):
        if (scripts / name).is_file():
            return scripts / name
    return None


def test_python_m_corstrace_prints_the_version() -> None:
    """`python -m corstrace --version` prints "corstrace <version>" and exits 0."""
    result = _run(sys.executable, "-m", "corstrace", "--version")
    assert (result.returncode, result.stdout) == (0, f"corstrace {corstrace.__version__}\n")


def test_console_script_prints_the_version() -> None:
    """The installed `corstrace` console script prints the version too."""
    script = _console_script()
    if script is None:
        pytest.skip("the corstrace console script is not installed (pip install -e .)")
    result = _run(str(script), "--version")
    assert (result.returncode, result.stdout) == (0, f"corstrace {corstrace.__version__}\n")


def test_main_returns_zero_for_version(capsys: pytest.CaptureFixture[str]) -> None:
    """main(["--version"]) returns 0 instead of raising SystemExit."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"corstrace {corstrace.__version__}\n"


def test_unknown_subcommand_is_a_usage_error() -> None:
    """An unknown subcommand exits 2 with argparse's message and no traceback."""
    result = _run(sys.executable, "-m", "corstrace", "frobnicate")
    assert result.returncode == 2
    assert "invalid choice: 'frobnicate'" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """`corstrace` alone exits 2 and says a command is required."""
    assert main([]) == 2
    assert "required: COMMAND" in capsys.readouterr().err


def test_demo_rejects_an_out_of_range_port(capsys: pytest.CaptureFixture[str]) -> None:
    """`corstrace demo --api-port 70000` is a usage error, caught before anything starts."""
    assert main(["demo", "--api-port", "70000"]) == 2
    assert "not a port number" in capsys.readouterr().err


def test_help_lists_the_demo_command(capsys: pytest.CaptureFixture[str]) -> None:
    """`corstrace --help` exits 0 and lists `demo`."""
    assert main(["--help"]) == 0
    assert "demo" in capsys.readouterr().out


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_is_used_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A TTY without NO_COLOR gets ANSI colour."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert _term.wants_colour(_Tty()) is True


def test_no_color_turns_colour_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_COLOR (https://no-color.org) turns colour off even on a TTY."""
    monkeypatch.setenv("NO_COLOR", "1")
    assert _term.wants_colour(_Tty()) is False


def test_pipes_get_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """Output that is not a TTY (a pipe, a file) gets no colour."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert _term.wants_colour(io.StringIO()) is False


def test_paint_wraps_text_only_when_enabled() -> None:
    """paint() adds ANSI codes when enabled and returns the text untouched otherwise."""
    assert (_term.paint("x", "bold", "red", enabled=True), _term.paint("x", "red", enabled=False)) == (
        "\x1b[1;31mx\x1b[0m",
        "x",
    )

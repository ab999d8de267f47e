"""What reaches users: the wheel carries the inspector UI and the examples; an editable install finds them."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from corstrace import _demo

ROOT = Path(__file__).resolve().parent.parent


def _source_files(folder: str) -> list[str]:
    """Files under ROOT/folder as wheel-relative suffixes, leaving out Python's caches."""
    base = ROOT / folder
    return sorted(
        path.relative_to(base).as_posix()
        for path in base.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def _build(outdir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "build", "--wheel", "--outdir", str(outdir), *extra, str(ROOT)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `python -m build` makes from this tree."""
    outdir = tmp_path_factory.mktemp("dist")
    result = _build(outdir)
    if result.returncode != 0:
        # An isolated build installs hatchling from the index; offline, build with the local one.
        retry = _build(outdir, "--no-isolation")
        assert retry.returncode == 0, result.stdout + result.stderr + retry.stdout + retry.stderr
    (built,) = outdir.glob("corstrace-*.whl")
    return built


@pytest.fixture(scope="module")
def names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


@pytest.mark.slow
def test_wheel_carries_the_inspector_page(names: set[str]) -> None:
    """The wheel has corstrace/inspector_ui/index.html."""
    assert "corstrace/inspector_ui/index.html" in names


@pytest.mark.slow
def test_wheel_carries_every_inspector_ui_file(names: set[str]) -> None:
    """Every file under inspector_ui/ is in the wheel under corstrace/inspector_ui/."""
    missing = [name for name in _source_files("inspector_ui") if f"corstrace/inspector_ui/{name}" not in names]
    assert missing == []


@pytest.mark.slow
def test_wheel_carries_every_example_file(names: set[str]) -> None:
    """Every file under examples/ (app, frontend and its page) is in the wheel under corstrace/_examples/."""
    assert "corstrace/_examples/app.py" in names
    shipped = [name for name in _source_files("examples") if not name.startswith("screenshots/")]
    missing = [name for name in shipped if f"corstrace/_examples/{name}" not in names]
    assert missing == []


@pytest.mark.slow
def test_wheel_leaves_out_the_readme_screenshots(names: set[str]) -> None:
    """examples/screenshots/ holds the README's pictures: readers need them, installs do not."""
    assert [name for name in names if "screenshots" in name] == []


@pytest.mark.slow
def test_wheel_is_typed(names: set[str]) -> None:
    """The wheel has corstrace/py.typed, so type checkers use corstrace's annotations."""
    assert "corstrace/py.typed" in names


@pytest.mark.slow
def test_wheel_declares_the_corstrace_command(wheel: Path, names: set[str]) -> None:
    """The wheel's entry points install a `corstrace` command running corstrace.__main__:main."""
    (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(entry_points).decode()
    assert "corstrace = corstrace.__main__:main" in text


@pytest.mark.slow
def test_installed_wheel_finds_its_own_examples_and_ui(wheel: Path, tmp_path: Path) -> None:
    """Installed from the wheel (no checkout around), the demo and the inspector find their files."""
    target = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", str(target)]
    result = subprocess.run([*install, str(wheel)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    probe = (
        "import json, corstrace\n"
        "from corstrace import _demo\n"
        "from corstrace._inspector import resources\n"
        "_demo.load_example('app'); _demo.load_example('frontend')\n"
        "print(json.dumps([corstrace.__file__, str(_demo.examples_dir()), str(resources.ui_dir())]))\n"
    )
    # Run from tmp_path, with only the install on PYTHONPATH: this checkout must not be importable.
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "NO_COLOR": "1", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    package, examples, ui = (Path(p) for p in json.loads(result.stdout.splitlines()[-1]))
    assert package.parent == target / "corstrace"
    assert (examples, ui) == (target / "corstrace" / "_examples", target / "corstrace" / "inspector_ui")


def test_source_tree_examples_are_found() -> None:
    """From this checkout (as in an editable install) the demo uses examples/ in the source tree."""
    assert _demo.examples_dir() == ROOT / "examples"


def test_source_tree_inspector_ui_is_found() -> None:
    """From this checkout (as in an editable install) the inspector serves inspector_ui/ in the source tree."""
    try:
        from corstrace._inspector import resources
    except ImportError:
        pytest.skip("corstrace._inspector.resources does not exist yet (the inspector is not built)")
    assert resources.ui_dir() == ROOT / "inspector_ui"


def test_editable_install_finds_the_source_tree(tmp_path: Path) -> None:
    """The installed corstrace, imported from outside the checkout, locates examples/ and inspector_ui/ in it."""
    probe = (
        "import json, corstrace\n"
        "from corstrace import _demo\n"
        "from corstrace._inspector import resources\n"
        "print(json.dumps([corstrace.__file__, str(_demo.examples_dir()), str(resources.ui_dir())]))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    if "No module named 'corstrace'" in result.stderr:
        pytest.skip("corstrace is not installed (pip install -e .)")
    assert result.returncode == 0, result.stderr
    package, examples, ui = (Path(p) for p in json.loads(result.stdout.splitlines()[-1]))
    if package.parent != ROOT / "corstrace":
        pytest.skip(f"the installed corstrace is not an editable install of this checkout: {package}")
    assert (examples, ui) == (ROOT / "examples", ROOT / "inspector_ui")

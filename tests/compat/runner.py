"""Fetch a third-party suite's sdist, run its tests bare and wrapped, and compare the two runs.

Each run is a separate pytest process in the unpacked sdist, with the plugin in ``_plugin/`` loaded: the
wrapping is global monkeypatching, so bare and wrapped runs cannot share a process. Nothing here reaches the
network except ``pip download`` of the sdist, once per version (cached).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.compat.exclusions import EXCLUDED, KNOWN_BUGS, Exclusion, KnownBug
from tests.compat.suites import Suite

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = Path(__file__).resolve().parent / "_plugin"
# What corstrace alone sees on every request without an Origin in the runs with an injected Origin: a name
# that cannot resolve (RFC 2606), so no test's app could ever answer for it.
INJECTED_ORIGIN = "http://compat.invalid"
# A wrapped run of FastAPI's suite takes ~4 minutes here; a hung test must not hold CI for 90.
RUN_TIMEOUT = 1800.0


def default_cache() -> Path:
    """``$CORSTRACE_COMPAT_CACHE``, else ``$XDG_CACHE_HOME/corstrace-compat`` (``~/.cache/corstrace-compat``)."""
    explicit = os.environ.get("CORSTRACE_COMPAT_CACHE")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "corstrace-compat"


class CompatError(Exception):
    """The run could not be set up (no sdist, missing requirements): not a verdict on corstrace."""


def sdist(suite: Suite, cache: Path) -> Path:
    """The suite's sdist at the installed version, downloaded with pip on first use."""
    version = suite.installed_version()
    directory = cache / "sdists"
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{suite.distribution.replace('-', '_')}-{version}.tar.gz"
    found = [path for path in directory.glob("*.tar.gz") if path.name.lower() == name.lower()]
    if found:
        return found[0]
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--dest",
            scratch,
            f"{suite.distribution}=={version}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        archives = list(Path(scratch).glob("*.tar.gz"))
        if result.returncode != 0 or len(archives) != 1:
            raise CompatError(f"pip could not download the {suite.name} {version} sdist:\n{result.stderr.strip()}")
        target = directory / archives[0].name
        os.replace(archives[0], target)
    return target


def unpack(suite: Suite, cache: Path) -> Path:
    """The suite's tests and configuration, unpacked once per version, without its package (see Suite)."""
    archive = sdist(suite, cache)
    target = cache / "src" / f"{suite.name}-{suite.installed_version()}"
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{suite.name}-"))
    try:
        with tarfile.open(archive) as tar:
            members = []
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if len(parts) >= 2 and parts[1] in suite.keep and (member.isfile() or member.isdir()):
                    member.name = str(Path(*parts[1:]))
                    members.append(member)
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12: refuse links and paths out of the tree
                tar.extractall(scratch, members=members, filter="data")
            else:  # pragma: no cover - older Pythons; the sdist comes from PyPI by pinned version
                tar.extractall(scratch, members=members)
        (scratch / ".complete").write_text(archive.name + "\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


@dataclass(slots=True)
class Run:
    suite: str
    mode: str
    inspector: str
    seconds: float
    returncode: int
    tests: dict[str, dict[str, Any]]
    outside_tests: dict[str, Any]
    # Wrapped runs: apps wrapped, and scopes that reached corstrace by type ("http", "http_with_origin", ...).
    traced: dict[str, int]
    output_tail: str
    # Whether corstrace saw an injected Origin on every request (run(inject_origin=...)).
    injected: bool = False
    # "name==version" of every installed distribution, as the run's process saw them.
    distributions: tuple[str, ...] = ()

    @property
    def variant(self) -> str:
        return f"inspector {self.inspector}" + (", injected Origin" if self.injected else "")

    def passed(self) -> set[str]:
        return {nodeid for nodeid, entry in self.tests.items() if entry["outcome"] == "passed"}

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for entry in self.tests.values():
            counts[entry["outcome"]] = counts.get(entry["outcome"], 0) + 1
        return dict(sorted(counts.items()))


def run(
    suite: Suite,
    mode: str,
    *,
    inspector: str = "on",
    cache: Path | None = None,
    pytest_args: tuple[str, ...] = (),
    jobs: int = 0,
    log: Path | None = None,
    workdir: Path | None = None,
    inject_origin: str | None = None,
) -> Run:
    """One pytest run of ``suite`` in ``mode`` ("bare" or "wrapped"), its report parsed.

    ``workdir`` runs the tests found there instead of the suite's unpacked sdist (the runner's own tests).
    ``inject_origin``: corstrace alone sees this Origin on every request without one (see the plugin).
    """
    cache = cache or default_cache()
    workdir = workdir or unpack(suite, cache)
    results = cache / "results"
    results.mkdir(parents=True, exist_ok=True)
    label = f"{suite.name}-{mode}" + (f"-inspector-{inspector}" if mode == "wrapped" else "")
    if inject_origin and mode == "wrapped":
        label += "-injected-origin"
    report = results / f"{label}.json"
    report.unlink(missing_ok=True)
    env = {name: value for name, value in os.environ.items() if not name.startswith(("PYTEST_", "CORSTRACE_"))}
    env.update(
        CORSTRACE_COMPAT_MODE=mode,
        CORSTRACE_COMPAT_INSPECTOR=inspector,
        CORSTRACE_COMPAT_ROOT=str(ROOT),
        CORSTRACE_COMPAT_REPORT=str(report),
        CORSTRACE_COMPAT_INJECT_ORIGIN=inject_origin or "",
        # The plugin module only: the checkout itself must not be importable, its `tests` would shadow theirs.
        PYTHONPATH=str(PLUGIN_DIR),
        # A fresh cache directory per run, like a new machine: the inspector creates its token file there.
        XDG_CACHE_HOME=tempfile.mkdtemp(prefix=f"{label}-xdg-", dir=results),
        PYTHONDONTWRITEBYTECODE="1",
    )
    # The suite's default paths, unless the caller named tests of its own (a path, or path::test).
    named = any((workdir / arg.split("::")[0]).exists() for arg in pytest_args if not arg.startswith("-"))
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "corstrace_compat",
        "-p",
        "no:cacheprovider",
        # Not the suites' own plugin; where installed it refuses to run beside pytest-xdist.
        "-p",
        "no:benchmark",
        "-q",
        "--no-header",
        "-o",
        "console_output_style=classic",
        *suite.pytest_args,
        *(("-n", str(jobs)) if jobs else ()),
        *pytest_args,
        *(() if named else suite.paths),
    ]
    started = time.monotonic()
    log = log or results / f"{label}.log"
    with open(log, "w") as output:
        try:
            process = subprocess.run(
                command, cwd=workdir, env=env, stdout=output, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT
            )
            returncode = process.returncode
        except subprocess.TimeoutExpired:
            returncode = -1
    seconds = round(time.monotonic() - started, 1)
    shutil.rmtree(env["XDG_CACHE_HOME"], ignore_errors=True)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
    if not report.exists():
        raise CompatError(f"{label}: pytest wrote no report (exit {returncode}); its output ended:\n{tail}")
    data = json.loads(report.read_text())
    injected = bool(inject_origin) and mode == "wrapped"
    return Run(
        suite.name,
        mode,
        inspector,
        seconds,
        returncode,
        data["tests"],
        data["outside_tests"],
        data["traced"],
        tail,
        injected,
        tuple(data.get("distributions", ())),
    )


def _failure_text(entry: dict[str, Any]) -> str:
    return str(entry.get("longrepr", ""))


def _internal_errors(entry: dict[str, Any]) -> list[str]:
    """corstrace.internal_error events and blocking calls made by corstrace, each as repr and traceback."""
    errors = entry.get("internal_errors", []) + entry.get("blocking_calls", [])
    return [error["error"] + "\n" + error["traceback"] for error in errors]


def _known(bugs: tuple[KnownBug, ...], text: str) -> KnownBug | None:
    for bug in bugs:
        if bug.matches(text):
            return bug
    return None


@dataclass(slots=True)
class Comparison:
    """What a wrapped run did to the tests that passed bare."""

    suite: str
    variant: str
    passed_bare: int
    passed_wrapped: int
    # Tests that passed bare, failed wrapped, and are neither excluded nor a known bug: new corstrace bugs.
    regressions: dict[str, str] = field(default_factory=dict)
    # corstrace.internal_error logged during a test (corstrace lost an event), or a blocking call corstrace made
    # in the loop, not a known bug.
    internal_errors: dict[str, list[str]] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    # Known bug name -> the tests it broke (failures and internal errors).
    known: dict[str, list[str]] = field(default_factory=dict)
    # Known bugs for this inspector setting that no test showed: fixed, so their entries must go.
    fixed: list[str] = field(default_factory=list)
    # Excluded tests that passed wrapped after all (information: the exclusion may be dropped).
    exclusions_not_needed: list[str] = field(default_factory=list)
    traced: dict[str, int] = field(default_factory=dict)
    # Distributions installed, removed or changed between the bare and the wrapped run ("-old", "+new").
    environment_changed: list[str] = field(default_factory=list)

    @property
    def wrapping_worked(self) -> bool:
        """Whether corstrace was really there: apps were wrapped and HTTP requests went through it."""
        return self.traced.get("apps", 0) > 0 and self.traced.get("http", 0) > 0

    @property
    def ok(self) -> bool:
        return self.wrapping_worked and not (
            self.regressions or self.internal_errors or self.fixed or self.environment_changed
        )

    def summary(self) -> str:
        lines = [
            f"{self.suite} ({self.variant}): {self.passed_bare} passed bare, "
            f"{self.passed_wrapped} passed wrapped; {len(self.excluded)} excluded; "
            f"{len({test for tests in self.known.values() for test in tests})} broken by {len(self.known)} known "
            "bug(s); "
            f"{len(self.regressions)} new failure(s); {len(self.internal_errors)} test(s) with an unknown "
            "corstrace.internal_error or blocking call",
            f"  traced: {self.traced.get('apps', 0)} apps wrapped; requests through corstrace: "
            + ", ".join(f"{name} {count}" for name, count in sorted(self.traced.items()) if name != "apps"),
        ]
        if self.environment_changed:
            lines.append(
                "  ENVIRONMENT CHANGED between the bare and the wrapped run (someone installed packages?); the "
                "runs are not comparable, run again: " + ", ".join(self.environment_changed)
            )
        if not self.wrapping_worked:
            lines.append(
                "  HARNESS: no app was wrapped or no request reached corstrace; the wrapped run proves nothing"
            )
        for name, tests in sorted(self.known.items()):
            lines.append(f"  known bug {name}: {len(tests)} test(s), e.g. {tests[0]}")
        for name in self.fixed:
            lines.append(f"  FIXED? known bug {name} showed in no test: remove it from tests/compat/exclusions.py")
        for nodeid, text in sorted(self.regressions.items()):
            lines.append(f"  NEW FAILURE {nodeid}\n" + _indent(_excerpt(text)))
        for nodeid, errors in sorted(self.internal_errors.items()):
            lines.append(f"  INTERNAL ERROR in {nodeid}\n" + _indent(_excerpt(errors[0])))
        for nodeid in self.exclusions_not_needed:
            lines.append(f"  (excluded test passed wrapped: {nodeid})")
        return "\n".join(lines)


def _excerpt(text: str, limit: int = 40) -> str:
    lines = text.strip().splitlines()
    return "\n".join(lines[-limit:])


def _indent(text: str) -> str:
    return "\n".join("      " + line for line in text.splitlines())


def compare(
    bare: Run,
    wrapped: Run,
    *,
    excluded: tuple[Exclusion, ...] = EXCLUDED,
    known_bugs: tuple[KnownBug, ...] = KNOWN_BUGS,
    selected: bool = False,
) -> Comparison:
    """Hold ``wrapped`` to the rule: every test that passed ``bare`` passes wrapped, and logs no internal error.

    ``selected`` says only part of the suite ran (``-k``, a path): a known bug that showed nowhere is then not
    taken as fixed.
    """
    exclusions = [item for item in excluded if item.suite == bare.suite]
    result = Comparison(bare.suite, wrapped.variant, len(bare.passed()), len(wrapped.passed()))
    result.traced = dict(wrapped.traced)
    if bare.distributions and wrapped.distributions:
        before, after = set(bare.distributions), set(wrapped.distributions)
        result.environment_changed = sorted(f"-{d}" for d in before - after) + sorted(f"+{d}" for d in after - before)
    shown: set[str] = set()
    for nodeid in sorted(bare.passed()):
        entry = wrapped.tests.get(nodeid, {"outcome": "missing", "longrepr": "not run in the wrapped run"})
        covering = [item for item in exclusions if item.covers(nodeid, wrapped.injected)]
        if entry["outcome"] != "passed":
            text = _failure_text(entry) + "\n".join(_internal_errors(entry))
            excuse = next((item for item in covering if item.excuses(_failure_text(entry))), None)
            if excuse is not None and not _internal_errors(entry):
                result.excluded[nodeid] = excuse.reason
                continue
            bug = _known(known_bugs, text)
            if bug is not None:
                result.known.setdefault(bug.name, []).append(nodeid)
                shown.add(bug.name)
            else:
                result.regressions[nodeid] = f"[{entry['outcome']}] " + text
            continue
        if any(not item.test.endswith("/") for item in covering):
            result.exclusions_not_needed.append(nodeid)
    # Internal errors count in every test, passed or not, and outside tests (session fixtures, shutdown).
    entries = list(wrapped.tests.items()) + [("<outside any test>", wrapped.outside_tests)]
    for nodeid, entry in entries:
        for error in _internal_errors(entry):
            bug = _known(known_bugs, error)
            if bug is not None:
                shown.add(bug.name)
                tests = result.known.setdefault(bug.name, [])
                if nodeid not in tests:
                    tests.append(nodeid)
            elif nodeid in result.excluded:
                continue
            else:
                result.internal_errors.setdefault(nodeid, []).append(error)
    if not selected:
        label = f"{bare.suite}:{wrapped.inspector}" + ("+origin" if wrapped.injected else "")
        result.fixed = [bug.name for bug in known_bugs if label in bug.expected_in and bug.name not in shown]
    return result

"""The third-party test suites the compatibility run drives, and how each is laid out in its sdist."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version


@dataclass(frozen=True, slots=True)
class Suite:
    """One project whose own tests run bare and then with corstrace around every app they build."""

    name: str
    # The distribution on PyPI; its sdist at the installed version is what runs.
    distribution: str
    # The import package inside the sdist: left out, so the tests import the installed copy (the one patched).
    package: str
    # Top-level entries of the sdist the tests need (pytest configuration, the tests, modules they import).
    keep: tuple[str, ...]
    # Arguments added to every pytest run of this suite.
    pytest_args: tuple[str, ...] = ()
    # What pytest collects when the caller names no path of its own.
    paths: tuple[str, ...] = ("tests",)
    # The suite's test requirements, as the suite's own pyproject lists them (dependency groups), reduced to
    # what its tests import. pyproject.toml's `test` extra installs them; `missing()` names any not installed.
    requirements: tuple[str, ...] = ()

    def installed_version(self) -> str:
        return version(self.distribution)


def _installed(distribution: str) -> bool:
    try:
        version(distribution)
    except PackageNotFoundError:
        return False
    return True


def missing(suite: Suite) -> list[str]:
    """The suite's test requirements that are not installed (names only; versions are pip's business)."""
    names = [requirement.split("[")[0].split(">")[0].split("=")[0].split("<")[0] for requirement in suite.requirements]
    return [name for name in names if not _installed(name)]


STARLETTE = Suite(
    name="starlette",
    distribution="starlette",
    package="starlette",
    keep=("pyproject.toml", "tests"),
    # Starlette's dev group: starlette[full] (itsdangerous, jinja2, python-multipart, pyyaml, opentelemetry-api,
    # httpx2), blockbuster (its autouse fixture fails any blocking call in the event loop), trio (the anyio
    # tests run on both backends).
    requirements=(
        "itsdangerous",
        "jinja2",
        "python-multipart",
        "pyyaml",
        "opentelemetry-api",
        "opentelemetry-sdk",
        "httpx2",
        "blockbuster",
        "trio",
    ),
)

FASTAPI = Suite(
    name="fastapi",
    distribution="fastapi",
    package="fastapi",
    # The tests import the documentation's examples (docs_src) and a few helper scripts.
    keep=("pyproject.toml", "tests", "docs_src", "scripts"),
    # Not scripts/tests: those test the documentation tooling (and need its requirements), not FastAPI.
    # FastAPI's `tests` group, less coverage, type checkers, benchmark and reporting plugins.
    requirements=(
        "inline-snapshot",
        "dirty-equals",
        "pytest-timeout",
        "pytest-xdist",
        "sqlmodel",
        "pyjwt",
        "pwdlib",
        "argon2-cffi",
        "a2wsgi",
        "email-validator",
        "flask",
        "strawberry-graphql",
        "sentry-sdk",
        "logfire",
        "typer",
        "pyyaml",
        "python-multipart",
        "pydantic-settings",
        "opentelemetry-sdk",
        "opentelemetry-exporter-otlp-proto-http",
        "opentelemetry-instrumentation-fastapi",
    ),
)

SUITES = {suite.name: suite for suite in (STARLETTE, FASTAPI)}

"""The compatibility run's own machinery: the plugin really wraps every app, and compare() applies the rule."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.compat.exclusions import Exclusion, KnownBug
from tests.compat.runner import Run, compare, run
from tests.compat.suites import Suite

FAKE_SUITE_TESTS = """
import httpx2
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from corstrace import CORSTraceMiddleware

WRAPPED = __import__("os").environ["CORSTRACE_COMPAT_MODE"] == "wrapped"


async def raw(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"raw"})


def index(request):
    return PlainTextResponse("ok")


def test_starlette_app_is_wrapped_once_outermost():
    app = Starlette(routes=[Route("/", index), Mount("/sub", app=Starlette(routes=[Route("/", index)]))])
    client = TestClient(app)
    assert client.get("/", headers={"origin": "http://localhost:3000"}).text == "ok"
    assert client.get("/sub/").text == "ok"
    assert isinstance(app.middleware_stack, CORSTraceMiddleware) is WRAPPED
    assert (client.app is app) and not isinstance(app.middleware_stack.app, CORSTraceMiddleware)


def test_fastapi_app_is_wrapped():
    app = FastAPI()
    app.get("/")(lambda: {"ok": True})
    assert TestClient(app).get("/").json() == {"ok": True}
    assert isinstance(app.middleware_stack, CORSTraceMiddleware) is WRAPPED


def test_raw_app_given_to_test_client_is_wrapped():
    client = TestClient(raw)
    assert client.get("/").text == "raw"
    assert isinstance(client.app, CORSTraceMiddleware) is WRAPPED


def test_asgi2_app_given_to_test_client_is_wrapped_after_adaptation():
    def asgi2(scope):
        async def instance(receive, send):
            await raw(scope, receive, send)

        return instance

    client = TestClient(asgi2)
    assert client.get("/").text == "raw"
    assert isinstance(client.app, CORSTraceMiddleware) is WRAPPED


@pytest.mark.anyio
async def test_raw_app_given_to_asgi_transport_is_wrapped():
    transport = httpx2.ASGITransport(app=raw)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/")).text == "raw"
    assert isinstance(transport.app, CORSTraceMiddleware) is WRAPPED


@pytest.fixture
def anyio_backend():
    return "asyncio"
"""


@pytest.fixture(scope="module")
def fake_suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fake-suite")
    (root / "pyproject.toml").write_text('[tool.pytest.ini_options]\naddopts = "--strict-markers"\n')
    (root / "tests").mkdir()
    (root / "tests" / "__init__.py").write_text("")
    (root / "tests" / "test_fake.py").write_text(textwrap.dedent(FAKE_SUITE_TESTS))
    return root


FAKE = Suite(name="fake", distribution="starlette", package="starlette", keep=("tests",))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["bare", "wrapped"])
def test_the_plugin_wraps_every_kind_of_app_only_when_wrapped(mode: str, fake_suite: Path, tmp_path: Path) -> None:
    """Starlette, FastAPI, raw, ASGI 2 and ASGITransport apps: wrapped exactly once in wrapped runs, never bare."""
    result = run(FAKE, mode, cache=tmp_path, workdir=fake_suite)
    assert {nodeid: entry["outcome"] for nodeid, entry in result.tests.items()} == {
        f"tests/test_fake.py::{name}": "passed"
        for name in (
            "test_starlette_app_is_wrapped_once_outermost",
            "test_fastapi_app_is_wrapped",
            "test_raw_app_given_to_test_client_is_wrapped",
            "test_asgi2_app_given_to_test_client_is_wrapped_after_adaptation",
            "test_raw_app_given_to_asgi_transport_is_wrapped",
        )
    }, result.output_tail
    assert any(dist.lower().startswith("starlette==") for dist in result.distributions)
    if mode == "wrapped":
        # Two Starlette apps (one mounted), FastAPI, raw, ASGI 2, ASGITransport.
        assert result.traced["apps"] == 6
        assert result.traced["http_with_origin"] == 1
    else:
        assert result.traced == {}


def _run(mode: str, tests: dict[str, dict[str, Any]], **extra: Any) -> Run:
    traced = {"apps": 1, "http": 1} if mode == "wrapped" else {}
    return Run("fake", mode, "on", 1.0, 0, tests, {"events": {}, "internal_errors": []}, traced, "")


PASSED = {"outcome": "passed"}
BUG = KnownBug("the-bug", "a known bug", r"KnownError", "tests/x.py::test_x", expected_in=("fake:on",))


def test_a_test_failing_only_wrapped_is_a_new_failure() -> None:
    bare = _run("bare", {"t::a": PASSED, "t::b": PASSED, "t::c": {"outcome": "failed"}})
    wrapped = _run("wrapped", {"t::a": PASSED, "t::b": {"outcome": "failed", "longrepr": "boom"}, "t::c": PASSED})
    result = compare(bare, wrapped, excluded=(), known_bugs=())
    assert list(result.regressions) == ["t::b"] and not result.ok


def test_a_test_missing_from_the_wrapped_run_is_a_new_failure() -> None:
    result = compare(_run("bare", {"t::a": PASSED}), _run("wrapped", {}), excluded=(), known_bugs=())
    assert list(result.regressions) == ["t::a"]


def test_excluded_and_known_bug_failures_are_not_new_and_a_vanished_known_bug_is_flagged() -> None:
    bare = _run("bare", {"t::a": PASSED, "t::b": PASSED})
    wrapped = _run(
        "wrapped", {"t::a": {"outcome": "failed", "longrepr": "x"}, "t::b": {"outcome": "failed", "longrepr": "y"}}
    )
    excluded = (Exclusion("fake", "t::a", "no headers key"),)
    result = compare(bare, wrapped, excluded=excluded, known_bugs=(BUG,))
    assert result.excluded == {"t::a": "no headers key"}
    assert list(result.regressions) == ["t::b"]
    assert result.fixed == ["the-bug"]
    wrapped.tests["t::b"]["longrepr"] = "KnownError: still there"
    result = compare(bare, wrapped, excluded=excluded, known_bugs=(BUG,))
    assert result.ok and result.known == {"the-bug": ["t::b"]} and result.fixed == []


def test_an_injected_only_exclusion_excuses_only_its_failure_and_only_with_an_injected_origin() -> None:
    span_events = {"outcome": "failed", "longrepr": "    def test_x():\n>       assert span.events == ()\nE  assert 1"}
    other = {"outcome": "failed", "longrepr": ">       assert response.status_code == 200\nE  assert 500 == 200"}
    bare = _run("bare", {"tests/telemetry/t.py::a": PASSED, "tests/telemetry/t.py::b": PASSED})
    wrapped = _run("wrapped", {"tests/telemetry/t.py::a": span_events, "tests/telemetry/t.py::b": other})
    excluded = (Exclusion("fake", "tests/telemetry/", "span events", True, r"(?m)^>\s+assert span\.events"),)
    assert list(compare(bare, wrapped, excluded=excluded, known_bugs=()).regressions) == [
        "tests/telemetry/t.py::a",
        "tests/telemetry/t.py::b",
    ]
    wrapped.injected = True
    result = compare(bare, wrapped, excluded=excluded, known_bugs=())
    assert result.excluded == {"tests/telemetry/t.py::a": "span events"}
    assert list(result.regressions) == ["tests/telemetry/t.py::b"]


def test_an_internal_error_in_a_passing_test_fails_the_run() -> None:
    bare = _run("bare", {"t::a": PASSED})
    error = {"error": "TypeError('unhashable')", "traceback": "..."}
    wrapped = _run("wrapped", {"t::a": {"outcome": "passed", "internal_errors": [error]}})
    result = compare(bare, wrapped, excluded=(), known_bugs=())
    assert list(result.internal_errors) == ["t::a"] and not result.ok


def test_a_blocking_call_by_corstrace_fails_the_run() -> None:
    bare = _run("bare", {"t::a": PASSED})
    call = {"error": "BlockingError('os.stat')", "traceback": "..."}
    wrapped = _run("wrapped", {"t::a": {"outcome": "passed", "blocking_calls": [call]}})
    assert not compare(bare, wrapped, excluded=(), known_bugs=()).ok


def test_a_wrapped_run_that_wrapped_nothing_fails() -> None:
    """If the patching ever stops working the wrapped run is a second bare run: that must not pass."""
    bare = _run("bare", {"t::a": PASSED})
    wrapped = _run("wrapped", {"t::a": PASSED})
    wrapped.traced = {}
    result = compare(bare, wrapped, excluded=(), known_bugs=())
    assert not result.wrapping_worked and not result.ok


def test_a_package_installed_between_the_runs_makes_them_incomparable() -> None:
    """The machine is shared: a bare and a wrapped run on different environments prove nothing either way."""
    bare = _run("bare", {"t::a": PASSED})
    wrapped = _run("wrapped", {"t::a": {"outcome": "failed", "longrepr": "ModuleNotFoundError"}})
    bare.distributions = ("python-multipart==0.0.34",)
    wrapped.distributions = ("multipart==2.0.1", "python-multipart==0.0.34")
    result = compare(bare, wrapped, excluded=(), known_bugs=())
    assert result.environment_changed == ["+multipart==2.0.1"] and not result.ok
    assert "ENVIRONMENT CHANGED" in result.summary()

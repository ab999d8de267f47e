from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from tests.support import CHROMIUM_FLAGS, chromium_path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Debian Chromium, shared by one test module; skips when none is installed.

    Module scope, not session: Playwright's sync API keeps an event loop running on the main thread
    while it is open, and the anyio tests of other modules cannot start their own loop meanwhile.
    A module must therefore not mix browser tests with async tests.
    """
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium); .ci/run installs it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the test extra installs it
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context and page per test (no shared cookies or preflight cache)."""
    context = browser.new_context()
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    """Put structlog's configuration back after a test that configures it (e.g. for production)."""
    from corstrace import _log as _events

    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.configure(**saved)
        # A logger cached on first use (cache_logger_on_first_use) must not outlive its configuration.
        _events._configured.__dict__.pop("bind", None)

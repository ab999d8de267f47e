"""The demo frontend (examples/frontend) in real headless Chromium: its console shows only what the demo is about."""

from __future__ import annotations

from typing import Any

import pytest

from corstrace._demo import load_example
from tests.support import run_server

pytestmark = pytest.mark.browser


def test_the_demo_page_loads_without_a_single_console_error(page: Any) -> None:
    """No 404 for a favicon (or anything else): the demo tells users to read the console, it must be clean."""
    frontend = load_example("frontend")
    messages: list[str] = []
    failed: list[str] = []
    page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    with run_server(frontend.app) as base:
        icons: list[Any] = []
        page.on("response", lambda response: icons.append(response) if "favicon" in response.url else None)
        page.goto(base + "/", wait_until="networkidle")
        assert [message for message in messages if message.startswith(("error", "warning"))] == []
        assert failed == []
        assert [(icon.status, icon.headers["content-type"]) for icon in icons] == [(200, "image/svg+xml")]

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.support import run_server


def _hello(request: Any) -> PlainTextResponse:
    return PlainTextResponse("hello")


@pytest.mark.browser
def test_chromium_fetches_from_a_real_uvicorn_server(page: Any) -> None:
    """The browser harness works: Chromium loads a page served by a real uvicorn on loopback."""
    app = Starlette(routes=[Route("/", _hello)])
    with run_server(app) as url:
        page.goto(url + "/")
        assert page.content().count("hello") == 1

"""The demo frontend: one static page whose buttons fire the classic cross-origin requests.

Run it on its own with::

    uvicorn examples.frontend:app --port 3000

then open http://localhost:3000/ (``localhost``, not ``127.0.0.1``: the page must be on a different
origin from the API for the requests to be cross-origin). The page asks ``/config.js`` where the API
is; ``?api=http://127.0.0.1:8001`` in the page's URL overrides it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "frontend"
DEFAULT_API_URL = "http://127.0.0.1:8000"


def config_js(request: Request) -> Response:
    """Tell the page where the API and the inspector are; read per request so env changes apply."""
    api_url = os.environ.get("CORSTRACE_DEMO_API_URL", DEFAULT_API_URL).rstrip("/")
    inspector_url = os.environ.get("CORSTRACE_DEMO_INSPECTOR_URL", f"{api_url}/_corstrace/")
    config = {"apiUrl": api_url, "inspectorUrl": inspector_url}
    body = f"window.CORSTRACE_DEMO = {json.dumps(config)};\n"
    # no-store: restarting the demo on other ports must not leave the browser with a stale API URL.
    return Response(body, media_type="text/javascript", headers={"Cache-Control": "no-store"})


app = Starlette(
    routes=[
        Route("/config.js", config_js),
        Mount("/", StaticFiles(directory=STATIC_DIR, html=True)),
    ]
)

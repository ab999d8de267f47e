"""What corstrace says once, when the app starts: the configuration lint and where the inspector is."""

from __future__ import annotations

import os
from collections.abc import Sequence

from corstrace import _config
from corstrace._inspector.hub import Hub
from corstrace._inspector.server import Inspector
from corstrace._log import logger


def lint(stack: _config.Stack, hub: Hub | None) -> None:
    """Log the stack's configuration findings (``cors.lint``) and hand them to the inspector."""
    findings = _config.lint(stack.topology)
    for finding in findings:
        logger.warning("cors.lint", **finding.as_dict())
    if hub is not None:
        hub.set_lint([finding.as_dict() for finding in findings])


def announce(inspector: Inspector, argv: Sequence[str]) -> None:
    """Log ``corstrace.inspector``: the inspector's URL, complete when the command line tells the port."""
    host, port = cli_address(argv)
    url = inspector.url(host, port) if port else None
    path = inspector.url("HOST", 0).split("HOST:0", 1)[-1]
    shown = url or f"http://127.0.0.1:<port>{path}"
    logger.info("corstrace.inspector", url=url, path=path, message=f"open {shown}")


def cli_address(argv: Sequence[str]) -> tuple[str, int | None]:
    """The host and port ``uvicorn``/``fastapi`` were started with, read from the command line.

    The lifespan scope carries no address; for the usual ``uvicorn app:app --port 8001`` the command line
    does. Any other launcher (``uvicorn.run(...)``, gunicorn) gives None: better no URL than a wrong one.
    """
    if not argv or os.path.basename(argv[0]) not in ("uvicorn", "fastapi") or {"--uds", "--fd"} & set(argv):
        return "127.0.0.1", None
    host, port = "127.0.0.1", 8000
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag == "--host":
            host = value
        elif flag == "--port" and value.isdigit():
            port = int(value)
    for arg in argv:
        if arg.startswith("--host="):
            host = arg.split("=", 1)[1]
        elif arg.startswith("--port=") and arg.split("=", 1)[1].isdigit():
            port = int(arg.split("=", 1)[1])
    return host, port

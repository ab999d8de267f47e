"""The ``corstrace`` command line (also ``python -m corstrace``).

Subcommands:

- ``demo``: the example API, the example frontend and the inspector, in one process.
- ``check``: send what Chromium sends for one cross-origin request to any server, and judge it.
- ``explain``: explain every cross-origin request in a HAR file exported from DevTools.
- ``inspector``: one inspector page for every worker and app (the collector they publish to).

Exit codes: 0 allowed, 1 blocked (``check``/``explain``), 2 usage, network or file errors, and 141
(128 + SIGPIPE, what a shell reports for ``yes | head -1``) when the reader of the output went away.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from corstrace._version import __version__

# A closed pipe ends a command-line tool with SIGPIPE; Python ignores the signal, so say it with the status.
BROKEN_PIPE_EXIT = 128 + getattr(signal, "SIGPIPE", 13)


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0 meaning "pick a free one"."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0-65535): {port}")
    return port


def _run_demo(args: argparse.Namespace) -> int:
    # Imported here so `corstrace --version` does not pay for uvicorn, FastAPI and the examples.
    from corstrace._demo import run_demo

    return run_demo(host=args.host, api_port=args.api_port, frontend_port=args.frontend_port)


def _add_demo_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="run the example API, its frontend and the inspector",
        description=(
            "Run a FastAPI API with a deliberately imperfect CORS setup, a frontend page on another "
            "origin whose buttons fire the classic cross-origin requests, and the corstrace inspector. "
            "Prints the three URLs; Ctrl-C stops everything."
        ),
    )
    demo.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    demo.add_argument(
        "--api-port", type=_port, default=8000, help="API port, 0 for any free one (default: %(default)s)"
    )
    demo.add_argument(
        "--frontend-port", type=_port, default=3000, help="frontend port, 0 for any free one (default: %(default)s)"
    )
    demo.set_defaults(handler=_run_demo)


def _run_check(args: argparse.Namespace) -> int:
    from corstrace._check_cli import run

    return run(args)


def _add_check_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from corstrace._check_cli import add_arguments

    check = commands.add_parser(
        "check",
        help="send a browser's cross-origin request to a server and say whether the browser allows it",
        description=(
            "Send what Chromium sends for fetch(URL) from a page at ORIGIN: the preflight when one is needed, "
            "then the actual request, following redirects hop by hop. Prints the verdict, the browser's console "
            "message, why, and the fix: the headers every leg's response must carry, verified by replaying the "
            "exchange. Exit code: 0 allowed, 1 blocked, 2 usage or network error (or the --timeout deadline)."
        ),
    )
    add_arguments(check)
    check.set_defaults(handler=_run_check)


def _run_explain(args: argparse.Namespace) -> int:
    from corstrace._har import run

    return run(args)


def _add_explain_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from corstrace._har import add_arguments

    explain = commands.add_parser(
        "explain",
        help="explain every cross-origin request in a HAR file exported from DevTools",
        description=(
            "Read a HAR exported from Chrome or Firefox DevTools (Network panel, 'Save all as HAR') and explain "
            "every cross-origin request in it: allowed or blocked, why, and what to change on the server. "
            "Exit code: 0 nothing blocked, 1 something blocked, 2 unreadable file."
        ),
    )
    add_arguments(explain)
    explain.set_defaults(handler=_run_explain)


def _run_inspector(args: argparse.Namespace) -> int:
    from corstrace._inspector.collector_cli import run

    return run(args)


def _add_inspector_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from corstrace._inspector.collector_cli import add_arguments

    inspector = commands.add_parser(
        "inspector",
        help="one inspector page for every worker and app: the collector they publish to",
        description=(
            "Serve the inspector page on a loopback port and collect the records of every worker process and app "
            "started with CORSTRACE_COLLECTOR=http://127.0.0.1:PORT (or CORSTraceMiddleware(collector=...)). "
            "Prints the page's URL; Ctrl-C stops it. Workers keep their records while it is down."
        ),
    )
    add_arguments(inspector)
    inspector.set_defaults(handler=_run_inspector)


def build_parser() -> argparse.ArgumentParser:
    """The ``corstrace`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="corstrace",
        description="See why the browser blocked your cross-origin request.",
    )
    parser.add_argument("--version", action="version", version=f"corstrace {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    _add_demo_command(commands)
    _add_check_command(commands)
    _add_explain_command(commands)
    _add_inspector_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 for usage errors, as argparse does)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --version, --help and usage errors: keep main() returning a code
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    handler = args.handler
    try:
        code: int = handler(args)
        # Flushed here, inside the guard: a pipe closed after the last print fails on this flush.
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        return BROKEN_PIPE_EXIT
    return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's flush at exit does not fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (captured, replaced): nothing left to flush
        pass


if __name__ == "__main__":
    sys.exit(main())

"""``corstrace demo``: the example API, the example frontend and the inspector, in one process.

The example apps live in the repository's ``examples/`` folder, which the wheel carries as
``corstrace/_examples/``. They are loaded by file path so the same code serves a checkout, an
editable install and a wheel install. Both apps run under uvicorn in one event loop; one Ctrl-C
stops both.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib.util
import ipaddress
import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

import structlog
import uvicorn
from structlog.typing import Processor

from corstrace import _term
from corstrace._console import ConsoleView
from corstrace._serving import QuietServer, stop_on_signals
from corstrace.middleware import CORSTraceMiddleware

# The example apps read these (examples/app.py at import, examples/frontend.py per request).
FRONTEND_ORIGIN_ENV = "CORSTRACE_DEMO_FRONTEND_ORIGIN"
API_URL_ENV = "CORSTRACE_DEMO_API_URL"
INSPECTOR_URL_ENV = "CORSTRACE_DEMO_INSPECTOR_URL"

# A browser tab keeps the inspector's event stream open; shutdown must not wait on it for ever.
_GRACEFUL_SHUTDOWN_SECONDS = 5


class DemoError(Exception):
    """Something the user can fix (a port in use, a bad host): one line on stderr and exit 2."""


def examples_dir() -> Path:
    """The folder holding ``app.py``, ``frontend.py`` and ``frontend/``.

    A wheel carries it inside the package as ``corstrace/_examples``; a checkout or an editable
    install has it next to the package as ``examples/``. The wheel location wins: a stray top-level
    ``examples`` folder in site-packages must not be mistaken for ours, hence the pyproject check.
    """
    package = Path(__file__).resolve().parent
    bundled = package / "_examples"
    if (bundled / "app.py").is_file():
        return bundled
    checkout = package.parent / "examples"
    if (checkout / "app.py").is_file() and (package.parent / "pyproject.toml").is_file():
        return checkout
    raise DemoError(f"cannot find the example apps in {bundled} or {checkout}; reinstall corstrace")


def load_example(name: str, directory: Path | None = None) -> ModuleType:
    """Import ``<examples>/<name>.py`` by path, as module ``corstrace_demo_<name>``."""
    path = (directory or examples_dir()) / f"{name}.py"
    module_name = f"corstrace_demo_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - only for a non-.py path
        raise DemoError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered before running it: pydantic resolves the models' annotations through sys.modules.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def url_hosts(host: str) -> tuple[str, str]:
    """The hosts to put in the (frontend, API) URLs for servers bound to ``host``.

    On loopback the page is opened on ``localhost`` and calls the API on ``127.0.0.1``: different
    hosts, so the calls are cross-origin even though both run here (and the ports differ anyway).
    """
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if host in ("", "localhost") or (ip is not None and (ip.is_loopback or ip.is_unspecified)):
        return "localhost", "[::1]" if ip is not None and ip.version == 6 else "127.0.0.1"
    shown = f"[{host}]" if ip is not None and ip.version == 6 else host
    return shown, shown


def bind(host: str, port: int, option: str) -> socket.socket:
    """A listening socket on ``host:port`` (port 0 picks a free one), or a one-line DemoError."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise DemoError(f"cannot listen on host {host!r}: {exc.strerror}") from None
    # IPv4 first: "localhost" must land where the printed 127.0.0.1 URLs point.
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        if sys.platform != "win32":
            # Like uvicorn: a restarted demo can rebind while old connections sit in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # Listening now (not when uvicorn starts) makes a second bind of the same port fail here,
        # and queues early connections instead of refusing them.
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            message = f"port {port} on {host} is already in use: free it, or choose another with {option}"
            raise DemoError(message) from None
        raise DemoError(f"cannot listen on {host}:{port} ({option}): {exc.strerror or exc}") from None
    return sock


class _Server(QuietServer):
    """One of the demo's two uvicorn servers; the demo handles signals once, for both."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.ready.set()


async def _all_ready(servers: Sequence[_Server]) -> None:
    for server in servers:
        await server.ready.wait()


async def _serve(servers: Sequence[_Server], sockets: Sequence[socket.socket], on_ready: Callable[[], None]) -> None:
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in zip(servers, sockets, strict=True)]
    ready = asyncio.create_task(_all_ready(servers))
    done, _ = await asyncio.wait({ready, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    if ready in done:
        on_ready()
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    else:
        ready.cancel()
    # Whichever server stops first (a signal, a failed startup) takes the other one down with it.
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks)


def terminal_view(colour: bool) -> Processor:
    """corstrace's :class:`~corstrace.ConsoleView`, without the inspector's startup line (the banner prints it)."""
    return ConsoleView(colors=colour, drop_inspector_url=True)


def configure_logging(colour: bool) -> None:
    """Render corstrace's structlog events for a human in the terminal (the demo is an application)."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.dev.set_exc_info,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            terminal_view(colour),
            # Plain tracebacks: rich's, with every frame's locals, would bury the explanations.
            structlog.dev.ConsoleRenderer(colors=colour, exception_formatter=structlog.dev.plain_traceback),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )


def find_middleware(app: Any, cls: type[Any]) -> Any | None:
    """The ``cls`` instance in a started Starlette app's middleware chain (each layer holds ``.app``)."""
    node = getattr(app, "middleware_stack", None)
    for _ in range(64):  # a bound, in case some layer's .app points back up
        if node is None or isinstance(node, cls):
            return node
        node = getattr(node, "app", None)
    return None


def inspector_url(api_app: Any, host: str, port: int) -> str | None:
    """The inspector's URL with its token, asked of the API's running CORSTraceMiddleware.

    None when the inspector is off (``CORSTRACE_INSPECTOR=0``). Called once uvicorn has run the
    lifespan startup, which builds the middleware stack.
    """
    tracer = find_middleware(api_app, CORSTraceMiddleware)
    if tracer is None:
        return None
    url: str | None = tracer.inspector_url(host.strip("[]"), port)  # it brackets IPv6 itself
    return url


@dataclass(frozen=True)
class _Urls:
    frontend: str
    api: str
    inspector: str | None


def banner(urls: _Urls, examples: Path, *, colour: bool) -> str:
    """What the demo prints once both servers listen."""

    def url(text: str) -> str:
        return _term.paint(text, "bold", "cyan", enabled=colour)

    inspector = url(urls.inspector) if urls.inspector else "(off: unset CORSTRACE_INSPECTOR to turn it on)"
    return "\n".join(
        [
            "",
            _term.paint("corstrace demo is running", "bold", "green", enabled=colour),
            "",
            f"  frontend   {url(urls.frontend)}",
            f"  API        {url(urls.api)}",
            f"  inspector  {inspector}",
            "",
            "Open the frontend and click the buttons: every request is cross-origin, and corstrace",
            "explains below (and in the inspector) what the browser does with each one.",
            _term.paint(f"Example code: {examples}", "dim", enabled=colour),
            _term.paint("Press Ctrl-C to stop.", "dim", enabled=colour),
            "",
        ]
    )


def run_demo(
    *, host: str, api_port: int, frontend_port: int, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run the demo until interrupted; the exit code (0 after Ctrl-C, 2 for a usage problem)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    with contextlib.ExitStack() as stack:
        try:
            examples = examples_dir()
            api_sock = stack.enter_context(bind(host, api_port, "--api-port"))
            frontend_sock = stack.enter_context(bind(host, frontend_port, "--frontend-port"))
        except DemoError as exc:
            print(f"corstrace demo: error: {exc}", file=err, flush=True)
            return 2
        api_port = api_sock.getsockname()[1]
        frontend_port = frontend_sock.getsockname()[1]
        frontend_host, api_host = url_hosts(host)
        frontend_origin = f"http://{frontend_host}:{frontend_port}"
        api_origin = f"http://{api_host}:{api_port}"
        os.environ[FRONTEND_ORIGIN_ENV] = frontend_origin
        os.environ[API_URL_ENV] = api_origin

        colour = _term.wants_colour(out)
        configure_logging(colour)
        api_app = load_example("app", examples).app
        frontend_app = load_example("frontend", examples).app

        def server(app: Any) -> _Server:
            config = uvicorn.Config(
                app,
                log_level="warning",  # uvicorn's start-up chatter would bury the banner
                access_log=False,  # corstrace's own events describe each exchange
                timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
            )
            return _Server(config)

        servers = [server(api_app), server(frontend_app)]

        def on_ready() -> None:
            inspector = inspector_url(api_app, api_host, api_port)
            if inspector is not None:
                os.environ[INSPECTOR_URL_ENV] = inspector  # the page's "inspector" link
            urls = _Urls(frontend=f"{frontend_origin}/", api=f"{api_origin}/", inspector=inspector)
            print(banner(urls, examples, colour=colour), file=out, flush=True)

        with stop_on_signals(servers):
            try:
                asyncio.run(_serve(servers, [api_sock, frontend_sock], on_ready))
            except KeyboardInterrupt:  # pragma: no cover - only where signal handlers could not be set
                pass
    print("corstrace demo: stopped.", file=out, flush=True)
    return 0

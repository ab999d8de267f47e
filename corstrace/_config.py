"""What the application's own CORS configuration says, and where corstrace sits in its stack.

The browser only tells the user *that* a request was blocked. This module answers *why the server
answered that way*: it finds the app's ``CORSMiddleware`` (the built instance, plus the raw keyword
arguments from ``app.user_middleware`` when the app has them), replays its decision for one request,
names near-misses ("trailing slash", "port 5173 instead of 3000"), renders the exact
``add_middleware`` call that fixes it, and lints the configuration once at startup.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.middleware.cors import ALL_METHODS, CORSMiddleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.routing import BaseRoute, Mount, Router, WebSocketRoute

from corstrace._fetch import default_port

# Starlette's defaults, spelled as the user would read them in the signature.
_DEFAULTS: dict[str, Any] = {
    "allow_origins": (),
    "allow_methods": ("GET",),
    "allow_headers": (),
    "allow_credentials": False,
    "allow_origin_regex": None,
    "allow_private_network": False,
    "expose_headers": (),
    "max_age": 600,
}
_KWARG_ORDER = tuple(_DEFAULTS)
_SAFELISTED = frozenset({"accept", "accept-language", "content-language", "content-type"})
_MAX_WALK = 64
# Bounds of what Settings remember: replay middleware per change, and fixes derived from the options.
_MAX_VARIANTS = 64
_MAX_MEMO = 256
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Finding:
    """One startup lint finding."""

    code: str
    message: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "fix": self.fix}


class OtherLayer(Protocol):
    """A CORS layer that is not Starlette's CORSMiddleware (see corstrace._layers): it lints itself."""

    @property
    def name(self) -> str | None: ...

    def lint(self) -> list[Finding]: ...


@dataclass(frozen=True, slots=True)
class Topology:
    """Where corstrace sits relative to the app's CORSMiddleware."""

    cors: CORSMiddleware | None
    # Raw keyword arguments as the user wrote them (from app.user_middleware), when available.
    cors_kwargs: dict[str, Any] | None
    # "wraps": corstrace is outside CORSMiddleware and sees its headers (the supported setup);
    # "inside": corstrace sits inside CORSMiddleware; "absent": no CORSMiddleware was found.
    placement: Literal["wraps", "inside", "absent"]
    # Layers between corstrace and CORSMiddleware: they can answer without CORS headers.
    between: tuple[str, ...] = ()
    # The outer ServerErrorMiddleware that turns an escaped exception into a bare 500.
    error_layer: ServerErrorMiddleware | None = None
    app: Any = None
    # Whether corstrace wraps the whole application, outside ServerErrorMiddleware.
    outermost: bool = False
    # The app's CORS layer when it is not Starlette's CORSMiddleware (Litestar, Django, ...; corstrace._layers).
    layer: OtherLayer | None = None


@dataclass(frozen=True, slots=True)
class ServerCause:
    """Why CORSMiddleware decided as it did, from its own configuration."""

    failures: tuple[str, ...]  # Starlette's vocabulary: "origin", "method", "headers", "private-network"
    summary: str  # e.g. "PUT is not in allow_methods ('GET',) (the default)"
    fix: str | None = None  # the add_middleware call that makes this request pass
    details: tuple[str, ...] = field(default=())
    # The options that change in ``fix`` (name -> new value), for fixes built from several refusals.
    changes: dict[str, Any] = field(default_factory=dict)


def layer_name(layer: Any) -> str:
    """A readable name for one ASGI layer: the class, or the function behind ``@app.middleware``."""
    dispatch = getattr(layer, "dispatch_func", None)
    cls = type(layer).__name__
    if dispatch is not None and getattr(dispatch, "__name__", "dispatch") != "dispatch":
        return f"{cls}({dispatch.__name__})"
    return cls


def _walk(start: Any) -> list[Any]:
    """The chain of middleware below ``start``, following ``.app`` until the router."""
    chain: list[Any] = []
    node = start
    while node is not None and len(chain) < _MAX_WALK:
        chain.append(node)
        # Routers (and FastAPI's APIRouter) have unrelated `.app`-like attributes: stop there.
        if isinstance(node, Router):
            break
        node = getattr(node, "app", None)
        if not callable(node):
            break
    return chain


def _user_kwargs(app: Any, cors: CORSMiddleware) -> dict[str, Any] | None:
    for entry in getattr(app, "user_middleware", None) or ():
        if getattr(entry, "cls", None) is type(cors) or getattr(entry, "cls", None) is CORSMiddleware:
            args = tuple(getattr(entry, "args", ()))
            kwargs = dict(getattr(entry, "kwargs", {}))
            # Positional arguments follow the constructor's order after `app`.
            for name, value in zip(_KWARG_ORDER, args, strict=False):
                kwargs.setdefault(name, value)
            return kwargs
    return None


def discover(tracer: Any, app: Any) -> Topology | None:
    """Locate CORSMiddleware relative to ``tracer``; None while the app's stack is not built yet.

    ``app`` is the Starlette/FastAPI application (``scope["app"]``) when known, else None.
    """
    outermost = False
    stack = getattr(app, "middleware_stack", None) if app is not None else None
    if stack is not None:
        chain = _walk(stack)
        if not any(node is tracer for node in chain):
            stack = None
    if stack is None:
        inner = tracer.app
        # corstrace wraps the whole application: walk into it once its stack is built. A Starlette instance
        # only: a wrapper made with functools.wraps (asgi-cors) copies the app's attributes, middleware_stack=None
        # included, and would be waited for forever.
        if isinstance(inner, Starlette):
            if inner.middleware_stack is None:
                return None
            app, outermost = inner, True
            chain = [tracer, *_walk(inner.middleware_stack)]
        else:
            chain = [tracer, *_walk(inner)]
    mine = next(i for i, node in enumerate(chain) if node is tracer)
    cors_at = next((i for i, node in enumerate(chain) if isinstance(node, CORSMiddleware)), None)
    error_layer = next((node for node in chain if isinstance(node, ServerErrorMiddleware)), None)
    if cors_at is None:
        return Topology(None, None, "absent", error_layer=error_layer, app=app, outermost=outermost)
    cors = chain[cors_at]
    kwargs = _user_kwargs(app, cors) if app is not None else None
    if cors_at < mine:
        return Topology(cors, kwargs, "inside", error_layer=error_layer, app=app, outermost=outermost)
    between = tuple(layer_name(node) for node in chain[mine + 1 : cors_at] if not isinstance(node, Router))
    return Topology(cors, kwargs, "wraps", between, error_layer, app, outermost)


@dataclass(frozen=True, eq=False, slots=True)
class Stack:
    """The app's CORS setup, found once its middleware stack is built: app-level facts, never request state.

    Compared and hashed by identity: events remembered for one stack are never served for another.
    """

    topology: Topology
    settings: Settings | None

    @property
    def starlette(self) -> bool:
        """Whether the app is a Starlette/FastAPI app (so its error layer is Starlette's ServerErrorMiddleware)."""
        return self.topology.error_layer is not None


def discover_stack(tracer: Any, app: Any) -> Stack | None:
    """:func:`discover`, with CORSMiddleware's settings read once; None while the stack is not built yet."""
    topology = discover(tracer, app)
    if topology is None:
        return None
    settings = Settings(topology.cors, topology.cors_kwargs) if topology.cors is not None else None
    return Stack(topology, settings)


# --- Settings, as the user wrote them -------------------------------------------------------------


class Settings:
    """A read-only view of one CORSMiddleware's options, for explanations and fixes."""

    __slots__ = ("cors", "kwargs", "is_default", "memo", "_variants")

    def __init__(self, cors: CORSMiddleware, kwargs: dict[str, Any] | None) -> None:
        self.cors = cors
        raw = dict(kwargs) if kwargs is not None else _reconstruct(cors)
        self.is_default = {name: name not in raw for name in _KWARG_ORDER}
        self.kwargs = {name: raw.get(name, _DEFAULTS[name]) for name in _KWARG_ORDER}
        for name, value in raw.items():
            if name not in self.kwargs:
                self.kwargs[name] = value
        self._variants: dict[tuple[tuple[str, Any], ...], Settings] = {}
        # Values derived from these options alone (a proven fix per exchange): they live and die with them.
        self.memo: dict[Any, Any] = {}

    def remember(self, key: Any, value: _T) -> _T:
        """Keep ``value`` in :attr:`memo` under ``key`` (bounded: the oldest half goes when it is full)."""
        memo = self.memo
        if len(memo) >= _MAX_MEMO:
            for old in list(memo)[: _MAX_MEMO // 2]:
                del memo[old]
        memo[key] = value
        return value

    def shown(self, name: str) -> str:
        """The option's value as written, with "(the default)" when the user did not set it."""
        value = self.kwargs[name]
        text = _py(value)
        return f"{text} (the default)" if self.is_default.get(name) else text

    def _written(self, changes: dict[str, Any]) -> dict[str, Any]:
        """The options the user wrote, with ``changes`` applied: what a rendered call spells out."""
        kwargs = {name: value for name, value in self.kwargs.items() if not self.is_default.get(name)}
        kwargs.update(changes)
        return kwargs

    def _arguments(self, changes: dict[str, Any]) -> list[str]:
        kwargs = self._written(changes)
        order = (*_KWARG_ORDER, *sorted(set(kwargs) - set(_KWARG_ORDER)))
        return [f"{name}={_py(kwargs[name])}" for name in order if name in kwargs]

    def call(self, **changes: Any) -> str:
        """The ``add_middleware(CORSMiddleware, ...)`` call with ``changes`` applied."""
        return "app.add_middleware(" + ", ".join(["CORSMiddleware", *self._arguments(changes)]) + ")"

    def wrapping(self, **changes: Any) -> str:
        """CORSMiddleware around the whole app and corstrace around it, with ``changes`` applied.

        The shape that lets the page read a crash's 500 and keeps corstrace outermost, where it sees what the
        browser receives (wrapping corstrace inside the new CORSMiddleware would make it report every 500 blocked).
        """
        inner = ", ".join(["app", *self._arguments(changes)])
        return f"app = CORSTraceMiddleware(CORSMiddleware({inner}))"

    def variant(self, changes: dict[str, Any]) -> Settings:
        """These settings with ``changes`` applied, as a real middleware of the same class (built once per change).

        The middleware wraps :func:`stub_route`; fixes are proven by replaying requests through it.
        """
        key = tuple(sorted((name, _frozen(value)) for name, value in changes.items()))
        known = self._variants.get(key)
        if known is None:
            if len(self._variants) >= _MAX_VARIANTS:
                self._variants.clear()
            # Only what the user wrote, plus the change: an older Starlette may not know every option's name.
            kwargs = self._written(changes)
            known = self._variants[key] = Settings(type(self.cors)(stub_route, **kwargs), kwargs)
        return known


def _frozen(value: Any) -> Any:
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(_frozen(item) for item in value)
    return value


async def stub_route(scope: Any, receive: Any, send: Any) -> None:
    """A stand-in for the app's route: answers what ``scope["corstrace.stub"]`` says (status, headers)."""
    status, headers = scope.get("corstrace.stub", (200, []))
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": b""})


def _reconstruct(cors: CORSMiddleware) -> dict[str, Any]:
    """Best-effort kwargs for a CORSMiddleware built by hand (``app = CORSMiddleware(app, ...)``)."""
    kwargs: dict[str, Any] = {}
    if cors.allow_origins:
        kwargs["allow_origins"] = list(cors.allow_origins)
    if tuple(cors.allow_methods) != ("GET",):
        kwargs["allow_methods"] = ["*"] if tuple(cors.allow_methods) == ALL_METHODS else list(cors.allow_methods)
    extra = [h for h in cors.allow_headers if h not in _SAFELISTED]
    if cors.allow_all_headers:
        kwargs["allow_headers"] = ["*"]
    elif extra:
        kwargs["allow_headers"] = extra
    if getattr(cors, "allow_credentials", False):
        kwargs["allow_credentials"] = True
    if cors.allow_origin_regex is not None:
        kwargs["allow_origin_regex"] = cors.allow_origin_regex.pattern
    expose = cors.simple_headers.get("Access-Control-Expose-Headers")
    if expose:
        kwargs["expose_headers"] = [h.strip() for h in expose.split(",")]
    max_age = cors.preflight_headers.get("Access-Control-Max-Age")
    if max_age is not None and max_age != "600":
        kwargs["max_age"] = int(max_age) if max_age.isdigit() else max_age
    return kwargs


def _py(value: Any) -> str:
    """Render a config value as Python source, lists as the user would write them."""
    if isinstance(value, (list, tuple, set, frozenset)) and not isinstance(value, str):
        items = sorted(value) if isinstance(value, (set, frozenset)) else list(value)
        inner = ", ".join(_py(item) for item in items)
        if isinstance(value, tuple):
            return f"({inner},)" if len(items) == 1 else f"({inner})"
        return f"[{inner}]"
    if isinstance(value, re.Pattern):
        return repr(value.pattern)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [value]
    return list(value) if isinstance(value, Collection) else []


def option_items(value: Any) -> list[str]:
    """An option's entries as the user meant them: a string is split on commas (what a list would have held)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return [item for item in _as_list(value) if isinstance(item, str)]


# --- Why CORSMiddleware decided as it did ----------------------------------------------------------


def origin_cause(settings: Settings, origin: str) -> ServerCause | None:
    """None when CORSMiddleware allows ``origin``; otherwise why not, and the fix."""
    cors = settings.cors
    if cors.is_allowed_origin(origin):
        return None
    configured = [o for o in _as_list(settings.kwargs["allow_origins"]) if isinstance(o, str)]
    summary = f"origin '{origin}' is not in allow_origins {settings.shown('allow_origins')}"
    details: list[str] = []
    regex = cors.allow_origin_regex
    if regex is not None:
        summary += f" and does not fully match allow_origin_regex {regex.pattern!r}"
        if regex.search(origin) or regex.match(origin):
            details.append(
                f"allow_origin_regex {regex.pattern!r} matches part of '{origin}' but Starlette uses fullmatch: "
                "it must match the whole origin (no path, no trailing slash)"
            )
    for candidate in configured:
        miss = near_miss(origin, candidate)
        if miss:
            details.append(f"closest configured origin {candidate!r} differs: {miss}")
            break
    if isinstance(settings.kwargs["allow_origins"], str):
        details.append("allow_origins is a string, not a list: Starlette then matches substrings of it")
    changes = {"allow_origins": _fixed_origins(settings, origin)}
    return ServerCause(("origin",), summary, settings.call(**changes), tuple(details), changes)


def origin_changes(settings: Settings, origin: str) -> dict[str, Any]:
    """The smallest change of options that makes CORSMiddleware allow ``origin``: {} when it already does."""
    if settings.cors.is_allowed_origin(origin):
        return {}
    return {"allow_origins": _fixed_origins(settings, origin)}


def _is_trailing_slash_of(configured: str, origin: str) -> bool:
    return configured.rstrip("/") == origin and configured != origin


def preflight_cause(
    settings: Settings, origin: str, method: str, requested_headers: Sequence[str], private_network: bool
) -> ServerCause | None:
    """Replay CORSMiddleware's preflight decision; None when it answers 200."""
    cors = settings.cors
    failures: list[str] = []
    parts: list[str] = []
    changes: dict[str, Any] = {}
    details: list[str] = []
    origin_problem = origin_cause(settings, origin)
    if origin_problem is not None:
        failures.append("origin")
        parts.append(origin_problem.summary)
        details.extend(origin_problem.details)
        changes.update(origin_problem.changes)
    if method not in cors.allow_methods:
        failures.append("method")
        parts.append(f"{method} is not in allow_methods {settings.shown('allow_methods')}")
        changes["allow_methods"] = _fixed_methods(settings, method, details)
    if not cors.allow_all_headers:
        missing = [h for h in requested_headers if h and h not in cors.allow_headers]
        if missing:
            failures.append("headers")
            names = ", ".join(f"'{h}'" for h in missing)
            noun = "header" if len(missing) == 1 else "headers"
            parts.append(f"request {noun} {names} not in allow_headers {settings.shown('allow_headers')}")
            changes["allow_headers"] = _fixed_headers(settings, missing, details)
    if private_network and not getattr(cors, "allow_private_network", False):
        failures.append("private-network")
        parts.append("the preflight asks for private network access and allow_private_network is False")
        changes["allow_private_network"] = True
    if not failures:
        return None
    return ServerCause(tuple(failures), "; ".join(parts), settings.call(**changes), tuple(details), changes)


def preflight_changes(
    settings: Settings, origin: str, method: str, requested_headers: Sequence[str], private_network: bool
) -> dict[str, Any]:
    """The smallest change of options that makes CORSMiddleware answer this preflight 200: {} when it does."""
    cause = preflight_cause(settings, origin, method, requested_headers, private_network)
    return dict(cause.changes) if cause is not None else {}


def _fixed_origins(settings: Settings, origin: str) -> list[str]:
    """allow_origins with ``origin`` added (a trailing-slash twin of it is corrected, not kept)."""
    configured = option_items(settings.kwargs["allow_origins"])
    return list(dict.fromkeys([*(o for o in configured if not _is_trailing_slash_of(o, origin)), origin]))


def _fixed_methods(settings: Settings, method: str, details: list[str]) -> list[str]:
    """allow_methods with ``method`` added; entries in lower case are upper-cased (Starlette compares exactly)."""
    written = settings.kwargs["allow_methods"]
    methods = option_items(written)
    if isinstance(written, str):
        details.append("allow_methods is a string, not a list: Starlette then matches substrings of it")
    if any(m.upper() == method and m != method for m in methods):
        details.append(f"allow_methods lists {method.lower()!r} in lower case; CORSMiddleware compares exactly")
    if any(m != m.upper() for m in methods):
        methods = [m.upper() for m in methods]
    return list(dict.fromkeys([*methods, method]))


def _fixed_headers(settings: Settings, missing: Sequence[str], details: list[str]) -> list[str]:
    """allow_headers with ``missing`` added, each once whatever its case (the user's spelling is kept)."""
    written = settings.kwargs["allow_headers"]
    current = option_items(written)
    if isinstance(written, str):
        details.append(
            "allow_headers is a string, not a list: Starlette then allows its single characters, not the header"
        )
    known = {h.lower() for h in current}
    added = [_title(h) for h in dict.fromkeys(missing) if h.lower() not in known]
    return [*current, *added]


def _title(header: str) -> str:
    return "-".join(part[:1].upper() + part[1:] for part in header.split("-"))


def near_miss(origin: str, configured: str) -> str | None:
    """How a configured origin almost matches the request's ``origin``; None when unrelated, equal or unparsable."""
    try:
        return _near_miss(origin, configured)
    except ValueError:  # `http://[::1`, a port beyond 65535: urlsplit refuses what a browser would never send
        return None


def _near_miss(origin: str, configured: str) -> str | None:
    if configured == origin:
        return None
    want = urlsplit(origin) if "://" in origin else None
    have = urlsplit(configured) if "://" in configured else None
    if have is None:
        if want is not None and configured.lower() in (want.netloc.lower(), (want.hostname or "").lower()):
            return f"it has no scheme: write '{origin}'"
        return None
    if want is None:
        return None
    problems: list[str] = []
    try:
        have_port = have.port or default_port(have.scheme)
        want_port = want.port or default_port(want.scheme)
    except ValueError:
        return None
    have_host = (have.hostname or "").lower()
    want_host = (want.hostname or "").lower()
    loopback = {"localhost", "127.0.0.1", "::1", "[::1]"}
    if have_host != want_host:
        if have_host in loopback and want_host in loopback:
            problems.append(
                f"host '{have.hostname}' instead of '{want.hostname}' (localhost and 127.0.0.1 are different origins)"
            )
        elif have_host.removeprefix("www.") == want_host.removeprefix("www."):
            problems.append(f"host '{have.hostname}' instead of '{want.hostname}' (www. matters)")
        else:
            return None
    if have.scheme.lower() != want.scheme.lower():
        problems.append(f"scheme '{have.scheme}' instead of '{want.scheme}'")
    if have_port != want_port:
        problems.append(f"port {have_port} instead of {want_port}")
    if have.path not in ("",) and have.path != "/":
        problems.append(f"it has a path '{have.path}' (an origin never has one)")
    elif have.path == "/":
        problems.append("it has a trailing slash (the browser sends the origin without one)")
    if have.query or have.fragment:
        problems.append("it has a query or fragment")
    if not problems and configured != origin:
        if configured.lower() == origin.lower():
            problems.append("letter case differs (the comparison is exact)")
        elif have.port is not None and want.port is None:
            problems.append(f"it spells out the default port {have.port} (the browser omits it)")
    return "; ".join(problems) or None


# --- Startup lint -----------------------------------------------------------------------------------


def lint(topology: Topology) -> list[Finding]:
    """Configuration problems worth one warning at startup."""
    if topology.layer is not None:
        # Another framework's CORS layer (corstrace._layers): only it knows what is wrong with its setup.
        return topology.layer.lint()
    findings: list[Finding] = []
    if topology.placement == "absent":
        findings.append(
            Finding(
                "no_cors_middleware",
                "No CORSMiddleware was found below CORSTraceMiddleware: every cross-origin request that needs "
                "CORS headers will be blocked by the browser.",
                'app.add_middleware(CORSMiddleware, allow_origins=["http://localhost:3000"])  # before '
                "app.add_middleware(CORSTraceMiddleware)",
            )
        )
    elif topology.placement == "inside":
        findings.append(
            Finding(
                "tracer_inside_cors",
                "CORSTraceMiddleware sits inside CORSMiddleware, so it cannot see the CORS headers the browser "
                "receives; its verdicts would be wrong.",
                "Call app.add_middleware(CORSTraceMiddleware) after app.add_middleware(CORSMiddleware, ...): "
                "the last middleware added is the outermost.",
            )
        )
    if topology.between:
        names = ", ".join(topology.between)
        findings.append(
            Finding(
                "layers_outside_cors",
                f"{names} run(s) outside CORSMiddleware: any response they produce (401, 413, 400, ...) carries "
                "no CORS headers, and a preflight they answer fails in the browser.",
                "Add those middleware before CORSMiddleware (call app.add_middleware(CORSMiddleware, ...) after "
                "them) so CORSMiddleware is outside them.",
            )
        )
    if topology.cors is not None:
        findings.extend(_lint_settings(Settings(topology.cors, topology.cors_kwargs)))
    if topology.app is not None and _websocket_paths(getattr(topology.app, "routes", ())):
        paths = ", ".join(_websocket_paths(topology.app.routes)[:5])
        findings.append(
            Finding(
                "websocket_routes",
                f"WebSocket routes ({paths}) get no CORS protection: browsers let any website open them and "
                "CORSMiddleware ignores WebSockets. Check the Origin header in each handler.",
                'if websocket.headers.get("origin") not in ALLOWED_ORIGINS: await websocket.close(code=1008)',
            )
        )
    return findings


def _lint_settings(settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    kw = settings.kwargs
    origins_raw = kw["allow_origins"]
    credentials = bool(kw["allow_credentials"])
    for name in ("allow_origins", "allow_methods", "allow_headers", "expose_headers"):
        if isinstance(kw[name], str):
            findings.append(
                Finding(
                    "string_not_list",
                    f"{name} is the string {kw[name]!r}, not a list: CORSMiddleware then matches single "
                    "characters or substrings of it (e.g. 'http://localhost:30000' allows 'http://localhost:3000').",
                    f"{name}=[{', '.join(repr(p.strip()) for p in kw[name].split(','))}]",
                )
            )
    origins = [o for o in _as_list(origins_raw) if isinstance(o, str)]
    if "*" in origins and credentials:
        findings.append(
            Finding(
                "wildcard_with_credentials",
                "allow_origins=['*'] with allow_credentials=True makes Starlette reflect ANY Origin together with "
                "Access-Control-Allow-Credentials: true: any website can read your users' data with their cookies.",
                settings.call(allow_origins=["https://your-frontend.example"]),
            )
        )
    if not isinstance(origins_raw, str):
        for origin in origins:
            problem = _origin_shape_problem(origin)
            if problem:
                findings.append(
                    Finding(
                        "malformed_origin",
                        f"allow_origins entry {origin!r} {problem}; the browser's Origin never matches it.",
                        settings.call(allow_origins=[_clean_origin(o) for o in origins]),
                    )
                )
    methods = [m for m in _as_list(kw["allow_methods"]) if isinstance(m, str)]
    lower = [m for m in methods if m != "*" and m != m.upper()]
    if lower and not isinstance(kw["allow_methods"], str):
        findings.append(
            Finding(
                "lowercase_methods",
                f"allow_methods {lower} are not upper case: CORSMiddleware compares methods exactly and browsers "
                "send them upper case, so these preflights fail with 'Disallowed CORS method'.",
                settings.call(allow_methods=[m.upper() for m in methods]),
            )
        )
    regex = kw["allow_origin_regex"]
    pattern = regex.pattern if isinstance(regex, re.Pattern) else regex
    if isinstance(pattern, str):
        problem = _regex_problem(pattern)
        if problem:
            findings.append(Finding("broad_origin_regex", f"allow_origin_regex {pattern!r} {problem}", None))
    expose = _as_list(kw["expose_headers"])
    if "*" in expose and credentials:
        findings.append(
            Finding(
                "expose_star_with_credentials",
                "expose_headers=['*'] with allow_credentials=True exposes nothing to credentialed requests: "
                "browsers treat '*' literally when credentials are included.",
                settings.call(expose_headers=["X-Request-ID"]),
            )
        )
    return findings


def _origin_shape_problem(origin: str) -> str | None:
    if origin == "*" or origin == "null":
        return None
    if "://" not in origin:
        return "has no scheme (write 'https://…')"
    parts = urlsplit(origin)
    if parts.path == "/":
        return "has a trailing slash"
    if parts.path:
        return f"has a path ({parts.path!r})"
    if parts.query or parts.fragment:
        return "has a query or fragment"
    if origin != origin.lower():
        return "has upper-case letters (browsers send origins in lower case)"
    if any(c.isspace() for c in origin):
        return "contains whitespace"
    return None


def _clean_origin(origin: str) -> str:
    if origin in ("*", "null") or "://" not in origin:
        return origin.strip()
    parts = urlsplit(origin.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def _regex_problem(pattern: str) -> str | None:
    if ".*" in pattern or ".+" in pattern:
        return "contains '.*' or '.+': it matches far more origins than intended (e.g. https://evil.com/x.yours.com)."
    unescaped_dot = re.search(r"(?<!\\)\.(?![*+?])", pattern.split("://", 1)[-1])
    if unescaped_dot:
        return "has an unescaped '.', which matches any character (example.com also matches exampleXcom)."
    return None


def _websocket_paths(routes: Sequence[BaseRoute]) -> list[str]:
    paths: list[str] = []
    for route in routes:
        if isinstance(route, WebSocketRoute):
            paths.append(route.path)
        elif isinstance(route, Mount):
            paths.extend(route.path + sub for sub in _websocket_paths(route.routes))
    return paths

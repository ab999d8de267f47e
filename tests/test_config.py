"""CORSMiddleware introspection: near-misses, server-side causes, fixes and startup lint."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response

from corstrace import CORSTraceMiddleware
from corstrace._config import Settings, discover, lint, near_miss, origin_cause, preflight_cause


def _built(app: FastAPI) -> CORSTraceMiddleware:
    """Build the app's middleware stack and return the CORSTraceMiddleware instance in it."""
    app.middleware_stack = app.build_middleware_stack()
    node = app.middleware_stack
    while not isinstance(node, CORSTraceMiddleware):
        node = node.app  # type: ignore[attr-defined]
    return node


def _settings(**kwargs: object) -> Settings:
    async def noop(scope: object, receive: object, send: object) -> None: ...

    return Settings(CORSMiddleware(noop, **kwargs), kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("origin", "configured", "expected"),
    [
        ("http://localhost:3000", "http://localhost:3000/", "trailing slash"),
        ("http://localhost:3000", "https://localhost:3000", "scheme 'https' instead of 'http'"),
        ("http://localhost:5173", "http://localhost:3000", "port 3000 instead of 5173"),
        ("http://127.0.0.1:3000", "http://localhost:3000", "localhost and 127.0.0.1 are different origins"),
        ("http://localhost:3000", "http://LOCALHOST:3000", "letter case"),
        ("http://localhost:3000", "http://localhost:3000/app", "path '/app'"),
        ("https://example.com", "https://www.example.com", "www. matters"),
        ("http://localhost:3000", "localhost:3000", "no scheme"),
        ("https://example.com", "https://example.com:443", "default port 443"),
    ],
)
def test_near_miss_names_the_difference(origin: str, configured: str, expected: str) -> None:
    """A configured origin that almost matches is explained by what differs."""
    miss = near_miss(origin, configured)
    assert miss is not None and expected in miss


def test_near_miss_ignores_unrelated_origins() -> None:
    """A configured origin for another site is not a near-miss."""
    assert near_miss("http://localhost:3000", "https://shop.example") is None


def test_origin_cause_quotes_the_configuration_and_fixes_the_trailing_slash() -> None:
    """A denied origin is explained from allow_origins, and the fix replaces the slashed twin."""
    cause = origin_cause(_settings(allow_origins=["http://localhost:3000/"]), "http://localhost:3000")
    assert cause is not None
    assert cause.summary == "origin 'http://localhost:3000' is not in allow_origins [\"http://localhost:3000/\"]"
    assert any("trailing slash" in d for d in cause.details)
    assert cause.fix == 'app.add_middleware(CORSMiddleware, allow_origins=["http://localhost:3000"])'


def test_origin_cause_is_none_for_an_allowed_origin() -> None:
    """An origin CORSMiddleware allows has no server-side cause."""
    assert origin_cause(_settings(allow_origins=["http://a.test"]), "http://a.test") is None


def test_preflight_cause_names_the_default_methods() -> None:
    """A method missing from the default allow_methods says so, and the fix adds it."""
    cause = preflight_cause(_settings(allow_origins=["http://a.test"]), "http://a.test", "PUT", [], False)
    assert cause is not None
    assert cause.failures == ("method",)
    assert cause.summary == 'PUT is not in allow_methods ("GET",) (the default)'
    assert (
        cause.fix == 'app.add_middleware(CORSMiddleware, allow_origins=["http://a.test"], allow_methods=["GET", "PUT"])'
    )


def test_preflight_cause_names_the_missing_header() -> None:
    """A requested header not in allow_headers is named, and the fix adds it."""
    settings = _settings(allow_origins=["http://a.test"], allow_headers=["Content-Type"])
    cause = preflight_cause(settings, "http://a.test", "GET", ["authorization"], False)
    assert cause is not None
    assert cause.failures == ("headers",)
    assert "'authorization'" in cause.summary
    assert cause.fix is not None and 'allow_headers=["Content-Type", "Authorization"]' in cause.fix


def test_preflight_cause_flags_lowercase_methods() -> None:
    """allow_methods written in lower case is named as the reason PUT fails."""
    settings = _settings(allow_origins=["http://a.test"], allow_methods=["get", "put"])
    cause = preflight_cause(settings, "http://a.test", "PUT", [], False)
    assert cause is not None and any("lower case" in d for d in cause.details)


def test_preflight_cause_explains_an_unanchored_regex() -> None:
    """A regex that matches only part of the origin is explained as a fullmatch problem."""
    cause = origin_cause(_settings(allow_origin_regex=r"https://app\.example\.com"), "https://app.example.com:8443")
    assert cause is not None and any("fullmatch" in d for d in cause.details)


def test_discover_finds_cors_inside_the_tracer() -> None:
    """add_middleware(CORSTraceMiddleware) after CORSMiddleware wraps it."""
    app = FastAPI()
    app.add_middleware(CORSMiddleware, allow_origins=["http://a.test"])
    app.add_middleware(CORSTraceMiddleware, inspector=False)
    tracer = _built(app)
    topology = discover(tracer, app)
    assert topology is not None and topology.placement == "wraps"
    assert topology.cors_kwargs == {"allow_origins": ["http://a.test"]}
    assert topology.between == ()


def test_discover_names_layers_between_tracer_and_cors() -> None:
    """A middleware added after CORSMiddleware sits outside it and is named."""

    async def auth(request: Request, call_next: object) -> Response:
        return Response(status_code=401)

    app = FastAPI()
    app.add_middleware(CORSMiddleware, allow_origins=["http://a.test"])
    app.add_middleware(BaseHTTPMiddleware, dispatch=auth)
    app.add_middleware(CORSTraceMiddleware, inspector=False)
    topology = discover(_built(app), app)
    assert topology is not None and topology.between == ("BaseHTTPMiddleware(auth)",)


def test_lint_reports_tracer_inside_cors() -> None:
    """Adding CORSTraceMiddleware before CORSMiddleware is reported with the fix."""
    app = FastAPI()
    app.add_middleware(CORSTraceMiddleware, inspector=False)
    app.add_middleware(CORSMiddleware, allow_origins=["http://a.test"])
    topology = discover(_built(app), app)
    assert topology is not None
    assert [f.code for f in lint(topology)] == ["tracer_inside_cors"]


def test_lint_reports_missing_cors() -> None:
    """An app without CORSMiddleware is reported."""
    app = FastAPI()
    app.add_middleware(CORSTraceMiddleware, inspector=False)
    topology = discover(_built(app), app)
    assert topology is not None
    assert [f.code for f in lint(topology)] == ["no_cors_middleware"]


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"allow_origins": ["*"], "allow_credentials": True}, "wildcard_with_credentials"),
        ({"allow_origins": ["http://localhost:3000/"]}, "malformed_origin"),
        ({"allow_origins": ["localhost:3000"]}, "malformed_origin"),
        ({"allow_origins": ["http://localhost:3000/app"]}, "malformed_origin"),
        ({"allow_origins": "http://localhost:3000"}, "string_not_list"),
        ({"allow_origins": ["http://a.test"], "allow_methods": ["get", "post"]}, "lowercase_methods"),
        ({"allow_origin_regex": r"https://.*\.example\.com"}, "broad_origin_regex"),
        ({"allow_origin_regex": r"https://app.example\.com"}, "broad_origin_regex"),
        (
            {"allow_origins": ["http://a.test"], "allow_credentials": True, "expose_headers": ["*"]},
            "expose_star_with_credentials",
        ),
    ],
)
def test_lint_flags_configuration_mistakes(kwargs: dict[str, object], code: str) -> None:
    """Each classic CORSMiddleware mistake produces its lint finding."""
    app = FastAPI()
    app.add_middleware(CORSMiddleware, **kwargs)  # type: ignore[arg-type]
    app.add_middleware(CORSTraceMiddleware, inspector=False)
    topology = discover(_built(app), app)
    assert topology is not None
    assert code in [f.code for f in lint(topology)]


def test_lint_is_quiet_for_a_good_configuration() -> None:
    """A correct configuration produces no findings."""
    app = FastAPI()
    app.add_middleware(CORSMiddleware, allow_origins=["http://localhost:3000"], allow_methods=["GET", "POST"])
    app.add_middleware(CORSTraceMiddleware, inspector=False)
    topology = discover(_built(app), app)
    assert topology is not None and lint(topology) == []


def test_lint_reports_websocket_routes() -> None:
    """WebSocket routes get a finding: browsers apply no CORS to them."""
    app = FastAPI()

    @app.websocket("/ws")
    async def ws(websocket: object) -> None: ...

    app.add_middleware(CORSMiddleware, allow_origins=["http://a.test"])
    app.add_middleware(CORSTraceMiddleware, inspector=False)
    topology = discover(_built(app), app)
    assert topology is not None
    assert "websocket_routes" in [f.code for f in lint(topology)]

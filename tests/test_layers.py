"""Other frameworks' CORS layers (issue 14 items 4 and 5, and the server-side cause in their own terms).

Each app is the real framework with its real CORS layer (tests/layer_apps.py), driven in-process through
CORSTraceMiddleware; Django has its own module-wide settings, varied with ``override_settings``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests import layer_apps
from tests.layer_harness import FRONTEND, events, get, legs, lints, preflight

OTHERS = ["litestar", "quart", "falcon", "blacksheep", "asgi-cors"]
NAMES = {
    "litestar": "Litestar CORSMiddleware (cors_config)",
    "quart": "quart-cors",
    "falcon": "Falcon CORSMiddleware",
    "blacksheep": "BlackSheep CORS (use_cors)",
    "asgi-cors": "asgi-cors",
    "django": "django-cors-headers CorsMiddleware",
}
# How each framework spells the fix (the start of the event's fix_code).
SYNTAX = {
    "litestar": "cors_config=CORSConfig(",
    "quart": "app = cors(app, ",
    "falcon": "falcon.asgi.App(middleware=[falcon.CORSMiddleware(",
    "blacksheep": "app.use_cors(",
    "asgi-cors": "app = asgi_cors(app, ",
    "django": "",
}
STARLETTE_WORDS = ("ServerErrorMiddleware", "Starlette", "add_middleware(CORSMiddleware", "CORSMiddleware(app")


def _app(framework: str, kind: str) -> Any:
    return layer_apps.BUILDERS[framework](kind, FRONTEND)


def _blocked(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in legs(logs) if e["verdict"] == "blocked"]


# --- item 4: the startup lint --------------------------------------------------------------------------------


@pytest.mark.parametrize("framework", OTHERS)
def test_a_correct_setup_of_another_framework_logs_no_lint(framework: str) -> None:
    assert lints(events(_app(framework, "good"))) == []


@pytest.mark.parametrize("framework", ["litestar", "quart", "falcon", "blacksheep"])
def test_no_cors_layer_is_linted_in_the_frameworks_own_terms(framework: str) -> None:
    (finding,) = lints(events(_app(framework, "none")))
    assert finding["code"] in ("no_cors_layer", "no_cors_config")
    assert not any(word in finding["message"] + finding["fix"] for word in STARLETTE_WORDS)
    start = SYNTAX[framework].split("(")[0]
    assert start.replace("app = ", "").split(".")[0] in finding["fix"]


def test_asgi_cors_around_a_starlette_app_is_discovered() -> None:
    """asgi-cors copies the Starlette app's attributes (middleware_stack=None): corstrace used to wait forever."""
    from asgi_cors import asgi_cors
    from starlette.applications import Starlette

    logs = events(asgi_cors(Starlette()), get("/items"))
    (finding,) = lints(logs)
    assert finding["code"] == "no_allowed_origins"
    assert finding["fix"] == 'app = asgi_cors(app, hosts=["http://localhost:3000"])'
    assert legs(logs)[0]["layer"] == "asgi-cors"


def test_litestar_lint_names_a_malformed_origin_in_cors_config() -> None:
    (finding,) = lints(events(_app("litestar", "bad")))
    assert finding["code"] == "malformed_origin"
    assert finding["fix"].startswith('cors_config=CORSConfig(allow_origins=["http://localhost:3000"]')


def test_litestar_lint_refuses_wildcard_with_credentials() -> None:
    from litestar import Litestar
    from litestar.config.cors import CORSConfig

    (finding,) = lints(events(Litestar([], cors_config=CORSConfig(allow_credentials=True))))
    assert finding["code"] == "wildcard_with_credentials"


def test_blacksheep_without_allow_methods_is_linted() -> None:
    """BlackSheep then answers 400 to every cross-origin request, even a GET."""
    from blacksheep import Application
    from blacksheep.server.routing import Router

    app = Application(router=Router())
    app.use_cors(allow_origins=[FRONTEND])
    (finding,) = lints(events(app))
    assert finding["code"] == "no_allowed_methods"
    assert finding["fix"].startswith("app.use_cors(")


def test_quart_cors_wildcard_with_credentials_is_linted() -> None:
    from quart import Quart
    from quart_cors import cors

    (finding,) = lints(events(cors(Quart("q"), allow_credentials=True)))
    assert finding["code"] == "wildcard_with_credentials"
    assert "ValueError" in finding["message"]


def test_an_unknown_asgi_app_is_said_to_be_unknown_not_missing_starlettes_layer() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    (finding,) = lints(events(app))
    assert finding["code"] == "unknown_cors_layer"
    assert "test_layers" in finding["message"]
    assert finding["fix"] is None


# --- item 5: nothing Starlette-specific about other apps -------------------------------------------------------


@pytest.mark.parametrize("framework", OTHERS)
def test_a_crash_in_another_framework_is_not_explained_as_starlettes(framework: str) -> None:
    for kind in ("good", "bad"):
        for event in legs(events(_app(framework, kind), get("/crash"))):
            said = event["explanation"] + (event["fix"] or "")
            assert not any(word in said for word in STARLETTE_WORDS), (kind, said)


def test_an_exception_escaping_a_raw_asgi_app_is_not_blamed_on_starlette() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            raise layer_apps.Boom("database is down")

    (event,) = legs(events(app, get("/crash")))
    assert event["verdict"] == "blocked"
    assert event["exception_type"] == "Boom"
    assert "server answered a 500 of its own" in event["explanation"]
    assert not any(word in event["explanation"] + event["fix"] for word in STARLETTE_WORDS)


def test_a_400_preflight_from_an_unknown_layer_is_not_blamed_on_starlette() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send(
                {"type": "http.response.start", "status": 400, "headers": [(b"access-control-allow-origin", b"*")]}
            )
            await send({"type": "http.response.body", "body": b""})

    (event,) = legs(events(app, preflight("/items", "PUT")))
    assert event["reason"] == "PreflightInvalidStatus"
    assert "Starlette" not in event["explanation"]
    assert event["explanation"].startswith("corstrace cannot read the CORS setup of tests.test_layers.")


@pytest.mark.parametrize("framework", ["litestar", "blacksheep"])
def test_a_400_preflight_from_litestar_or_blacksheep_names_them_not_starlette(framework: str) -> None:
    (event,) = legs(events(_app(framework, "bad"), preflight("/items", "PUT", "x-trace-id")))
    assert event["status"] == 400
    assert "Starlette" not in event["explanation"]
    assert event["layer"] == NAMES[framework]


# --- go beyond: the setting that refused, near-misses, the fix in the framework's syntax -----------------------

LEADS = {
    "litestar": "Litestar's CORSConfig refused the preflight: ",
    "quart": "quart-cors: ",
    "falcon": "Falcon's CORSMiddleware: ",
    "blacksheep": "BlackSheep's CORS policy: ",
    "asgi-cors": "asgi-cors: ",
}
REFUSED = {
    # framework: words the refused preflight (PUT with X-Trace-Id from the frontend) must name
    "litestar": ["allow_origins", "PUT is not in allow_methods", "'x-trace-id' not in allow_headers"],
    "quart": ["allow_origin", "PUT is not in allow_methods", "'x-trace-id' not in allow_headers"],
    "falcon": ["implements no PUT responder"],
    "blacksheep": ["allow_origins", "PUT is not in allow_methods", "'x-trace-id' not in allow_headers"],
    "asgi-cors": ["not in hosts", "never answers a preflight", "PUT is not in methods"],
}


@pytest.mark.parametrize("framework", OTHERS)
def test_a_refused_preflight_names_the_settings_and_the_fix_in_the_frameworks_syntax(framework: str) -> None:
    (event,) = legs(events(_app(framework, "bad"), preflight("/items", "PUT", "x-trace-id")))
    assert event["verdict"] == "blocked"
    assert event["layer"] == NAMES[framework]
    for words in REFUSED[framework]:
        assert words in event["server_reason"]
    assert event["explanation"].startswith(LEADS[framework])  # the cause leads, in the layer's name
    assert event["server_reason"].split(";")[0] in event["explanation"].split(". ")[0]
    assert "Not verified" in event["fix"] or framework == "litestar"
    assert event["fix_verified"] is (framework == "litestar")  # Litestar's fixes are replayed, the others' are not
    # Falcon's refusal here is the resource's missing on_put: a code change, nothing to copy.
    assert event["fix_code"].startswith(SYNTAX[framework]) if framework != "falcon" else event["fix_code"] is None


MISSES = [("litestar", "trailing slash"), ("quart", "trailing slash"), ("blacksheep", "trailing slash"),
          ("asgi-cors", "port 1 instead")]  # fmt: skip


@pytest.mark.parametrize(("framework", "miss"), MISSES)
def test_a_refused_origin_comes_with_its_near_miss(framework: str, miss: str) -> None:
    (event,) = legs(events(_app(framework, "bad"), get("/items")))
    assert event["reason"] == "MissingAllowOriginHeader"
    assert any(miss in detail for detail in event["server_details"])
    assert SYNTAX[framework] in event["fix"]
    assert f'"{FRONTEND}"' in event["fix"] and f'"{FRONTEND}/"' not in event["fix"]


def test_falcon_cors_enable_with_credentials_is_fixed_with_allow_credentials() -> None:
    (event,) = legs(events(_app("falcon", "bad"), get("/items", FRONTEND, (b"cookie", b"a=1"))))
    assert event["reason"] == "WildcardOriginNotAllowed"
    assert "not in allow_credentials" in event["server_reason"]
    assert f'allow_credentials=["{FRONTEND}"]' in event["fix"]
    assert "instead of cors_enable=True" in event["fix"]


def test_an_allowed_leg_names_the_layer_that_allowed_it() -> None:
    for framework in OTHERS:
        (event,) = legs(events(_app(framework, "good"), get("/items")))
        assert (event["verdict"], event["layer"]) == ("allowed", NAMES[framework])


# --- verified fixes (Litestar) ----------------------------------------------------------------------------------


def _litestar_cause(config: Any, request: tuple[str, str, list[Any]]) -> Any:
    """The layer's own cause for ``request`` (with ``fix_verified``, which the event gains with the fixes work)."""
    from litestar import Litestar

    from corstrace import _layers

    captured: list[Any] = []
    real = _layers.explain

    def spy(*args: Any) -> Any:
        captured.append(real(*args))
        return captured[-1]

    _layers.explain = spy  # type: ignore[assignment]
    try:
        events(Litestar([], cors_config=config), request)
    finally:
        _layers.explain = real  # type: ignore[assignment]
    return captured[-1]


@pytest.mark.parametrize(
    "request_",
    [
        preflight("/items", "PUT", "x-trace-id"),
        get("/items"),
        get("/items", FRONTEND, (b"cookie", b"a=1")),
        preflight("/items", "PUT", "", FRONTEND),
    ],  # fmt: skip
    ids=["preflight", "origin", "credentials", "method"],
)
def test_litestar_fixes_are_replayed_and_pass_when_applied(request_: tuple[str, str, list[Any]]) -> None:
    from litestar import Litestar
    from litestar.config.cors import CORSConfig

    cause = _litestar_cause(
        CORSConfig(allow_origins=[FRONTEND + "/"], allow_methods=["GET"], allow_headers=[]), request_
    )
    assert cause.fix_verified, cause.fix
    # Apply the fix as a user would (its code, evaluated), and replay the same request: now allowed.
    config = eval(cause.fix_code.removeprefix("cors_config="), {"CORSConfig": CORSConfig})
    (event,) = legs(events(Litestar([], cors_config=config), request_))
    assert event["verdict"] == "allowed"


def test_quart_wrapped_the_quart_way_is_read_through_the_bound_asgi_app() -> None:
    """``app.asgi_app = CORSTraceMiddleware(app.asgi_app)`` hands corstrace a bound method of the Quart app."""
    from corstrace import CORSTraceMiddleware

    app = layer_apps.quart_app("bad", FRONTEND)
    app.asgi_app = CORSTraceMiddleware(app.asgi_app, inspector=False, aggregate_window=0)  # type: ignore[method-assign]
    logs = events(app, get("/items"), wrap=False)
    assert lints(logs) == []
    (event,) = legs(logs)
    assert event["layer"] == "quart-cors"
    assert event["fix"].startswith("app = cors(app, ")

"""Django with django-cors-headers: the settings that refused, fixes for settings.py, replayed and applied.

Django's settings are process-wide: the app is configured once (tests/layer_apps.py, the imperfect setup:
``CORS_ALLOWED_ORIGINS`` the frontend, ``CORS_ALLOW_METHODS`` GET and POST, the default headers, no
credentials), and each test varies it with ``override_settings``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests import layer_apps
from tests.layer_harness import FRONTEND, events, get, legs, lints, preflight

NAME = "django-cors-headers CorsMiddleware"
CORS = "corsheaders.middleware.CorsMiddleware"
COMMON = "django.middleware.common.CommonMiddleware"


@pytest.fixture(scope="module")
def app() -> Any:
    return layer_apps.django_app("bad", FRONTEND)


def _override(**settings: Any) -> Any:
    from django.test import override_settings

    return override_settings(**settings)


def test_a_correct_setup_logs_no_lint(app: Any) -> None:
    from corsheaders.defaults import default_headers

    with _override(CORS_ALLOW_METHODS=["GET", "PUT"], CORS_ALLOW_HEADERS=(*default_headers, "x-trace-id"),
                   CORS_ALLOW_CREDENTIALS=True):  # fmt: skip
        logs = events(app, preflight("/items", "PUT", "x-trace-id"), get("/items", FRONTEND, (b"cookie", b"a=1")))
    assert lints(logs) == []
    assert [(e["verdict"], e["layer"]) for e in legs(logs)] == [("allowed", NAME)] * 2


def test_the_imperfect_setup_is_not_linted(app: Any) -> None:
    """Restrictive settings are a choice, not a mistake: the refusals are explained per request instead."""
    assert lints(events(app)) == []


@pytest.mark.parametrize(
    ("settings", "code"),
    [
        ({"MIDDLEWARE": [COMMON, CORS]}, "layers_outside_cors"),
        ({"MIDDLEWARE": [COMMON]}, "cors_middleware_not_installed"),
        ({"CORS_ALLOW_ALL_ORIGINS": True, "CORS_ALLOW_CREDENTIALS": True}, "wildcard_with_credentials"),
        ({"CORS_ALLOWED_ORIGINS": []}, "no_allowed_origins"),
        ({"CORS_ALLOWED_ORIGINS": ["localhost:3000"]}, "malformed_origin"),
    ],
)
def test_a_misconfiguration_is_linted_in_django_terms(app: Any, settings: dict[str, Any], code: str) -> None:
    with _override(**settings):
        (finding,) = lints(events(app))
    assert finding["code"] == code
    assert "add_middleware" not in (finding["fix"] or "")
    assert "MIDDLEWARE" in finding["fix"] or "CORS_" in finding["fix"]


def test_a_refused_preflight_names_the_settings_and_the_fix_for_settings_py(app: Any) -> None:
    (event,) = legs(events(app, preflight("/items", "PUT", "x-trace-id")))
    assert (event["verdict"], event["reason"], event["layer"]) == (
        "blocked",
        "MethodDisallowedByPreflightResponse",
        NAME,
    )
    assert event["server_reason"] == (
        'PUT is not in CORS_ALLOW_METHODS ["GET", "POST"]; request header \'x-trace-id\' not in CORS_ALLOW_HEADERS '
        '["accept", "authorization", "content-type", "user-agent", "x-csrftoken", "x-requested-with"] (the default)'
    )
    assert event["explanation"].startswith("django-cors-headers: PUT is not in CORS_ALLOW_METHODS")
    assert event["fix"] == (
        'In settings.py: CORS_ALLOW_METHODS = ["GET", "POST", "PUT"]; from corsheaders.defaults import '
        'default_headers; CORS_ALLOW_HEADERS = (*default_headers, "x-trace-id")'
    )
    assert event["fix_verified"] is True
    assert event["fix_code"] == event["fix"].removeprefix("In settings.py: ")


def test_a_refused_origin_comes_with_its_near_miss(app: Any) -> None:
    (event,) = legs(events(app, get("/items", "http://127.0.0.1:3000")))
    assert (
        event["server_reason"]
        == "origin 'http://127.0.0.1:3000' is not in CORS_ALLOWED_ORIGINS [\"http://localhost:3000\"]"
    )
    assert "localhost and 127.0.0.1 are different origins" in event["server_details"][0]
    assert event["fix"] == 'In settings.py: CORS_ALLOWED_ORIGINS = ["http://localhost:3000", "http://127.0.0.1:3000"]'


def test_a_response_from_a_middleware_above_corsmiddleware_is_attributed_to_it(app: Any) -> None:
    from django.core.handlers.asgi import ASGIHandler

    with _override(MIDDLEWARE=[COMMON, CORS]):
        (event,) = legs(events(ASGIHandler(), get("/slash")))
    assert (event["status"], event["reason"]) == (301, "MissingAllowOriginHeader")
    assert event["layer"] == COMMON
    assert event["explanation"].startswith(
        f"The response (301) never went through CorsMiddleware (it has no `Vary: origin`): {COMMON}"
    )
    assert event["fix"].startswith(f'Move "{CORS}" to the top of MIDDLEWARE')


def test_a_crash_is_not_explained_as_starlettes(app: Any) -> None:
    (event,) = legs(events(app, get("/crash")))
    assert (event["status"], event["verdict"]) == (500, "allowed")  # Django's 500 passes through CorsMiddleware
    assert "Starlette" not in event["explanation"] and "ServerErrorMiddleware" not in event["explanation"]


def _cause(app: Any, request: tuple[str, str, list[Any]]) -> Any:
    from corstrace import _layers

    captured: list[Any] = []
    real = _layers.explain

    def spy(*args: Any) -> Any:
        captured.append(real(*args))
        return captured[-1]

    _layers.explain = spy  # type: ignore[assignment]
    try:
        events(app, request)
    finally:
        _layers.explain = real  # type: ignore[assignment]
    return captured[-1]


@pytest.mark.parametrize(
    "request_",
    [
        preflight("/items", "PUT", "x-trace-id"),
        get("/items", "http://127.0.0.1:3000"),
        get("/items", FRONTEND, (b"cookie", b"a=1")),
        preflight("/items", "DELETE", "", FRONTEND),
    ],  # fmt: skip
    ids=["preflight", "origin", "credentials", "method"],
)
def test_fixes_are_replayed_and_pass_when_applied(app: Any, request_: tuple[str, str, list[Any]]) -> None:
    from django.conf import settings

    before = settings.CORS_ALLOW_METHODS
    cause = _cause(app, request_)
    assert cause.fix_verified, cause.fix
    assert settings.CORS_ALLOW_METHODS is before  # the replay never touches Django's settings
    # Apply the fix as a user would (its settings.py lines, executed), and send the same request again.
    namespace: dict[str, Any] = {}
    exec(cause.fix_code, namespace)
    with _override(**{name: value for name, value in namespace.items() if name.startswith("CORS_")}):
        (event,) = legs(events(app, request_))
    assert event["verdict"] == "allowed"

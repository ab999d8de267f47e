"""`corstrace check`'s fix (issue 15 items 1 and 4): header-level, for the whole exchange, verified by replay.

Against real FastAPI apps behind Starlette's CORSMiddleware on uvicorn. "Applied" tests put the
proposed headers on each leg's response for real (an ASGI layer outside the app) and check again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from corstrace.__main__ import main
from tests.support import run_server

ORIGIN = "http://localhost:3000"
# Starlette's default allow_headers plus the one the page needs: the server's own items stay.
ALLOW_HEADERS = "Accept, Accept-Language, Content-Language, Content-Type, authorization"


def demo_like_app() -> FastAPI:
    """The demo's shape: origins listed, GET/POST only, Content-Type only, no credentials, redirect_slashes on."""
    app = FastAPI()

    @app.get("/me")
    def me() -> dict[str, int]:
        return {"user": 1}

    @app.get("/items")
    def items() -> list[int]:
        return []

    @app.post("/items")
    def add_item() -> dict[str, int]:
        return {"id": 1}

    @app.api_route("/items/{item_id}", methods=["PUT", "PATCH"])
    def change_item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    app.add_middleware(
        CORSMiddleware, allow_origins=[ORIGIN], allow_methods=["GET", "POST"], allow_headers=["Content-Type"]
    )
    return app


def applying(app: Any, fix_legs: list[dict[str, Any]]) -> Any:
    """``app`` with each leg's proposed status and headers put on its response, as a server admin would."""
    changes = {(leg["method"], urlsplit(leg["url"]).path): leg for leg in fix_legs}

    async def patched_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        leg = changes.get((scope.get("method"), scope.get("path"))) if scope["type"] == "http" else None
        if leg is None:
            await app(scope, receive, send)
            return
        names = {name.lower() for name, _ in leg["set_headers"]} | {name.lower() for name in leg["remove_headers"]}
        status = leg["new_status"]

        async def with_fix(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                kept = [(n, v) for n, v in message["headers"] if n.decode().lower() not in names | {"content-length"}]
                added = [(n.encode(), v.encode()) for n, v in leg["set_headers"]]
                message = {**message, "status": status or message["status"], "headers": kept + added}
            elif message["type"] == "http.response.body" and status == 204:
                message = {**message, "body": b""}  # a 204 has no body
            await send(message)

        await app(scope, receive, with_fix)

    return patched_app


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with run_server(demo_like_app()) as url:
        yield url


def _check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["check", *args])
    return code, capsys.readouterr().out


def _check_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out = _check(capsys, *args, "--json")
    return code, json.loads(out)


AUTH = ["-H", "Authorization: Bearer t0ken", "--credentials"]


def test_fix_for_authorization_with_credentials_names_both_headers(
    capsys: pytest.CaptureFixture[str], server: str
) -> None:
    """`-H 'Authorization: …' --credentials`: the fix allows the header and credentials, not just one of them."""
    code, out = _check(capsys, server + "/me", "--origin", ORIGIN, *AUTH)
    fix = out[out.index("Fix") :]
    assert code == 1
    # The server's own items stay (other requests of the page need them); `authorization` is added.
    assert f"Access-Control-Allow-Headers: {ALLOW_HEADERS}" in fix
    assert "Access-Control-Allow-Credentials: true" in fix
    assert "cannot read the server's CORS configuration" in fix


def test_fix_covers_the_preflight_and_the_actual_request(capsys: pytest.CaptureFixture[str], server: str) -> None:
    """The preflight needs a 2xx, the header and credentials; the actual GET needs credentials too."""
    _, data = _check_json(capsys, server + "/me", "--origin", ORIGIN, *AUTH)
    legs = [(leg["leg"], leg["method"], leg["new_status"], dict(leg["set_headers"])) for leg in data["fix_legs"]]
    assert legs == [
        (
            "preflight",
            "OPTIONS",
            204,
            {
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
            },
        ),
        ("actual", "GET", None, {"Access-Control-Allow-Credentials": "true"}),
    ]


def test_fix_is_verified_when_every_leg_was_answered_and_passes(
    capsys: pytest.CaptureFixture[str], server: str
) -> None:
    """The GET after the blocked preflight is harmless, so check sends it to verify: the fix is verified."""
    code, out = _check(capsys, server + "/me", "--origin", ORIGIN, *AUTH)
    _, data = _check_json(capsys, server + "/me", "--origin", ORIGIN, *AUTH)
    assert (code, data["fix_verified"]) == (1, True)
    assert [leg["sent"] for leg in data["fix_legs"]] == ["exchange", "replay"]
    assert "Fix (verified)" in out


def test_applied_fix_makes_the_exchange_pass(capsys: pytest.CaptureFixture[str]) -> None:
    """The proposed headers, put on the real app's responses, make the same check pass."""
    with run_server(demo_like_app()) as url:
        _, data = _check_json(capsys, url + "/me", "--origin", ORIGIN, *AUTH)
    with run_server(applying(demo_like_app(), data["fix_legs"])) as url:
        code, after = _check_json(capsys, url + "/me", "--origin", ORIGIN, *AUTH)
    assert (code, after["verdict"]) == (0, "allowed")


def test_fix_for_a_redirect_names_the_307_hop_and_its_target(capsys: pytest.CaptureFixture[str], server: str) -> None:
    """`GET /items/ --credentials`: the 307 and the request it leads to both need credentials allowed."""
    code, data = _check_json(capsys, server + "/items/", "--origin", ORIGIN, "--credentials")
    hops = [
        (leg["hop"], leg["status"], urlsplit(leg["url"]).path, dict(leg["set_headers"])) for leg in data["fix_legs"]
    ]
    assert code == 1 and data["fix_verified"] is True
    assert hops == [
        (0, 307, "/items/", {"Access-Control-Allow-Credentials": "true"}),
        (1, 200, "/items", {"Access-Control-Allow-Credentials": "true"}),
    ]


def test_applied_redirect_fix_makes_the_exchange_pass(capsys: pytest.CaptureFixture[str]) -> None:
    """Applied to both hops, the redirect fix passes the whole credentialed exchange."""
    with run_server(demo_like_app()) as url:
        _, data = _check_json(capsys, url + "/items/", "--origin", ORIGIN, "--credentials")
    with run_server(applying(demo_like_app(), data["fix_legs"])) as url:
        code, after = _check_json(capsys, url + "/items/", "--origin", ORIGIN, "--credentials")
    assert (code, [leg["status"] for leg in after["legs"]]) == (0, [307, 200])


def test_fix_for_a_request_check_would_not_send_is_not_verified(
    capsys: pytest.CaptureFixture[str], server: str
) -> None:
    """A PUT stopped at its preflight is not sent to verify the fix (check never sends what the browser would not)."""
    code, data = _check_json(capsys, server + "/items/1", "--origin", ORIGIN, "-X", "PUT")
    assert (code, data["fix_verified"]) == (1, False)
    assert [(leg["leg"], leg["sent"]) for leg in data["fix_legs"]] == [
        ("preflight", "exchange"),
        ("actual", "not_sent"),
    ]
    assert dict(data["fix_legs"][0]["set_headers"])["Access-Control-Allow-Methods"] == "GET, POST, PUT"
    assert dict(data["fix_legs"][1]["set_headers"]) == {"Access-Control-Allow-Origin": ORIGIN, "Vary": "Origin"}
    assert "not sent" in data["fix"] and "not verified" in data["fix"]


def test_starlette_hint_is_complete_for_credentials(capsys: pytest.CaptureFixture[str], server: str) -> None:
    """Starlette's 400 names what it refused; the hint adds `allow_credentials=True` when the page sends them."""
    _, out = _check(capsys, server + "/me", "--origin", ORIGIN, *AUTH)
    assert 'add "authorization" to `allow_headers`; set `allow_credentials=True`.' in out


def test_allowed_exchange_has_no_fix(capsys: pytest.CaptureFixture[str], server: str) -> None:
    """Nothing to fix: no fix section, `fix` null."""
    code, data = _check_json(capsys, server + "/items", "--origin", ORIGIN)
    assert (code, data["fix"], data["fix_verified"], data["fix_legs"]) == (0, None, None, [])


def test_lower_case_method_fix_says_to_fix_the_page(capsys: pytest.CaptureFixture[str], server: str) -> None:
    """`patch` passes CORS only if listed in lower case, and the route then answers 405: the fix is on the page."""
    _, out = _check(capsys, server + "/items/1", "--origin", ORIGIN, "-X", "patch")
    assert "method: 'PATCH'" in out[out.index("Fix") :]

"""The same small API in every framework corstrace reads, each with a correct and an imperfect CORS setup.

Every app has ``GET /items``, ``PUT /items`` and ``GET /crash`` (which raises). ``good`` allows ``frontend``
with GET and PUT, the ``X-Trace-Id`` header and credentials; ``bad`` has the usual mistakes (the frontend
spelled with a trailing slash where the framework compares exactly, GET only, no extra header, no
credentials); ``none`` has no CORS layer at all. Django's settings are process-wide: its app is configured
once per process, with the ``bad`` setup (see :func:`django_app`).
"""

from __future__ import annotations

from typing import Any

TRACE = "X-Trace-Id"


class Boom(RuntimeError):
    pass


def _crash() -> None:
    raise Boom("database is down")


def litestar_app(kind: str, frontend: str) -> Any:
    from litestar import Litestar, get, put
    from litestar.config.cors import CORSConfig

    @get("/items", sync_to_thread=False)
    def items() -> list[int]:
        return [1]

    @put("/items", sync_to_thread=False)
    def put_items() -> list[int]:
        return [2]

    @get("/crash", sync_to_thread=False)
    def crash() -> None:
        _crash()

    config = {
        "good": CORSConfig(allow_origins=[frontend], allow_methods=["GET", "PUT"], allow_headers=[TRACE],
                           allow_credentials=True),
        "bad": CORSConfig(allow_origins=[frontend + "/"], allow_methods=["GET"], allow_headers=[]),
        "none": None,
    }[kind]  # fmt: skip
    return Litestar([items, put_items, crash], cors_config=config, logging_config=None)


def quart_app(kind: str, frontend: str) -> Any:
    from quart import Quart
    from quart_cors import cors

    app = Quart(f"quart_{kind}")

    @app.route("/items", methods=["GET", "PUT"])
    async def items() -> Any:
        return [1]

    @app.route("/crash")
    async def crash() -> Any:
        _crash()

    if kind == "good":
        app = cors(app, allow_origin=[frontend], allow_methods=["GET", "PUT"], allow_headers=[TRACE],
                   allow_credentials=True)  # fmt: skip
    elif kind == "bad":
        app = cors(app, allow_origin=frontend + "/", allow_methods=["GET"], allow_headers=[])
    return app


def falcon_app(kind: str, frontend: str) -> Any:
    import falcon
    import falcon.asgi

    class Items:
        async def on_get(self, req: Any, resp: Any) -> None:
            resp.media = [1]

    class ReadOnly:
        async def on_get(self, req: Any, resp: Any) -> None:
            resp.media = [1]

    class Crash:
        async def on_get(self, req: Any, resp: Any) -> None:
            _crash()

    if kind == "good":
        app = falcon.asgi.App(
            middleware=[falcon.CORSMiddleware(allow_origins=[frontend], allow_credentials=[frontend])]
        )
    elif kind == "bad":
        app = falcon.asgi.App(cors_enable=True)
    else:
        app = falcon.asgi.App()

    class Put(Items):
        async def on_put(self, req: Any, resp: Any) -> None:
            resp.media = [2]

    # The bad app's resource has no on_put: Falcon's preflight then lists only GET.
    app.add_route("/items", ReadOnly() if kind == "bad" else Put())
    app.add_route("/crash", Crash())
    return app


def blacksheep_app(kind: str, frontend: str) -> Any:
    from blacksheep import Application, json
    from blacksheep.server.routing import Router

    app = Application(router=Router())

    @app.router.get("/items")
    async def items() -> Any:
        return json([1])

    @app.router.put("/items")
    async def put_items() -> Any:
        return json([2])

    @app.router.get("/crash")
    async def crash() -> Any:
        _crash()

    if kind == "good":
        app.use_cors(allow_origins=[frontend], allow_methods=["GET", "PUT"], allow_headers=[TRACE],
                     allow_credentials=True)  # fmt: skip
    elif kind == "bad":
        app.use_cors(allow_origins=[frontend + "/"], allow_methods=["GET"])
    return app


def asgi_cors_app(kind: str, frontend: str) -> Any:
    from asgi_cors import asgi_cors
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def items(request: Any) -> Any:
        return JSONResponse([1])

    async def options(request: Any) -> Any:
        return Response(status_code=204)

    async def crash(request: Any) -> Any:
        _crash()

    # asgi-cors never answers a preflight: the good app answers OPTIONS itself, the bad one does not.
    methods = ["GET", "PUT", "OPTIONS"] if kind == "good" else ["GET", "PUT"]
    routes = [Route("/items", items, methods=methods), Route("/crash", crash)]
    if kind == "good":
        routes.insert(0, Route("/items", options, methods=["OPTIONS"]))
    app = Starlette(routes=routes)
    if kind == "good":
        return asgi_cors(app, hosts=[frontend], methods=["GET", "PUT"], headers=[TRACE])
    if kind == "bad":
        return asgi_cors(app, hosts=["http://localhost:1"])
    return app


_django: dict[str, Any] = {}


def django_app(kind: str, frontend: str) -> Any:
    """The Django app, configured on first use (settings are process-wide) with the ``bad`` setup.

    ``kind`` and ``frontend`` are ignored: the allowed origin is always ``http://localhost:3000``, and tests vary
    the setup (a browser test's frontend origin too) with ``override_settings``.
    """
    if "app" in _django:
        return _django["app"]
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="corstrace-tests",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="tests.layer_apps",
        INSTALLED_APPS=["corsheaders"],
        MIDDLEWARE=["corsheaders.middleware.CorsMiddleware", "django.middleware.common.CommonMiddleware"],
        CORS_ALLOWED_ORIGINS=["http://localhost:3000"],
        CORS_ALLOW_METHODS=["GET", "POST"],
        LOGGING_CONFIG=None,
    )
    django.setup()
    from django.core.asgi import get_asgi_application

    _django["app"] = get_asgi_application()
    return _django["app"]


def __getattr__(name: str) -> Any:
    # Django's URLconf (ROOT_URLCONF is this module): built on first access, once Django is configured.
    if name != "urlpatterns":
        raise AttributeError(name)
    from django.http import JsonResponse
    from django.urls import path

    def items(request: Any) -> Any:
        return JsonResponse([1], safe=False)

    def crash(request: Any) -> Any:
        _crash()

    # "slash/" only exists with its trailing slash: CommonMiddleware redirects "/slash" to it (APPEND_SLASH).
    return [path("items", items), path("crash", crash), path("slash/", items)]


BUILDERS = {
    "litestar": litestar_app,
    "quart": quart_app,
    "falcon": falcon_app,
    "blacksheep": blacksheep_app,
    "asgi-cors": asgi_cors_app,
    "django": django_app,
}

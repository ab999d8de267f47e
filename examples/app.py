"""The demo API: a small "items" service with a deliberately imperfect CORS setup.

This is the backend of ``corstrace demo``. It reads like an ordinary FastAPI app on purpose: the
CORS mistakes below are the ones real projects make, and corstrace explains each of them as the
browser hits it. Run it on its own with::

    uvicorn examples.app:app --port 8000

and open the frontend (``uvicorn examples.frontend:app --port 3000``) at http://localhost:3000/.
"""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import Cookie, FastAPI, Header, HTTPException
from fastapi.middleware.cors import CORSMiddleware
from pydantic import BaseModel

from corstrace import CORSTraceMiddleware

# The page is served from http://localhost:3000 and calls this API on http://127.0.0.1:8000:
# a different host (and port), so every call from the page is cross-origin.
FRONTEND_ORIGIN = os.environ.get("CORSTRACE_DEMO_FRONTEND_ORIGIN", "http://localhost:3000")

app = FastAPI(title="corstrace demo: items API")

app.add_middleware(
    CORSMiddleware,
    allow_origins=[FRONTEND_ORIGIN],
    # Imperfection 1: only GET and POST, so the browser's preflight for PUT /items/{id} fails and
    # the PUT is never sent.
    allow_methods=["GET", "POST"],
    # Imperfection 2: only Content-Type, so any request carrying `Authorization` fails its
    # preflight (GET /me below can never be called from the page).
    allow_headers=["Content-Type"],
    # Imperfection 3: allow_credentials is left at False, so the browser refuses to hand the page
    # the response to a request made with `credentials: 'include'` (GET /session), even a 200.
)

# Added last, so it is the outermost middleware and sees exactly what the browser sees: the request
# before CORSMiddleware answers a preflight, and the response after CORSMiddleware added (or did not
# add) its headers. It also sees exceptions that escape CORSMiddleware (GET /crash).
app.add_middleware(CORSTraceMiddleware)


class NewItem(BaseModel):
    name: str
    price: float = 0.0


class Item(NewItem):
    id: int


ITEMS: dict[int, Item] = {
    1: Item(id=1, name="keyboard", price=49.0),
    2: Item(id=2, name="mouse", price=19.5),
}


@app.get("/")
def index() -> dict[str, str]:
    return {"service": "corstrace demo items API", "frontend": FRONTEND_ORIGIN}


# Works cross-origin: a "simple" GET needs no preflight, and the origin is allowed.
# Asking for /items/ (with a slash) gets a 307 redirect to /items first: the browser follows it and
# the inspector shows both legs.
@app.get("/items")
def list_items() -> list[Item]:
    return list(ITEMS.values())


# Works cross-origin: a JSON body makes the browser send a preflight, and both POST and
# Content-Type are allowed.
@app.post("/items", status_code=201)
def create_item(item: NewItem) -> Item:
    created = Item(id=max(ITEMS, default=0) + 1, **item.model_dump())
    ITEMS[created.id] = created
    return created


# Blocked cross-origin (imperfection 1): PUT is not in allow_methods, so the preflight gets a 400.
@app.put("/items/{item_id}")
def replace_item(item_id: int, item: NewItem) -> Item:
    replaced = Item(id=item_id, **item.model_dump())
    ITEMS[item_id] = replaced
    return replaced


# Blocked cross-origin (imperfection 2): the Authorization header is not in allow_headers.
@app.get("/me")
def me(authorization: Annotated[str | None, Header()] = None) -> dict[str, str]:
    if authorization is None or not authorization.startswith("Bearer "):
        raise HTTPException(status_code=401, detail="missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    return {"user": "demo", "token": authorization.removeprefix("Bearer ")}


# Blocked cross-origin when called with credentials: 'include' (imperfection 3): the response has
# Access-Control-Allow-Origin but not Access-Control-Allow-Credentials: true.
@app.get("/session")
def session(session_id: Annotated[str | None, Cookie(alias="session")] = None) -> dict[str, str | bool | None]:
    return {"logged_in": session_id is not None, "session": session_id}


def load_dashboard() -> dict[str, int]:
    # A stand-in for a real dependency failing: the traceback points at this line.
    raise RuntimeError("database is down")


# Blocked cross-origin, though the real problem is a crash: the exception escapes CORSMiddleware, so
# the 500 that Starlette's error handler sends has no CORS headers and the page only sees
# "TypeError: Failed to fetch". corstrace logs the exception next to the CORS verdict.
@app.get("/crash")
def crash() -> dict[str, int]:
    return load_dashboard()

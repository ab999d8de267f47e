"""Planted secrets in every place issue 13 (item 5) found one leaking, and a search for them in any output.

Each planted secret is unique and searchable: its needles (the substrings whose presence in an output is a
leak) are random, alphanumeric (so JSON, URL and HTML escaping leave them as they are) and long enough never
to occur by chance. Secrets carried by a secret *name* (``X-Auth-Key``, ``?pwd=``) are deliberately dull
(lower-case letters only), so only the name can give them away; secrets under an innocent name are
realistic (a JWT, a ``secrets.token_urlsafe``-style string), so only their shape can.

Reuse it for end-to-end tests of every output::

    from tests.secrets_corpus import CORPUS, assert_no_leaks

    response = client.get(CORPUS.target, headers=CORPUS.request_headers)   # path + query, headers
    assert_no_leaks(captured_events, hub.records(), har_text, check_json)

- ``CORPUS.request_headers``: every request header that carries a planted secret, plus the CORS-relevant
  ones whose values must survive (``CORPUS.kept_request``); ``CORPUS.asgi_headers()`` as ASGI pairs.
- ``CORPUS.path``, ``CORPUS.query_string``, ``CORPUS.target``, ``CORPUS.url(base)``: the request target
  (secret query names, a JWT under ``?q=``, matrix parameters, token path segments).
- ``CORPUS.response_headers``: ``Location`` with userinfo, ``?code=`` and ``#access_token=``,
  ``Set-Cookie``, ``Link``, ``Refresh``, ``Content-Location``; ``CORPUS.kept_response`` must survive.
- ``CORPUS.exception_message``: what a careless app raises, quoting the request's own Authorization,
  Cookie and X-API-Key values and its URL.
- ``CORPUS.planted``: every :class:`Planted` secret; :func:`find_leaks` / :func:`assert_no_leaks` search any
  mix of strings, bytes and JSON-able objects (events, records, parsed JSON) for any of them.
- ``make_corpus(seed)`` builds a corpus with other random values.
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

__all__ = ["CORPUS", "Corpus", "Planted", "assert_no_leaks", "find_leaks", "make_corpus"]

FRONTEND = "http://localhost:5173"


@dataclass(frozen=True)
class Planted:
    """One planted secret: where it sits, its full value, and the substrings that betray it."""

    place: str
    value: str
    needles: tuple[str, ...]


@dataclass
class Corpus:
    """A request, a response and an exception message full of planted secrets (see the module docstring)."""

    request_headers: list[tuple[str, str]] = field(default_factory=list)
    kept_request: list[tuple[str, str]] = field(default_factory=list)
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    kept_response: list[tuple[str, str]] = field(default_factory=list)
    path: str = "/"
    query_string: str = ""
    exception_message: str = ""
    planted: list[Planted] = field(default_factory=list)

    @property
    def target(self) -> str:
        """Path and query, as a client sends them."""
        return f"{self.path}?{self.query_string}" if self.query_string else self.path

    def url(self, base: str = "http://api.test") -> str:
        return base + self.target

    def asgi_headers(self) -> list[tuple[bytes, bytes]]:
        """The request headers as an ASGI server hands them over (lower-case names, latin-1 bytes)."""
        return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in self.request_headers]

    def planted_in(self, place_prefix: str) -> list[Planted]:
        return [planted for planted in self.planted if planted.place.startswith(place_prefix)]


class _Builder:
    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.corpus = Corpus()
        self.used: set[str] = set()

    def dull(self, place: str, length: int = 14) -> str:
        """A secret only its name gives away: lower-case letters (no digits, no shape)."""
        value = self._unique(string.ascii_lowercase, length)
        self.plant(place, value, value)
        return value

    def random_token(self, place: str, length: int = 43) -> str:
        """A realistic token (the alphabet of ``secrets.token_urlsafe``) that only its shape gives away."""
        while True:
            value = self._unique(string.ascii_letters + string.digits + "-_", length)
            # Starting or ending with a separator makes a weak needle; draw again (rare).
            if value[0].isalnum() and value[-1].isalnum():
                break
        self.plant(place, value, value)
        return value

    def jwt(self, place: str) -> str:
        subject = self._unique(string.ascii_lowercase, 12)
        header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
        payload = _b64url(json.dumps({"sub": subject, "iat": 1700000000}).encode())
        signature = _b64url(self.random.randbytes(32))
        token = f"{header}.{payload}.{signature}"
        # The header is the same in every HS256 JWT: only the payload and the signature betray this one.
        self.plant(place, token, payload, signature, subject)
        return token

    def plant(self, place: str, value: str, *needles: str) -> None:
        self.corpus.planted.append(Planted(place, value, tuple(needles)))

    def _unique(self, alphabet: str, length: int) -> str:
        while True:
            value = "".join(self.random.choice(alphabet) for _ in range(length))
            if value not in self.used:
                self.used.add(value)
                return value


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# Header names issue 13 found leaking, and members of the families the redactor recognises.
SECRET_HEADER_NAMES = (
    "X-API-Key",
    "X-Auth-Key",
    "Ocp-Apim-Subscription-Key",
    "DPoP",
    "Authentication",
    "X-Access-Key",
    "X-Auth",
    "X-CSRF",
    "X-XSRF",
    "X-CSRF-Token",
    "X-XSRF-TOKEN",
    "X-Auth-Token",
    "X-Client-Credential",
    "X-Hub-Signature-256",
    "X-Goog-Api-Key",
    "X-Service-Authz",
    "X-Webhook-Secret",
    "X-Amz-Security-Token",
)
# Query parameter names issue 13 found leaking, and the ones redacted before.
SECRET_QUERY_NAMES = (
    "pwd",
    "pass",
    "jwt",
    "ticket",
    "otp",
    "SAMLResponse",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "sig",
    "token",
    "access_token",
    "id_token",
    "code",
    "password",
    "api_key",
    "client_secret",
    "apiKey",
)


def make_corpus(seed: int = 13) -> Corpus:
    """A corpus whose random values come from ``seed`` (the default one is :data:`CORPUS`)."""
    b = _Builder(seed)
    c = b.corpus

    # --- the request: credentials by name --------------------------------------------------------------
    bearer = b.dull("request header Authorization (after Bearer)")
    user_password = b.dull("request header Proxy-Authorization (Basic password)")
    basic = base64.b64encode(f"svc-user:{user_password}".encode()).decode()
    b.plant("request header Proxy-Authorization (Basic, encoded)", basic, basic.rstrip("="))
    session = b.dull("request header Cookie (session)")
    csrf_cookie = b.dull("request header Cookie (csrftoken)")
    api_key = ""
    c.request_headers += [
        ("Authorization", f"Bearer {bearer}"),
        ("Proxy-Authorization", f"Basic {basic}"),
        ("Cookie", f"session={session}; csrftoken={csrf_cookie}; theme=dark"),
    ]
    for name in SECRET_HEADER_NAMES:
        value = b.dull(f"request header {name}")
        if name == "X-API-Key":
            api_key = value
        c.request_headers.append((name, value))

    # --- the request: tokens in URLs and subprotocols ----------------------------------------------------
    ws_token = b.dull("request header Sec-WebSocket-Protocol (after access_token)")
    k8s_token = _b64url(b._unique(string.ascii_lowercase, 24).encode())
    b.plant("request header Sec-WebSocket-Protocol (k8s bearer)", k8s_token, k8s_token)
    referer_token = b.dull("request header Referer (?access_token=)")
    referer_fragment = b.dull("request header Referer (#id_token=)")
    c.request_headers += [
        ("Sec-WebSocket-Protocol", f"graphql-ws, access_token, {ws_token}"),
        ("Sec-WebSocket-Protocol", f"base64url.bearer.authorization.k8s.io.{k8s_token}"),
        ("Referer", f"{FRONTEND}/callback?access_token={referer_token}&view=list#id_token={referer_fragment}"),
    ]

    # --- the request: secrets under innocent names, found by their shape --------------------------------
    c.request_headers += [
        ("X-Debug-Context", b.jwt("request header X-Debug-Context (a JWT)")),
        ("X-Trace-Blob", b.random_token("request header X-Trace-Blob (a random token)")),
    ]

    # --- the request: what CORS needs, kept exactly ------------------------------------------------------
    c.kept_request = [
        ("Origin", FRONTEND),
        ("Content-Type", "application/json"),
        ("Sec-Fetch-Mode", "cors"),
        ("Sec-Fetch-Site", "same-site"),
        ("Sec-Fetch-Dest", "empty"),
        ("Accept", "application/json"),
        ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0"),
        ("X-Request-Id", "550e8400-e29b-41d4-a716-446655440000"),
        ("X-Tenant", "acme-corp"),
    ]
    c.request_headers += c.kept_request

    # --- the request target --------------------------------------------------------------------------
    jsession = b.dull("path matrix parameter ;jsessionid=")
    matrix_token = b.dull("path matrix parameter ;token=")
    reset = b.random_token("path segment after /reset/", 32)
    path_jwt = b.jwt("path segment (a JWT)")
    c.path = f"/api/orders;jsessionid={jsession};token={matrix_token}/reset/{reset}/files/{path_jwt}/download"
    query = [("page", "2")]
    for name in SECRET_QUERY_NAMES:
        query.append((name, b.dull(f"query parameter {name}=")))
    query.append(("q", b.jwt("query parameter q= (a JWT under an innocent name)")))
    query.append(("state", b.random_token("query parameter state= (a random token under an innocent name)")))
    query.append(("sort", "name"))
    c.query_string = "&".join(f"{name}={quote(value, safe='')}" for name, value in query)

    # --- the response ----------------------------------------------------------------------------------
    location_password = b.dull("response header Location (userinfo password)")
    location_code = b.dull("response header Location (?code=)")
    location_fragment = b.dull("response header Location (#access_token=)")
    content_location = b.dull("response header Content-Location (?access_token=)")
    set_cookie = b.dull("response header Set-Cookie (value)")
    link_token = b.dull("response header Link (?token=)")
    refresh_ticket = b.dull("response header Refresh (?ticket=)")
    response_secret = b.dull("response header X-Upstream-Auth-Token")
    c.response_headers = [
        (
            "Location",
            f"https://svc:{location_password}@login.other.test/next?code={location_code}&state=kept"
            f"#access_token={location_fragment}&token_type=bearer",
        ),
        ("Content-Location", f"/docs?access_token={content_location}"),
        ("Set-Cookie", f"sid={set_cookie}; Path=/; SameSite=None; Secure; HttpOnly"),
        ("Link", f'<https://api.other.test/items?page=3&token={link_token}>; rel="next"'),
        ("Refresh", f"0; url=https://other.test/landing?ticket={refresh_ticket}"),
        ("X-Upstream-Auth-Token", response_secret),
    ]
    c.kept_response = [
        ("Access-Control-Allow-Origin", FRONTEND),
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Allow-Headers", "authorization, x-api-key, x-csrf-token"),
        ("Access-Control-Expose-Headers", "x-request-id"),
        ("Vary", "Origin"),
        ("Content-Type", "application/json"),
        ("WWW-Authenticate", 'Bearer realm="api"'),
    ]
    c.response_headers += c.kept_response

    # --- what a careless app raises ---------------------------------------------------------------------
    c.exception_message = (
        f"upstream refused Authorization={f'Bearer {bearer}'!r} with Cookie "
        f"'session={session}; csrftoken={csrf_cookie}' and X-API-Key {api_key} for {c.url()}; "
        f"proxy login svc-user:{user_password} failed"
    )
    return c


CORPUS = make_corpus()


def _texts(output: Any) -> Iterable[str]:
    if isinstance(output, str):
        yield output
    elif isinstance(output, (bytes, bytearray)):
        yield bytes(output).decode("latin-1")
    else:
        # Events and records hold exceptions, tuples, dataclasses: default=str covers what JSON cannot encode;
        # repr() covers what a logger would print.
        yield json.dumps(output, default=str)
        yield repr(output)


def find_leaks(*outputs: Any, corpus: Corpus = CORPUS) -> list[tuple[Planted, str]]:
    """Every (planted secret, needle) found in any of ``outputs`` (strings, bytes, or JSON-able objects)."""
    texts = [text for output in outputs for text in _texts(output)]
    leaks: list[tuple[Planted, str]] = []
    for planted in corpus.planted:
        for needle in planted.needles:
            if any(needle in text for text in texts):
                leaks.append((planted, needle))
                break
    return leaks


def assert_no_leaks(*outputs: Any, corpus: Corpus = CORPUS) -> None:
    """Fail with the place of every planted secret found in ``outputs``."""
    leaks = find_leaks(*outputs, corpus=corpus)
    assert not leaks, "planted secrets leaked:\n" + "\n".join(
        f"  {planted.place}: {needle!r}" for planted, needle in leaks
    )

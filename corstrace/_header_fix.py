"""The fix ``corstrace check`` proposes: the headers each response of the exchange must carry, proven by replay.

``check`` talks to a server it cannot look into, so it cannot name a configuration option. It can say
what every leg's response needs (status and headers) for the browser to let the *whole* exchange
through in the page's credentials mode — the preflight, the actual request and each redirect hop —
and prove it: the exchange is played again with those changes applied to every answer, and each leg
is judged by the engine (:func:`corstrace.engine.evaluate`). The fix is *verified* only when every leg
of that replay was really answered by the server and passes.

The replay reuses the answers the server already gave. A leg the browser never reached (after the
blocked one) is sent for the replay only when it is harmless — a preflight, a GET or a HEAD. Any
other request the browser would not have sent is not sent (``check`` sends nothing the browser would
not): its answer is unknown, the headers it needs are still named, and the fix is not verified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from corstrace._check import Answer, CheckError, Exchange, LegKind, Patch, Send
from corstrace._fetch import is_token, split_list
from corstrace.engine import Headers, Request, Response, Verdict, evaluate

Sent = Literal["exchange", "replay", "not_sent"]
# run_exchange with the given send and patch: the same exchange, replayed.
Replay = Callable[[Send, Patch], Exchange]

_SAFE_TO_REPLAY = frozenset({"OPTIONS", "GET", "HEAD"})
_MAX_STEPS = 12  # each step fixes one reason; an exchange has far fewer than this
# Fetch upper-cases only these; a page's `patch` stays `patch`, which most servers answer 405.
_NORMALIZED = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"})
_NAMES = {
    name.lower(): name
    for name in (
        "Access-Control-Allow-Origin",
        "Access-Control-Allow-Credentials",
        "Access-Control-Allow-Methods",
        "Access-Control-Allow-Headers",
        "Vary",
        "Location",
    )
}


@dataclass(frozen=True, slots=True)
class LegChange:
    """What one leg's response must change for the browser to let it through."""

    kind: LegKind
    hop: int
    method: str
    url: str
    status: int | None  # what the server answered; None when the request was not sent
    new_status: int | None  # the status to answer with instead, when it must change
    set_headers: Headers  # each replaces every line of that name
    remove_headers: tuple[str, ...]
    sent: Sent  # answered in the checked exchange, sent only for the replay, or not sent at all
    passes: bool  # the engine allows the leg with the change applied

    @property
    def changed(self) -> bool:
        return bool(self.new_status is not None or self.set_headers or self.remove_headers)


@dataclass(frozen=True, slots=True)
class HeaderFix:
    """Every leg of the exchange with what its response must change, and whether that is proven."""

    legs: tuple[LegChange, ...]
    verified: bool
    why_not_verified: str | None = None
    page_note: str | None = None  # a change the page must make instead (a lower-case method)


class Recorder:
    """A ``send`` that remembers every answer, so a replay reuses them instead of asking the server again."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.answers: dict[tuple[str, str, Headers, bool], Answer] = {}

    def __call__(self, method: str, url: str, headers: Headers, with_cookies: bool) -> Answer:
        answer = self._send(method, url, headers, with_cookies)
        self.answers[(method, url, headers, with_cookies)] = answer
        return answer


class _ReplaySend:
    """Answers a replay: the recorded answer, else the server's for a harmless request, else no answer."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self.sent: list[Sent] = []

    def __call__(self, method: str, url: str, headers: Headers, with_cookies: bool) -> Answer:
        recorded = self._recorder.answers.get((method, url, headers, with_cookies))
        if recorded is not None:
            self.sent.append("exchange")
            return recorded
        if method in _SAFE_TO_REPLAY:
            self.sent.append("replay")
            return self._recorder(method, url, headers, with_cookies)
        self.sent.append("not_sent")
        return Answer(200, (), headers)  # unknown: judged as an answer with no CORS headers at all


def _set(headers: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    lowered = name.lower()
    return [*(pair for pair in headers if pair[0].lower() != lowered), (_NAMES.get(lowered, name), value)]


def _get(headers: list[tuple[str, str]], name: str) -> str | None:
    values = [value for key, value in headers if key.lower() == name]
    return ", ".join(values) if values else None


def _with_items(current: str | None, wanted: list[str]) -> str:
    """A list header's value with ``wanted`` added: its valid items kept, in order, each once."""
    items = [item for item in split_list(current or "") if is_token(item)]
    lowered = {item.lower() for item in items}
    return ", ".join([*items, *(item for item in wanted if item.lower() not in lowered)])


def _step(verdict: Verdict, status: int, headers: list[tuple[str, str]]) -> tuple[int, list[tuple[str, str]]] | None:
    """One change that removes the verdict's reason, or None when no header can."""
    reason = verdict.reason or ""
    base = reason.removeprefix("Preflight")
    if base in (
        "MissingAllowOriginHeader",
        "AllowOriginMismatch",
        "MultipleAllowOriginValues",
        "InvalidAllowOriginValue",
        "WildcardOriginNotAllowed",
    ):
        if verdict.origin is None:
            return None
        headers = _set(headers, "access-control-allow-origin", verdict.origin)
        vary = _get(headers, "vary")
        if verdict.origin != "null" and "origin" not in {item.lower() for item in split_list(vary or "")}:
            headers = _set(headers, "vary", _with_items(vary, ["Origin"]))
        return status, headers
    if base == "InvalidAllowCredentials":
        return status, _set(headers, "access-control-allow-credentials", "true")
    if reason == "PreflightInvalidStatus":
        return 204, headers
    if reason == "PreflightDisallowedRedirect":
        return 204, [pair for pair in headers if pair[0].lower() != "location"]
    if reason in ("InvalidAllowMethodsPreflightResponse", "MethodDisallowedByPreflightResponse"):
        method = verdict.requested_method or verdict.method
        return status, _set(
            headers,
            "access-control-allow-methods",
            _with_items(_get(headers, "access-control-allow-methods"), [method]),
        )
    if reason in ("InvalidAllowHeadersPreflightResponse", "HeaderDisallowedByPreflightResponse"):
        current = _get(headers, "access-control-allow-headers")
        return status, _set(
            headers, "access-control-allow-headers", _with_items(current, list(verdict.requested_headers))
        )
    if reason == "RedirectContainsCredentials":
        location = _get(headers, "location")
        return (status, _set(headers, "location", _without_userinfo(location))) if location else None
    return None


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def make_pass(request: Request, answer: Answer) -> tuple[Answer, bool]:
    """``answer`` changed, one reason at a time, until the engine lets ``request`` through (or nothing more helps)."""
    status, headers = answer.status, list(answer.headers)
    for _ in range(_MAX_STEPS):
        verdict = evaluate(request, Response(status, tuple(headers)))
        if verdict.verdict == "allowed":
            return answer._replace(status=status, headers=tuple(headers)), True
        step = _step(verdict, status, headers)
        if step is None:
            break
        status, headers = step
    return answer._replace(status=status, headers=tuple(headers)), False


def _change(before: Answer, after: Answer) -> tuple[int | None, Headers, tuple[str, ...]]:
    """The status to answer with (None: unchanged), the headers to set and the header names to remove."""
    old = {name.lower() for name, _ in before.headers}
    new = {name.lower() for name, _ in after.headers}
    kept = set(before.headers)
    set_headers = tuple(pair for pair in after.headers if pair not in kept)
    changed = {name.lower() for name, _ in set_headers}
    removed = tuple(sorted(name for name in old - new - changed))
    return (after.status if after.status != before.status else None), set_headers, removed


def header_fix(replay: Replay, recorder: Recorder) -> HeaderFix:
    """Replay the recorded exchange with every answer made to pass; the changes, and whether they are proven."""
    answers = _ReplaySend(recorder)
    changes: list[tuple[LegKind, Request, Answer, Answer, bool]] = []

    def patch(kind: LegKind, request: Request, answer: Answer) -> Answer:
        fixed, passes = make_pass(request, answer)
        changes.append((kind, request, answer, fixed, passes))
        return fixed

    failure: str | None = None
    exchange: Exchange | None = None
    try:
        exchange = replay(answers, patch)
    except CheckError as exc:
        failure = f"the replay stopped: {exc}"
    legs = []
    hop = 0
    for index, (kind, request, before, after, passes) in enumerate(changes):
        sent = answers.sent[index] if index < len(answers.sent) else "not_sent"
        new_status, set_headers, removed = _change(before, after)
        legs.append(
            LegChange(
                kind, hop, request.method, request.url, None if sent == "not_sent" else before.status,
                new_status, set_headers, removed, sent, passes,
            )
        )  # fmt: skip
        if kind == "actual":
            hop += 1  # an actual request is followed only by the hop it redirects to
    unsent = [leg for leg in legs if leg.sent == "not_sent"]
    if failure is None and unsent:
        failure = (
            f"the {unsent[0].method} request was not sent (the browser stops before it, and check sends nothing "
            "the browser would not), so its answer is unknown"
        )
    if failure is None and not all(leg.passes for leg in legs):
        failure = "no change of headers makes every leg pass"
    if failure is None and (exchange is None or not exchange.allowed):
        failure = "the replayed exchange is still blocked"
    return HeaderFix(tuple(legs), failure is None, failure, _page_note(legs))


def _page_note(legs: list[LegChange]) -> str | None:
    for leg in legs:
        method = leg.method if leg.kind == "actual" else None
        if method and method != method.upper() and method.upper() in _NORMALIZED | {"PATCH"}:
            return (
                f"The page sends `{method}` in lower case, and Fetch upper-cases only DELETE, GET, HEAD, OPTIONS, "
                f"POST and PUT: listing `{method}` passes CORS, but the route most likely answers 405. Fix the page "
                f"instead: `method: '{method.upper()}'`."
            )
    return None

"""The ingest protocol between worker processes and a collector (``corstrace inspector``): names, proofs, addresses.

One collector serves the inspector page for every worker and app that points at it (Sentry Spotlight's sidecar
model). A worker publishes over a WebSocket to ``ws://<loopback>:<port>/_corstrace/ingest``:

1. the handshake carries **no** ``Origin`` (every browser sends one on a WebSocket handshake, so a page can
   never be a publisher), no ``Sec-Fetch-*`` header, the subprotocol ``corstrace.ingest.v1`` and a random
   client nonce in ``Corstrace-Nonce``; the collector refuses anything else with a 403, before accepting;
2. collector → ``{"type": "challenge", "nonce": S, "proof": HMAC(token, "collector", C, S)}``: the worker checks
   the collector knows the inspector token *before it sends anything* (a program squatting the port learns no
   token and gets no record);
3. worker → ``{"type": "hello", "proof": HMAC(token, "publisher", C, S), "instance", "process": {"pid", "name"},
   "version"}``: the collector checks the worker knows the token; the token itself never crosses the wire;
4. collector → ``{"type": "welcome", "epoch", "resume"}``: ``resume`` is the last worker ``seq`` this collector
   already has from that ``instance`` (null when it never saw it: a restarted collector), so a reconnect neither
   loses nor repeats records;
5. then worker → ``{"type": "records", "records": [...]}`` (the worker hub's records, each with the worker's
   ``seq``), ``{"type": "lint", "findings": [...]}`` and ``{"type": "dropped", "count", "total"}``; collector →
   ``{"type": "ack", "seq"}`` after each ``records`` frame.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

INGEST_PATH = "/_corstrace/ingest"
PAGE_PREFIX = "/_corstrace"
INGEST_PROTOCOL = "corstrace.ingest.v1"
NONCE_HEADER = "corstrace-nonce"
# "CORS" on a phone keypad; below Linux's ephemeral range (32768-60999), so no outgoing connection holds it.
DEFAULT_PORT = 2677
COLLECTOR_ENV = "CORSTRACE_COLLECTOR"
PROCESS_NAME_ENV = "CORSTRACE_PROCESS_NAME"

NONCE = re.compile(r"[0-9a-f]{32}")
INSTANCE = re.compile(r"[0-9a-f]{8,32}")
PROOF = re.compile(r"[0-9a-f]{64}")
# The largest frame either side sends: a records frame is cut at FRAME_BYTES, plus one record of at most
# the hub's MAX_RECORD_BYTES (256 KiB) and the envelope.
FRAME_BYTES = 512 * 1024
FRAME_RECORDS = 200
MAX_MESSAGE_BYTES = 2 * 2**20
MAX_NAME_LENGTH = 120

_ROLES = {"collector": b"corstrace-collector-v1", "publisher": b"corstrace-publisher-v1"}


def proof(token: str, role: str, client_nonce: str, server_nonce: str) -> str:
    """What ``role`` ("collector" or "publisher") sends to show it knows ``token``, for this pair of nonces.

    Both nonces are in both proofs, each side's label in its own: neither proof can be replayed on another
    connection nor reflected back to its sender.
    """
    message = b"\n".join((_ROLES[role], client_nonce.encode("ascii"), server_nonce.encode("ascii")))
    return hmac.new(token.encode("utf-8"), message, hashlib.sha256).hexdigest()


def proof_matches(token: str, role: str, client_nonce: str, server_nonce: str, presented: object) -> bool:
    """Whether ``presented`` is ``role``'s proof (constant-time)."""
    if not isinstance(presented, str) or not PROOF.fullmatch(presented):
        return False
    return hmac.compare_digest(proof(token, role, client_nonce, server_nonce), presented)


@dataclass(frozen=True, slots=True)
class CollectorAddress:
    """Where a collector listens: a loopback host (as written, for ``Host``) and its port."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """``http://host:port``, the form ``CORSTRACE_COLLECTOR`` takes."""
        return f"http://{_bracketed(self.host)}:{self.port}"

    @property
    def connect_hosts(self) -> tuple[str, ...]:
        """The addresses to try, in order: ``localhost`` is never looked up (no DNS, no rebinding)."""
        if self.host == "localhost":
            return ("127.0.0.1", "::1")
        return (self.host,)

    def page_url(self, token: str) -> str:
        """The inspector page's URL, its token in the fragment (which never reaches a server)."""
        from urllib.parse import quote

        return f"{self.url}{PAGE_PREFIX}/#token={quote(token, safe='')}"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def is_loopback_name(host: str) -> bool:
    """``localhost``, or a literal loopback address (never a DNS name: rebinding turns those into anything)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"", "0", "false", "no", "off"})


def parse_address(value: str | bool) -> CollectorAddress | None:
    """A collector address from ``True`` (the default one), ``http://127.0.0.1:2677``, ``127.0.0.1:2677`` or a
    bare port; None for ``False`` and the usual spellings of "off". Raises ValueError saying what is wrong."""
    if value is True:
        return CollectorAddress("127.0.0.1", DEFAULT_PORT)
    if value is False:
        return None
    if not isinstance(value, str):
        msg = f"`collector` must be a URL like 'http://127.0.0.1:{DEFAULT_PORT}', True or False, got {value!r}."
        raise ValueError(msg)
    text = value.strip()
    if text.lower() in _OFF:
        return None
    if text.lower() in _ON:
        return CollectorAddress("127.0.0.1", DEFAULT_PORT)
    if text.isdigit():
        text = f"127.0.0.1:{text}"
    if "://" not in text:
        text = "http://" + text
    example = f"http://127.0.0.1:{DEFAULT_PORT}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        msg = f"The collector address {value!r} is not a URL like {example}."
        raise ValueError(msg) from None
    if parts.scheme not in ("http", "ws"):
        msg = f"The collector address {value!r} must use http:// (the collector listens on loopback, without TLS)."
        raise ValueError(msg)
    host = (parts.hostname or "").lower()
    if not host:
        msg = f"The collector address {value!r} names no host; use {example}."
        raise ValueError(msg)
    if not is_loopback_name(host):
        msg = (
            f"The collector address {value!r} is not on this machine: corstrace only publishes to a loopback "
            f"collector (localhost, 127.0.0.1, [::1]), since records carry your requests' headers."
        )
        raise ValueError(msg)
    if parts.path not in ("", "/", PAGE_PREFIX, PAGE_PREFIX + "/") or parts.query or parts.username:
        msg = f"The collector address {value!r} must be just a scheme, host and port, like {example}."
        raise ValueError(msg)
    return CollectorAddress(host, port or DEFAULT_PORT)


def collector_address(option: str | bool | None) -> CollectorAddress | None:
    """The collector a worker publishes to: the ``collector`` option, else ``CORSTRACE_COLLECTOR``, else none.

    A bad option raises ValueError (the code says so); a bad environment value is reported once as a warning and
    ignored, so a stray variable never takes an application down.
    """
    import os

    if option is not None:
        return parse_address(option)
    value = os.environ.get(COLLECTOR_ENV, "")
    try:
        return parse_address(value)
    except ValueError as exc:
        from corstrace._log import logger

        logger.warning("corstrace.collector", problem="bad_environment", message=f"{COLLECTOR_ENV} is ignored: {exc}")
        return None

"""Firefox ESR's CORS console lines, read over Marionette.

Firefox reports CORS failures as ``nsIScriptError`` entries in the parent process's console service,
not as page console events, so neither Playwright nor WebDriver BiDi ``console`` events see them.
This harness starts Debian's ``firefox-esr`` headless with a fresh profile and Marionette enabled,
speaks Marionette's JSON-over-TCP protocol (``<length>:<json>`` frames), runs page script in the
content context and reads ``Services.console.getMessageArray()`` in the chrome context.

Use the session-scoped :func:`firefox` fixture (import it into a test module); it skips when
``firefox-esr`` is not installed. One browser serves the whole session: starting one takes seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Quiet, deterministic profile: no first-run pages, no network chatter, Marionette on a free port
# (port 0: Firefox writes the port it picked to <profile>/MarionetteActivePort).
_PREFS = {
    "marionette.port": 0,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.aboutwelcome.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "app.update.enabled": False,
    "app.update.auto": False,
    "app.normandy.enabled": False,
    "extensions.update.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "browser.newtabpage.enabled": False,
    "browser.region.update.enabled": False,
    "services.settings.server": "http://127.0.0.1:9/",
    "network.proxy.type": 0,
    "dom.disable_open_during_load": False,
    # Several tests load many cross-origin requests; keep Firefox from throttling background work.
    "dom.min_background_timeout_value": 4,
}

_CORS_MESSAGES = """
const lines = [];
for (const message of Services.console.getMessageArray() || []) {
  if (message instanceof Ci.nsIScriptError && (message.category || "").startsWith("CORS")) {
    lines.push([message.category, message.errorMessage]);
  }
}
return lines;
"""


# Resolves once the console service holds a message containing the needle: checks what is there, then listens.
_WAIT_FOR_MESSAGE = """
const [needle, done] = arguments;
const text = (message) => (message instanceof Ci.nsIScriptError ? message.errorMessage : message.message) || "";
if ((Services.console.getMessageArray() || []).some((message) => text(message).includes(needle))) {
  return done(true);
}
const listener = {
  QueryInterface: ChromeUtils.generateQI(["nsIConsoleListener"]),
  observe(message) {
    if (text(message).includes(needle)) {
      Services.console.unregisterListener(listener);
      done(true);
    }
  },
};
Services.console.registerListener(listener);
"""


def firefox_path() -> str | None:
    """The Firefox ESR binary to drive, or None when none is installed."""
    for candidate in (os.environ.get("CORSTRACE_FIREFOX"), "/usr/bin/firefox-esr", shutil.which("firefox-esr")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


class MarionetteError(RuntimeError):
    """Marionette answered a command with an error."""


class Firefox:
    """One headless Firefox and one Marionette session on it."""

    def __init__(self, binary: str) -> None:
        self._profile = Path(tempfile.mkdtemp(prefix="corstrace-firefox-"))
        (self._profile / "user.js").write_text(
            "".join(f'user_pref("{name}", {json.dumps(value)});\n' for name, value in _PREFS.items())
        )
        self._process = subprocess.Popen(
            [binary, "--headless", "--marionette", "-remote-allow-system-access", "--no-remote"]
            + ["-profile", str(self._profile)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "MOZ_HEADLESS": "1"},
        )
        self._buffer = b""
        self._next_id = 0
        self._context = "content"
        try:
            self._socket = self._connect()
            self._read_frame()  # the server's hello: {"applicationType": "gecko", "marionetteProtocol": 3}
            # A whole batch of cases runs in one async script; a stuck one fails after two minutes, not 30 s.
            capabilities = {"acceptInsecureCerts": True, "timeouts": {"script": 120_000}}
            self.command("WebDriver:NewSession", {"capabilities": {"alwaysMatch": capabilities}})
        except BaseException:
            self._stop()
            raise

    def _connect(self) -> socket.socket:
        port_file = self._profile / "MarionetteActivePort"
        deadline = time.monotonic() + 60
        # Firefox offers no readiness signal a test could await: poll for the port file, then the socket.
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"firefox-esr exited with status {self._process.returncode} before Marionette")
            if time.monotonic() > deadline:
                raise RuntimeError("Marionette did not start within 60 s")
            text = port_file.read_text().strip() if port_file.exists() else ""
            if text.isdigit():
                with contextlib.suppress(OSError):
                    return socket.create_connection(("127.0.0.1", int(text)), timeout=60)
            time.sleep(0.05)

    def _read_frame(self) -> Any:
        while b":" not in self._buffer:
            self._receive()
        length, _, rest = self._buffer.partition(b":")
        size = int(length)
        while len(rest) < size:
            self._receive()
            length, _, rest = self._buffer.partition(b":")
        self._buffer = rest[size:]
        return json.loads(rest[:size])

    def _receive(self) -> None:
        chunk = self._socket.recv(65536)
        if not chunk:
            raise RuntimeError("Marionette closed the connection")
        self._buffer += chunk

    def command(self, name: str, params: dict[str, Any] | None = None) -> Any:
        """Send one Marionette command and return its result (MarionetteError on an error reply)."""
        self._next_id += 1
        payload = json.dumps([0, self._next_id, name, params or {}]).encode()
        self._socket.sendall(str(len(payload)).encode() + b":" + payload)
        while True:
            kind, message_id, error, result = self._read_frame()
            if kind == 1 and message_id == self._next_id:
                break
        if error:
            raise MarionetteError(f"{name}: {error.get('error')}: {error.get('message')}")
        return result.get("value") if isinstance(result, dict) and set(result) == {"value"} else result

    def _set_context(self, context: str) -> None:
        if context != self._context:
            self.command("Marionette:SetContext", {"value": context})
            self._context = context

    def navigate(self, url: str) -> None:
        """Load ``url`` in the tab and wait for it to finish loading."""
        self._set_context("content")
        self.command("WebDriver:Navigate", {"url": url})

    def run(self, script: str, *args: Any) -> Any:
        """Run an async page function ``script`` (``async (...args) => value``) in the tab; return its value."""
        self._set_context("content")
        body = f"const done = arguments[arguments.length - 1]; ({script})(...Array.from(arguments).slice(0, -1))"
        body += ".then(done, (error) => done('script error: ' + error));"
        return self.command("WebDriver:ExecuteAsyncScript", {"script": body, "args": list(args)})

    def cors_messages(self) -> list[tuple[str, str]]:
        """Every CORS console entry so far, as ``(category, text)``, oldest first."""
        self._set_context("chrome")
        return [tuple(item) for item in self.command("WebDriver:ExecuteScript", {"script": _CORS_MESSAGES, "args": []})]

    def wait_for_console(self, needle: str) -> None:
        """Block until a console entry containing ``needle`` has been logged (MarionetteError on timeout)."""
        self._set_context("chrome")
        self.command("WebDriver:ExecuteAsyncScript", {"script": _WAIT_FOR_MESSAGE, "args": [needle]})

    def clear_console(self) -> None:
        """Forget the console entries logged so far."""
        self._set_context("chrome")
        self.command("WebDriver:ExecuteScript", {"script": "Services.console.reset(); return true;", "args": []})

    def close(self) -> None:
        """End the session, stop the browser and delete its profile."""
        with contextlib.suppress(Exception):
            self.command("WebDriver:DeleteSession")
        with contextlib.suppress(OSError):
            self._socket.close()
        self._stop()

    def _stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=20)
        shutil.rmtree(self._profile, ignore_errors=True)


@pytest.fixture(scope="session")
def firefox() -> Iterator[Firefox]:
    """A headless Firefox ESR over Marionette, shared by the session; skips when firefox-esr is missing."""
    binary = firefox_path()
    if binary is None:
        pytest.skip("Firefox ESR is not installed (apt-get install -y firefox-esr); .ci/run installs it")
    browser = Firefox(binary)
    try:
        yield browser
    finally:
        browser.close()

"""A minimal headless-Chromium driver: the Chrome DevTools Protocol over ``--remote-debugging-pipe``.

Why a pipe: it needs only the standard library (no websocket client, no port to pick or race
for). Chromium reads NUL-terminated JSON commands from fd 3 and writes replies and events to
fd 4; the child moves our pipe ends onto those numbers between fork and exec.
One browser, one page, flat sessions; enough to load a file or an http URL, run JS, wait for a
condition, type into an input, press a key and take a screenshot.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"

#: Flags for a sandboxed CI machine with no network (see the machine notes: without the
#: background-networking flags Chromium keeps trying to reach Google's hosts).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)


class CDPError(RuntimeError):
    """The browser answered a command with an error, or died, or timed out."""


def chromium_path() -> str | None:
    """The Chromium binary to use, or None when it is not installed."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium")


def require_chromium() -> str:
    """The Chromium binary for a browser test: a failure on CI (where .ci/run installs it), a
    skip elsewhere."""
    import pytest

    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but /usr/bin/chromium is missing: .ci/run should have installed it")
        pytest.skip("Chromium is not installed (apt-get install chromium); CI installs it and runs this test")
    return path


def _high_fd(fd: int) -> int:
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class Browser:
    """A headless Chromium with one page attached; use as a context manager."""

    def __init__(self, binary: str, *, timeout: float = 60.0, width: int = 1280, height: int = 900) -> None:
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="attrret-chromium-")
        cmd_r, self._cmd_w = os.pipe()
        self._resp_r, resp_w = os.pipe()
        # Move the child's ends above 9 so that dup2 onto 3 and 4 cannot clobber one with the other.
        cmd_r, resp_w = _high_fd(cmd_r), _high_fd(resp_w)
        args = [binary, *FLAGS, f"--user-data-dir={self._profile.name}", f"--window-size={width},{height}", "about:blank"]
        self._stderr = tempfile.TemporaryFile()

        def onto_3_and_4() -> None:  # runs in the child between fork and exec
            os.dup2(cmd_r, 3)  # dup2 makes 3 and 4 inheritable; every other fd is close-on-exec
            os.dup2(resp_w, 4)

        # close_fds=False so that 3 and 4 survive; Python opens every other fd close-on-exec (PEP 446).
        self._proc = subprocess.Popen(
            args,
            preexec_fn=onto_3_and_4,
            close_fds=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        os.close(cmd_r)  # the child has its copies; ours would hide Chromium's exit from read()
        os.close(resp_w)
        self._buf = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self.session: str | None = None
        try:
            target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
            attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)
            self.session = attached["sessionId"]
            self.send("Page.enable")
            self.send("Network.enable")
            metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
            self.send("Emulation.setDeviceMetricsOverride", metrics)
        except BaseException:
            self.close()  # never leave a browser running behind a failed start
            raise

    # -- protocol -----------------------------------------------------------------------
    def send(self, method: str, params: dict[str, Any] | None = None, *, session: bool = True) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self._events.append(reply)

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._resp_r], [], [], max(0.0, left))
            if not ready:
                raise CDPError(f"no answer from Chromium in {self.timeout:.0f} s{self._stderr_tail()}")
            chunk = os.read(self._resp_r, 1 << 20)
            if not chunk:
                raise CDPError(f"Chromium closed the pipe (exit {self._proc.poll()}){self._stderr_tail()}")
            self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)

    def wait_event(self, method: str) -> dict[str, Any]:
        """Return the first (kept or new) event named ``method``, removing it from the queue."""
        while True:
            for i, ev in enumerate(self._events):
                if ev["method"] == method:
                    return self._events.pop(i)
            reply = self._read()
            if "method" in reply:
                self._events.append(reply)

    def events(self, method: str) -> list[dict[str, Any]]:
        return [ev for ev in self._events if ev["method"] == method]

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        tail = self._stderr.read()[-2000:].decode(errors="replace").strip()
        return f"; stderr: {tail}" if tail else ""

    # -- conveniences -------------------------------------------------------------------
    def open(self, path: Path) -> None:
        """Navigate to a local file and wait for its load event."""
        self._events.clear()
        self.send("Page.navigate", {"url": Path(path).resolve().as_uri()})
        self.wait_event("Page.loadEventFired")

    def navigate(self, url: str) -> None:
        """Navigate to any URL (e.g. ``http://127.0.0.1:PORT/``) and wait for its load event."""
        self._events.clear()
        res = self.send("Page.navigate", {"url": url})
        if res.get("errorText"):
            raise CDPError(f"navigate {url}: {res['errorText']}")
        self.wait_event("Page.loadEventFired")

    def wait_for(self, expression: str, *, timeout: float | None = None, interval: float = 0.05) -> Any:
        """Evaluate ``expression`` until it returns a truthy value and return that value.

        A condition to wait for, not a timing assertion: the deadline (default: the browser's
        ``timeout``) only bounds a page that never gets there, and the error names the last value.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise CDPError(f"waited {timeout or self.timeout:.0f} s for {expression!r}; last value {value!r}")
            time.sleep(interval)

    def focus(self, selector: str) -> None:
        """Give the keyboard focus to the first element matching ``selector``."""
        found = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                              "if (!e) return false; e.focus(); return document.activeElement === e; })()")
        if not found:
            raise CDPError(f"no focusable element matches {selector!r}")

    def insert_text(self, selector: str, text: str) -> None:
        """Focus ``selector`` and type ``text`` into it as the keyboard would (``input`` events fire)."""
        self.focus(selector)
        self.send("Input.insertText", {"text": text})

    def press_key(self, key: str = "Enter") -> None:
        """Press and release one key (``Enter``, ``Tab``, ``Escape``) on the focused element."""
        codes = {"Enter": (13, "\r"), "Tab": (9, ""), "Escape": (27, ""), "Backspace": (8, "")}
        if key not in codes:
            raise ValueError(f"press_key knows {', '.join(codes)}, not {key!r}")
        vk, text = codes[key]
        down = {"type": "keyDown" if text else "rawKeyDown", "key": key, "code": key, "windowsVirtualKeyCode": vk,
                "nativeVirtualKeyCode": vk}
        if text:
            down["text"] = down["unmodifiedText"] = text
        self.send("Input.dispatchKeyEvent", down)
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "code": key, "windowsVirtualKeyCode": vk,
                                             "nativeVirtualKeyCode": vk})

    def evaluate(self, expression: str) -> Any:
        """Evaluate JS in the page (awaiting a returned promise) and return its JSON value."""
        res = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in res:
            raise CDPError(f"JS error: {res['exceptionDetails']}")
        return res["result"].get("value")

    def screenshot(self, out: Path, *, full_page: bool = False) -> bytes:
        """Write a PNG of the page (the viewport, or the whole page)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = base64.b64decode(self.send("Page.captureScreenshot", params)["data"])
        Path(out).write_bytes(data)
        return data

    def close(self) -> None:
        try:
            if self._proc.poll() is None:
                try:
                    self.send("Browser.close", session=False)
                except (CDPError, OSError):
                    pass
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
        finally:
            for fd in (self._cmd_w, self._resp_r):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._stderr.close()
            self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

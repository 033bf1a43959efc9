"""Headless Chromium for the tests, driven over the DevTools protocol.

``open_page(path)`` loads a local file in a fresh headless Chromium and returns what a person would
get: the page's text, how many inline charts it drew, a screenshot, and every network request the
*page* made (the browser's own background traffic, such as update checks, is not the page's and is
not listed). Chromium is found on the PATH (Debian's ``chromium`` package); ``find_chromium()`` is
None where it is not installed.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import websocket

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
    "--window-size=1000,1400",
]


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@dataclass(frozen=True)
class Page:
    text: str  # document.body.innerText
    svg_count: int
    requests: list[str]  # the URLs the page asked for, the page itself included
    failed: list[str]  # requests that failed, with their error
    screenshot: bytes  # PNG of the first screen
    values: dict  # what the extra expressions gave


class _DevTools:
    def __init__(self, url: str):
        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            event = json.loads(self.ws.recv())
            if event.get("method") == method:
                return event
            self.events.append(event)


def open_page(path: Path, chromium: str, expressions: dict[str, str] | None = None) -> Page:
    """Load ``path`` (a local file) and report on it; ``expressions`` are JavaScript evaluated
    in the loaded page, by name."""
    # Chromium's helper processes (renderer, crash handler) write into the profile after the
    # browser process is gone: the whole process group is ended before the profile is removed
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        process = subprocess.Popen(
            [chromium, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        try:
            url = _devtools_url(process)
            tools = _DevTools(url)
            target = tools.call("Target.createTarget", url="about:blank")["targetId"]
            session = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            tools.call("Network.enable", session)
            tools.call("Page.enable", session)
            tools.call("Page.navigate", session, url=path.resolve().as_uri())
            tools.wait_for("Page.loadEventFired")

            def evaluate(expression: str):
                return tools.call("Runtime.evaluate", session, expression=expression, returnByValue=True)["result"].get("value")

            text = evaluate("document.body.innerText")
            svg_count = evaluate("document.querySelectorAll('svg').length")
            values = {name: evaluate(expression) for name, expression in (expressions or {}).items()}
            shot = base64.b64decode(tools.call("Page.captureScreenshot", session, format="png")["data"])
            requests = [e["params"]["request"]["url"] for e in tools.events if e.get("method") == "Network.requestWillBeSent"]
            failed = [
                f"{e['params'].get('errorText')}" for e in tools.events if e.get("method") == "Network.loadingFailed"
            ]
            tools.ws.close()
            return Page(text, svg_count, requests, failed, shot, values)
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
            process.stderr.close()


def _devtools_url(process: subprocess.Popen) -> str:
    """The browser's DevTools address, from the line Chromium prints when it listens."""
    seen = []
    for line in process.stderr:
        if line.startswith("DevTools listening on "):
            return line.removeprefix("DevTools listening on ").strip()
        seen.append(line)
    raise RuntimeError("Chromium exited before it listened for DevTools:\n" + "".join(seen[-20:]))

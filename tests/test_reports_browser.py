"""Every report page in headless Chromium: no console error, no blank plot, a screenshot.

Chromium is driven over the DevTools protocol (a small stdlib websocket client below), so
console messages, uncaught exceptions and failed loads (a missing plotly.min.js) are all
seen, and each plot's rendered marks are counted in the page itself. Skips with a reason
where Chromium is not installed (`.ci/run` installs Debian's package). Screenshots go to
``$MEMSIM_SCREENSHOT_DIR`` if set, else to pytest's temporary directory.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1400,1000", "--remote-debugging-port=0",
)
TIMEOUT_S = 30.0

# Runs in the page: steps every animated plot to its last frame (plotly frames), so a frame
# that fails to draw shows up as a console error or a blank plot. Resolves to the number of
# frames visited.
ANIMATE_TO_LAST_FRAME = """(async () => {
  let frames = 0;
  for (const d of document.querySelectorAll('.plotly-graph-div')) {
    const names = ((d._transitionData || {})._frames || []).map(f => f.name);
    if (!names.length) continue;
    await Plotly.animate(d, [names[names.length - 1]], {mode: 'immediate',
        frame: {duration: 0, redraw: true}, transition: {duration: 0}});
    frames += names.length;
  }
  return frames;
})()"""

# Runs in the page: for each plotly div, its trace count, size and drawn marks
# (non-empty SVG paths and heatmap images inside the plot area).
PLOT_PROBE = """JSON.stringify(Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => {
  const marks = Array.from(d.querySelectorAll('.cartesianlayer .overplot path, '
      + '.cartesianlayer .overplot image')).filter(e => e.tagName.toLowerCase() === 'image'
      || (e.getAttribute('d') || '').length > 2);
  const r = d.getBoundingClientRect();
  return {id: d.id, traces: (d._fullData || []).length, marks: marks.length,
          width: r.width, height: r.height};
}))"""


def _chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class DevTools:
    """A minimal DevTools-protocol client over one websocket (RFC 6455, client side)."""

    def __init__(self, ws_url: str) -> None:
        url = urlparse(ws_url)
        self.sock = socket.create_connection((url.hostname, url.port), timeout=TIMEOUT_S)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {url.path} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            response += chunk
        if b" 101 " not in response.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {response[:200]!r}")
        self._buffer = response.split(b"\r\n\r\n", 1)[1]
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            self._buffer += chunk
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def _send_frame(self, payload: bytes, opcode: int = 0x1) -> None:
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _receive(self) -> dict[str, Any]:
        message = b""
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            if opcode == 0x9:  # ping
                self._send_frame(payload, 0xA)
                continue
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the websocket")
            message += payload
            if b0 & 0x80:
                return json.loads(message)

    def call(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        request: dict[str, Any] = {"id": self._next_id, "method": method,
                                   "params": params or {}}
        if session:
            request["sessionId"] = session
        self._send_frame(json.dumps(request).encode())
        while True:
            msg = self._receive()
            if msg.get("id") == self._next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str, session: str, timeout_s: float = TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(e.get("method") == method and e.get("sessionId") == session
                   for e in self.events):
                return
            self.events.append(self._receive())
        raise TimeoutError(f"no {method} within {timeout_s} s")

    def close(self) -> None:
        self.sock.close()


def console_errors(events: list[dict[str, Any]], session: str) -> list[str]:
    """Console errors, uncaught exceptions and failed loads reported for ``session``."""
    errors = []
    for e in events:
        if e.get("sessionId") != session:
            continue
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description", "")))
                                                 for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            errors.append("exception: " + str(d.get("exception", {}).get("description")
                                              or d.get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            errors.append(f"log: {entry.get('text')} {entry.get('url', '')}")
    return errors


class Browser:
    """Headless Chromium with a DevTools websocket; closed by :meth:`close`."""

    def __init__(self, executable: str, profile_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT_S
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self.devtools = DevTools(f"ws://127.0.0.1:{port}{path}")

    def visit(self, url: str, screenshot: Path, settle_s: float = TIMEOUT_S) -> dict[str, Any]:
        """Load ``url``; wait up to ``settle_s`` for every plot to draw; return the console
        errors and plot probes; save a full-page screenshot."""
        dt = self.devtools
        target = dt.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = dt.call("Target.attachToTarget", {"targetId": target,
                                                    "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            dt.call(f"{domain}.enable", session=session)
        dt.call("Page.navigate", {"url": url}, session=session)
        dt.wait_for("Page.loadEventFired", session)
        plots = self._settle(session, settle_s)
        frames, failed = 0, []
        if plots and all(p["traces"] > 0 for p in plots):
            animated = dt.call("Runtime.evaluate", {
                "expression": ANIMATE_TO_LAST_FRAME, "awaitPromise": True,
                "returnByValue": True}, session=session)
            if "exceptionDetails" in animated:
                failed.append(f"animation: {animated['exceptionDetails'].get('text')}")
            frames = animated["result"].get("value") or 0
            if frames:
                plots = self._settle(session, settle_s)
        size = dt.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
        shot = dt.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"],
                     "height": min(size["height"], 12000), "scale": 1}}, session=session)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        errors = console_errors(dt.events, session) + failed
        dt.call("Target.closeTarget", {"targetId": target})
        return {"errors": errors, "plots": plots, "frames": frames}

    def _settle(self, session: str, settle_s: float) -> list[dict[str, Any]]:
        """Probe the plots until every one has drawn marks, or ``settle_s`` passes."""
        deadline = time.monotonic() + settle_s
        while True:
            result = self.devtools.call("Runtime.evaluate", {
                "expression": PLOT_PROBE, "returnByValue": True}, session=session)
            plots = json.loads(result["result"]["value"])
            if all(p["traces"] > 0 and p["marks"] > 0 for p in plots):
                return plots
            if time.monotonic() > deadline:
                return plots
            time.sleep(0.2)

    def close(self) -> None:
        if getattr(self, "devtools", None):
            self.devtools.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from memsim.reports.site import build_site

    return build_site(tmp_path_factory.mktemp("site"))


def test_every_page_renders_in_chromium(site, tmp_path):
    executable = _chromium()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    shots = Path(os.environ.get("MEMSIM_SCREENSHOT_DIR", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    browser = Browser(executable, tmp_path / "chromium-profile")
    problems = []
    frames = 0
    try:
        for page in site.pages:
            path = site.out_dir / f"{page.slug}.html"
            seen = browser.visit(path.resolve().as_uri(), shots / f"{page.slug}.png")
            problems += [f"{page.slug}: {e}" for e in seen["errors"]]
            frames += seen["frames"]
            if page.slug != "index" and not seen["plots"]:
                problems.append(f"{page.slug}: no plot on the page")
            for plot in seen["plots"]:
                if plot["traces"] == 0 or plot["marks"] == 0 or plot["height"] < 50:
                    problems.append(f"{page.slug}: blank plot {plot}")
            assert (shots / f"{page.slug}.png").stat().st_size > 10_000
    finally:
        browser.close()
    print(f"screenshots in {shots}")
    assert not problems, "\n".join(problems)
    animated = sum(len(f.frames) for p in site.pages for f in p.figures())
    assert frames == animated > 0  # every animation was stepped to its last frame


def test_console_errors_are_caught(tmp_path):
    """The harness itself: a page with a console error and a missing script is flagged."""
    executable = _chromium()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    bad = tmp_path / "bad.html"
    bad.write_text("<html><head><script src='missing-plotly.min.js'></script></head><body>"
                   "<div class='plotly-graph-div' id='x'></div>"
                   "<script>console.error('boom')</script></body></html>")
    browser = Browser(executable, tmp_path / "chromium-profile")
    try:
        seen = browser.visit(bad.as_uri(), tmp_path / "bad.png", settle_s=1.0)
    finally:
        browser.close()
    assert any("boom" in e for e in seen["errors"])
    assert any("missing-plotly.min.js" in e or "ERR_FILE_NOT_FOUND" in e
               for e in seen["errors"])
    assert [(p["id"], p["traces"], p["marks"]) for p in seen["plots"]] == [("x", 0, 0)]

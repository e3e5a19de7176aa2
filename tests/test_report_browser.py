"""The report in a real browser: headless Chromium opens the smoke run's page; the main sections
and a latent dashboard must render with content, with no console error, and a screenshot is
saved under the test's temporary directory.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages
separated by NUL bytes on file descriptors 3 and 4), so the test needs no Python package beyond
the standard library. Without a Chromium binary (Debian: `apt-get install chromium`; or set
SAEBENCH_CHROMIUM to one) the test skips, saying so.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
TIMEOUT = 60.0


def find_browser() -> str | None:
    explicit = os.environ.get("SAEBENCH_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


class DevTools:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, binary: str, profile: Path):
        to_browser_read, self._write = os.pipe()
        self._read, from_browser_write = os.pipe()

        def wire_pipes() -> None:  # in the child: the protocol's fds are 3 (in) and 4 (out)
            high_in = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 10)
            high_out = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 10)
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        self.process = subprocess.Popen(
            [
                binary,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--remote-debugging-pipe",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Python's own descriptors are not inheritable (PEP 446): only 3 and 4 reach it.
            close_fds=False,
            preexec_fn=wire_pipes,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            remaining = deadline - time.time()
            if remaining <= 0:
                raise TimeoutError("no reply from the browser")
            ready, _, _ = select.select([self._read], [], [], remaining)
            if ready:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise RuntimeError("the browser closed its debugging pipe")
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.time() + TIMEOUT
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, event: str, timeout: float = TIMEOUT) -> dict:
        deadline = time.time() + timeout
        for seen in self.events:
            if seen.get("method") == event:
                return seen
        while True:
            message = self._receive(deadline)
            self.events.append(message)
            if message.get("method") == event:
                return message

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close")
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)


def console_errors(events: list[dict]) -> list[str]:
    """Every console error or warning, uncaught exception and browser-logged error."""
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning"):
            found.append(
                "console."
                + params["type"]
                + ": "
                + " ".join(
                    str(a.get("value", a.get("description"))) for a in params.get("args", [])
                )
            )
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            found.append(f"exception: {details.get('exception', {}).get('description', details)}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            found.append(f"log: {params['entry'].get('text')}")
    return found


# What the page must show once its script has run, measured in the page itself.
PROBE = """
(() => {
  const text = (sel) => (document.querySelector(sel) || {textContent: ""}).textContent.trim();
  const sections = [...document.querySelectorAll("section.rs")].map(s => ({
    id: s.id, chars: s.textContent.trim().length}));
  const dash = document.querySelector("#latent-dashboard");
  return JSON.stringify({
    sections,
    dashboardRendered: dash ? dash.getAttribute("data-rendered") : null,
    dashboardLatent: dash ? dash.getAttribute("data-latent") : null,
    dashboardText: dash ? dash.textContent.trim().slice(0, 400) : "",
    contexts: document.querySelectorAll("#latent-dashboard .ctx").length,
    contextTokens: document.querySelectorAll("#latent-dashboard .ctx .tok").length,
    listRows: document.querySelectorAll("#latent-list tbody tr").length,
    explorerHidden: document.querySelector("#latent-explorer")?.hidden,
    charts: document.querySelectorAll("svg.chart").length,
    title: document.title,
    text: text("#latents").length,
  });
})()
"""


# The explorer's controls, driven as a user would: search, sort, page, switch SAE, follow a match.
INTERACT = """
(() => {
  const rows = () => [...document.querySelectorAll("#latent-list tbody tr")];
  const out = {};
  const search = document.querySelector("#latent-search");
  search.value = "country=";
  search.dispatchEvent(new Event("input"));
  out.searchRows = rows().length;
  out.searchMatch = rows().every(r => r.textContent.includes("country=")) ||
    rows().length === 0;
  search.value = "";
  search.dispatchEvent(new Event("input"));
  const sort = document.querySelector("#latent-sort");
  sort.value = "dense";
  sort.dispatchEvent(new Event("change"));
  const density = rows().map(r => parseFloat(r.children[1].textContent));
  out.sortedDense = density.every((d, i) => i === 0 || density[i - 1] >= d);
  const page = document.querySelector("#latent-page").textContent;
  document.querySelector("#latent-next").click();
  out.paged = document.querySelector("#latent-page").textContent !== page;
  rows()[3].click();
  out.clicked = document.querySelector("#latent-dashboard").getAttribute("data-latent") ===
    rows()[3].getAttribute("data-latent");
  const select = document.querySelector("#sae-select");
  select.value = "1";
  select.dispatchEvent(new Event("change"));
  out.switched = document.querySelector("#latent-dashboard h3").textContent;
  const follow = document.querySelector("#latent-dashboard button.link");
  if (follow) { follow.click(); }
  out.followed = document.querySelector("#latent-dashboard h3").textContent;
  return JSON.stringify(out);
})()
"""


def open_report(binary: str, page: Path, profile: Path, shots: Path) -> tuple[dict, list[str]]:
    """Load `page`, return (what PROBE measured, console errors); save two screenshots."""
    browser = DevTools(binary, profile)
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            browser.call(domain, session=session)
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        browser.call("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired")
        time.sleep(0.5)  # let the script's first render settle
        probe = json.loads(
            browser.call(
                "Runtime.evaluate", {"expression": PROBE, "returnByValue": True}, session=session
            )["result"]["value"]
        )
        interaction = json.loads(
            browser.call(
                "Runtime.evaluate", {"expression": INTERACT, "returnByValue": True}, session=session
            )["result"]["value"]
        )
        probe["interaction"] = interaction
        browser.call("Page.reload", session=session)  # the screenshots show the first view
        browser.events = [e for e in browser.events if e.get("method") != "Page.loadEventFired"]
        browser.wait_for("Page.loadEventFired")
        time.sleep(0.5)
        # The first screen, then the latent section (its box, scrolled to).
        shot = browser.call("Page.captureScreenshot", {"format": "png"}, session=session)
        (shots / "report_top.png").write_bytes(base64.b64decode(shot["data"]))
        box = json.loads(
            browser.call(
                "Runtime.evaluate",
                {
                    "expression": "(() => { const r = document.querySelector('#latents')"
                    ".getBoundingClientRect(); return JSON.stringify({x: r.left + scrollX, "
                    "y: r.top + scrollY, w: r.width, h: r.height}); })()",
                    "returnByValue": True,
                },
                session=session,
            )["result"]["value"]
        )
        shot = browser.call(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": box["x"],
                    "y": box["y"],
                    "width": box["w"],
                    "height": min(box["h"], 2400),
                    "scale": 1,
                },
            },
            session=session,
        )
        (shots / "report_latents.png").write_bytes(base64.b64decode(shot["data"]))
        time.sleep(0.2)
        browser.call("Runtime.evaluate", {"expression": "1"}, session=session)  # drain events
        return probe, console_errors(browser.events)
    finally:
        browser.close()


@pytest.fixture(scope="session")
def smoke_report(tmp_path_factory) -> Path:
    """The end-of-run page of the smoke run test_report.py makes (once per session)."""
    from test_report import make_smoke_run

    return make_smoke_run(tmp_path_factory.getbasetemp()) / "report.html"


@pytest.fixture(scope="module")
def browser_binary() -> str:
    binary = find_browser()
    if binary is None:
        pytest.skip(
            "no Chromium found (looked for "
            + ", ".join(BROWSERS)
            + " on PATH and SAEBENCH_CHROMIUM): install it (Debian: apt-get install chromium) "
            "to run the browser test"
        )
    return binary


@pytest.mark.slow
def test_report_renders_in_chromium(browser_binary, smoke_report, tmp_path):
    """Sections render with content, the first latent dashboard is drawn (contexts with
    highlighted tokens, a histogram, the logit lens), and the console stays clean."""
    probe, errors = open_report(browser_binary, smoke_report, tmp_path / "profile", tmp_path)
    assert errors == [], errors
    sections = {s["id"]: s["chars"] for s in probe["sections"]}
    for anchor in ("config", "summary", "tasks", "cells", "training", "latents", "compare"):
        assert sections.get(anchor, 0) > 40, (anchor, sections)
    assert probe["explorerHidden"] is False
    assert probe["dashboardRendered"] == "1", probe
    assert probe["contexts"] >= 1 and probe["contextTokens"] >= 3, probe
    assert (
        "Logit lens" in probe["dashboardText"] and "Activation histogram" in probe["dashboardText"]
    )
    assert probe["listRows"] == 25  # paged: one page of the 512 latents
    assert probe["charts"] >= 3
    acted = probe["interaction"]
    assert acted["searchRows"] >= 1 and acted["searchMatch"], acted
    assert acted["sortedDense"] and acted["paged"] and acted["clicked"], acted
    assert acted["switched"] != probe["dashboardText"][:40]
    assert acted["followed"].startswith("Latent "), acted
    for name in ("report_top.png", "report_latents.png"):
        assert (tmp_path / name).stat().st_size > 5_000

"""What the browser tests share: a `taskloom serve` process, its tools, and Chromium's place."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

START_S = 90.0
"""Far past a normal start of the server: only a hang reaches it."""
WAIT_MS = 90_000
"""How long a page waits for something to appear: far past a normal run, a guard against hangs."""
TOKEN = "e2e-token"
SVG = "{http://www.w3.org/2000/svg}"
_PNG = b"\x89PNG\r\n\x1a\n"

expect: Any
try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips the tests
    expect = None
else:
    expect.set_options(timeout=WAIT_MS)

TOOLS = '''
import os

import anyio
import taskloom


@taskloom.tool(idempotent=True)
async def gate(path: str) -> str:
    """Waits until the file exists (the test opens the gate, whole); returns its text."""
    while not os.path.exists(path):
        await anyio.sleep(0.02)
    with open(path) as f:
        return f.read()


@taskloom.tool
async def nap(seconds: float) -> float:
    """Sleeps, then returns the seconds."""
    await anyio.sleep(seconds)
    return seconds
'''

FOREIGN_ENV = ("TASKLOOM_BASE_URL", "TASKLOOM_MODEL", "TASKLOOM_API_KEY", "TASKLOOM_TOKEN")


def chromium_path() -> str | None:
    """Debian's Chromium (`$TASKLOOM_CHROMIUM` names another), or None when it is not installed."""
    named = os.environ.get("TASKLOOM_CHROMIUM")
    if named:
        return named
    return shutil.which("chromium") or (
        "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None
    )


@dataclass
class Site:
    """A running `taskloom serve`: where it is, its store, and an API client."""

    url: str
    root: Path
    store: Path
    process: subprocess.Popen[bytes]
    api: httpx.Client

    def page_url(self) -> str:
        return f"{self.url}/?token={TOKEN}"

    def run(self, run_id: str) -> dict[str, Any]:
        answer = self.api.get(f"/v1/runs/{run_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def follow_to_end(self, run_id: str) -> str:
        """Read the run's events through the API until the stream ends; return the end's status.

        The stream ends once the server is done with the run: its end is
        recorded, and the API no longer answers `running` for it. The page
        may say how a run ended earlier, from the run's last event.
        """
        with self.api.stream("GET", f"/v1/runs/{run_id}/events") as stream:
            assert stream.status_code == 200, stream.read()
            lines = stream.iter_lines()
            for line in lines:
                if line == "event: end":
                    data = next(lines)
                    assert data.startswith("data: "), data
                    return str(json.loads(data.removeprefix("data: "))["status"])
        raise AssertionError(f"the events of run {run_id} stopped before their end")

    def settled(self, run_id: str) -> dict[str, Any]:
        """The run as the API shows it once the server is done with it (see `follow_to_end`)."""
        self.follow_to_end(run_id)
        return self.run(run_id)

    def taskloom(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the command line against the server's store."""
        return subprocess.run(
            [sys.executable, "-m", "taskloom", *args, "--store", str(self.store)],
            capture_output=True,
            text=True,
            timeout=START_S,
            check=False,
        )


def open_gate(gate: Path, text: str) -> None:
    """Open a `gate` tool's gate: its file appears with `text` in it, whole.

    Written beside it and renamed into place: a gate that saw the file half
    written (`write_text` creates it empty first) would return "".
    """
    beside = gate.with_name(f".{gate.name}.writing")
    beside.write_text(text, encoding="utf-8")
    os.replace(beside, gate)


def wait_for_address(process: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        found = re.search(r"(http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}:\n{log.read_text()}")
        time.sleep(0.05)  # another process's output: nothing to wait on but the file
    process.kill()
    raise AssertionError(f"serve did not start:\n{log.read_text()}")


@contextmanager
def serving(root: Path, *extra: str, port: int = 0) -> Iterator[Site]:
    """`taskloom serve` with the gated and slow tools and a store in `root` (port 0: a free one)."""
    tools = root / "tools.py"
    tools.write_text(TOOLS, encoding="utf-8")
    store = root / "store.sqlite3"
    log = root / "server.log"
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env = {k: v for k, v in env.items() if not k.startswith(("OTEL_", "OPENAI_"))}
    args = [sys.executable, "-m", "taskloom", "serve", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--store", str(store), "--tools", str(tools), "--token", TOKEN, *extra]
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        url = wait_for_address(process, log)
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        ) as api:
            yield Site(url=url, root=root, store=store, process=process, api=api)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- the page ------------------------------------------------------------------------------


def node(page: Any, task: str) -> Any:
    return page.locator(f'#dag .node[data-task="{task}"]')


def bar(page: Any, task: str) -> Any:
    return page.locator(f'#timeline rect.bar[data-task="{task}"]')


def start_from_form(page: Any, text: str, *, kind: str = "plan", most: int | None = None) -> str:
    """Fill the form, start the run, and return its id once the page shows it."""
    page.check(f'input[name="kind"][value="{kind}"]')
    page.fill("#run-text", text)
    if most is not None:
        page.fill("#max-concurrency", str(most))
    page.click("#start")
    page.wait_for_url(re.compile(r".*#/runs/.+"))
    found = re.search(r"#/runs/(.+)$", page.url)
    assert found
    return found.group(1)


def screenshot(page: Any, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes().startswith(_PNG)


# -- the same drawing as `taskloom trace --svg` ----------------------------------------------

_READ_BARS = """() => Array.from(document.querySelectorAll('#timeline rect.bar'), r => ({
    task: r.dataset.task ?? null, kind: r.getAttribute('class'), state: r.dataset.state ?? null,
    x: r.getAttribute('x'), y: r.getAttribute('y'), width: r.getAttribute('width'),
    height: r.getAttribute('height'), fill: r.getAttribute('fill')}))"""


def _keyed(bars: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Bars by task id; a model call's bar by its kind and its place from the left."""
    keyed: dict[str, dict[str, Any]] = {}
    calls = sorted((b for b in bars if b["task"] is None), key=lambda b: (b["kind"], b["x"]))
    for bar_ in calls:
        n = sum(1 for key in keyed if key.startswith(bar_["kind"]))
        keyed[f"{bar_['kind']} {n}"] = bar_
    for bar_ in bars:
        if bar_["task"] is not None:
            keyed[f"task {bar_['task']}"] = bar_
    return keyed


def _bars_of_svg(text: str) -> tuple[tuple[str, str], dict[str, dict[str, Any]]]:
    root = ET.fromstring(text)
    bars = []
    for rect in root.iter(f"{SVG}rect"):
        kind = rect.get("class") or ""
        if kind.startswith("bar"):
            bar_ = {"task": rect.get("data-task"), "kind": kind, "fill": rect.get("fill")}
            bar_["state"] = rect.get("data-state")
            bar_ |= {k: float(rect.get(k, "nan")) for k in ("x", "y", "width", "height")}
            bars.append(bar_)
    return (root.get("width", ""), root.get("height", "")), _keyed(bars)


def _bars_of_page(page: Any) -> dict[str, dict[str, Any]]:
    bars = page.evaluate(_READ_BARS)
    for bar_ in bars:
        for k in ("x", "y", "width", "height"):
            bar_[k] = float(bar_[k])
    return _keyed(bars)


def _differences(mine: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    if mine.keys() != theirs.keys():
        return [f"bars {sorted(mine)} != {sorted(theirs)}"]
    found = []
    for key, drawn in mine.items():
        other = theirs[key]
        for field in ("kind", "state", "fill", "y", "height"):
            if drawn[field] != other[field]:
                found.append(f"{key} {field}: {drawn[field]} != {other[field]}")
        # Unix times on the wire round to a fraction of a microsecond: far below a pixel.
        for field in ("x", "width"):
            if abs(drawn[field] - other[field]) > 0.02:
                found.append(f"{key} {field}: {drawn[field]} != {other[field]}")
    return found


def assert_same_drawing(page: Any, site: Site, run_id: str, path: Path) -> dict[str, Any]:
    """The page's timeline of a finished run is `taskloom trace --svg`'s picture of it.

    Returns:
        The export's bars, by key ("task 3", "bar planner 0").

    """
    site.follow_to_end(run_id)  # the page may show the end before the store has it all
    traced = site.taskloom("trace", run_id, "--svg", str(path))
    assert traced.returncode == 0, traced.stderr
    (width, height), theirs = _bars_of_svg(path.read_text(encoding="utf-8"))
    timeline = page.locator("#timeline")
    expect(timeline).to_have_attribute("width", width)
    expect(timeline).to_have_attribute("height", height)
    # The page draws its last picture once the run's final details arrive: wait for it.
    differences = ["not compared yet"]
    deadline = time.monotonic() + WAIT_MS / 1000
    while differences and time.monotonic() < deadline:
        differences = _differences(_bars_of_page(page), theirs)
        if differences:
            page.wait_for_timeout(100)
    assert differences == []
    return theirs

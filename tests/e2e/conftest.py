"""The web page in real headless Chromium, against a real `taskloom serve` process.

Playwright drives Debian's `chromium` package through `executable_path` (no
browser download: `.ci/run` installs the package). The server runs in its own
process on a free loopback port, with a tools file of slow and gated tools, and
records to a store in the module's temporary folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from web_site import FOREIGN_ENV, TOKEN, TOOLS, WAIT_MS, Site, chromium_path, wait_for_address


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """`taskloom serve --port 0` with the gated and slow tools, until the module's tests end."""
    root = tmp_path_factory.mktemp("site")
    tools = root / "tools.py"
    tools.write_text(TOOLS, encoding="utf-8")
    store = root / "store.sqlite3"
    log = root / "server.log"
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env = {k: v for k, v in env.items() if not k.startswith(("OTEL_", "OPENAI_"))}
    args = [sys.executable, "-m", "taskloom", "serve", "--host", "127.0.0.1", "--port", "0"]
    args += ["--store", str(store), "--tools", str(tools), "--token", TOKEN]
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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium, once per module."""
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = chromium_path()
    if executable is None:
        pytest.skip("Debian's chromium package is not installed (.ci/run installs it)")
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, site: Site) -> Iterator[Any]:
    """A fresh tab on the page, opened with the token; it must raise no script error."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(WAIT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(site.page_url())
    try:
        yield tab
    finally:
        context.close()
    assert errors == [], errors

"""The web page in real headless Chromium, against a real `taskloom serve` process.

Playwright drives Debian's `chromium` package through `executable_path` (no
browser download: `.ci/run` installs the package). The server runs in its own
process on a free loopback port, with a tools file of slow and gated tools, and
records to a store in the module's temporary folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from web_site import WAIT_MS, Site, chromium_path, serving


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """`taskloom serve` with the gated and slow tools (no model), for the module's tests."""
    with serving(tmp_path_factory.mktemp("site")) as running:
        yield running


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

"""Browser tests of the web UI: Playwright (sync API) driving Debian's Chromium headless
against a real durably server with real SDK services (tests/ui/world.py).

Kept in their own directory with plain (non-async) fixtures: the sync Playwright API runs its
own event loop and cannot run inside the suite's asyncio loop. The browser fixture is
module-scoped on purpose: while Playwright is open its loop counts as running in the main
thread, and every async test collected after this directory (tests/unit) would fail with
"Runner.run() cannot be called from a running event loop"; so Playwright closes when the
module ends.

Chromium: /usr/bin/chromium (Debian's package; `.ci/run` installs it), or $DURABLY_CHROMIUM.
Playwright's own browser download cannot work here, so the pinned Playwright release is the
one whose driver speaks that Chromium's protocol. Without a browser the tests are skipped
locally and fail in CI (CI=true, or DURABLY_REQUIRE_BROWSER=1 as `.ci/run` sets). axe-core is installed from npm into the test cache on first
use (not committed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.harness import CACHE_DIR

# the same populated server as the page tests (one per module)
from tests.ui.conftest import world  # noqa: F401

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
AXE_VERSION = "4.10.3"


def _missing(what: str) -> None:
    required = os.environ.get("CI", "") or os.environ.get("DURABLY_REQUIRE_BROWSER", "")
    if required.lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} (CI must run the browser tests)", pytrace=False)
    pytest.skip(what)


def chromium_path() -> str | None:
    for candidate in (os.environ.get("DURABLY_CHROMIUM"), "/usr/bin/chromium",
                      shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -e '.[test]')")
    path = chromium_path()
    if path is None:
        _missing("no Chromium at /usr/bin/chromium (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's script, installed from npm into the test cache (once)."""
    target = CACHE_DIR / f"axe-core-{AXE_VERSION}"
    script = target / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            _missing("npm is needed to install axe-core")
        target.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(target),
             f"axe-core@{AXE_VERSION}"], capture_output=True, text=True, timeout=300)
        if done.returncode != 0 or not script.exists():
            _missing(f"npm could not install axe-core: {done.stderr[-500:]}")
    return script.read_text()

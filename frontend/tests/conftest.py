"""Browser-test fixtures: Debian's Chromium driven by Playwright against real daphne.

Builds on the shared fixtures (``daphne_server``, ``start_daphne``, ``alice``,
``bob``, ``staff_user``, ``make_order``, ``login_cookies``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from frontend.tests.helpers import in_thread

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Longer waits: page loads, transport fallback, reconnect backoff.
SLOW_TIMEOUT_MS = 15000


@pytest.fixture(scope="module")
def chromium(_session_daphne: Any) -> Iterator[Browser]:
    """One headless Chromium per test module.

    Playwright's sync API keeps an asyncio loop marked running on this thread,
    which makes Django refuse ORM calls from the test body; the fixtures and
    tests here are plain synchronous code, so allow them for this module only.
    The shared daphne is requested first so it starts without that setting.
    """
    with pytest.MonkeyPatch.context() as mp, sync_playwright() as playwright:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


class Pages:
    """Opens pages, each in its own browser context (its own cookies, like another browser)."""

    def __init__(
        self, browser: Browser, base_url: str, login_cookies: Callable[[Any], dict]
    ) -> None:
        self.browser = browser
        self.base_url = base_url
        self.login_cookies = login_cookies
        self.contexts: list[BrowserContext] = []
        self.errors: list[str] = []

    def context(
        self, user: Any = None, init_script: str | None = None, base_url: str | None = None
    ) -> BrowserContext:
        base = base_url or self.base_url
        context = self.browser.new_context(base_url=base, viewport={"width": 1200, "height": 800})
        self.contexts.append(context)
        if user is not None:
            cookies = self.login_cookies(user)
            context.add_cookies(
                [{"name": name, "value": value, "url": base} for name, value in cookies.items()]
            )
        if init_script:
            context.add_init_script(init_script)
        return context

    def open(
        self,
        path: str,
        user: Any = None,
        *,
        init_script: str | None = None,
        base_url: str | None = None,
        wait_live: bool = True,
    ) -> Page:
        """Open ``path`` as ``user`` (None: anonymous); by default wait until it is live."""
        page = self.context(user, init_script, base_url).new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{path}: {exc}"))
        page.goto(path)
        if wait_live:
            wait_until_live(page)
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def wait_until_live(
    page: Page, transport: str | None = None, timeout: int = SLOW_TIMEOUT_MS
) -> None:
    """Wait for the page's connection indicator to say live (over ``transport``)."""
    selector = '#conn[data-state="live"]'
    if transport:
        selector = f'#conn[data-state="live"][data-transport="{transport}"]'
    page.locator(selector).wait_for(timeout=timeout)


@pytest.fixture
def pages(
    chromium: Browser, daphne_server: Any, login_cookies: Callable[[Any], dict]
) -> Iterator[Pages]:
    """Factory for pages on the shared daphne; fails the test on uncaught page errors."""
    opened = Pages(chromium, daphne_server.url, login_cookies)
    try:
        yield opened
    finally:
        opened.close()
    assert not opened.errors, f"JavaScript errors in pages: {opened.errors}"


@pytest.fixture
def make_order(
    make_order: Callable[..., Any], request: pytest.FixtureRequest
) -> Callable[..., Any]:
    """The shared ``make_order``; in browser tests it runs in a worker thread.

    There, its events are published on commit as in production instead of
    failing next to Playwright's event loop (see ``helpers.in_thread``).
    """
    if request.node.get_closest_marker("browser") is None:
        return make_order

    def make(*args: Any, **kwargs: Any) -> Any:
        return in_thread(make_order, *args, **kwargs)

    return make


def screenshot_dir(tmp_path: Any) -> str:
    """Where screenshots go: BOOKTIME_SCREENSHOT_DIR (scripts/screenshots.py) or a temp dir."""
    return os.environ.get("BOOKTIME_SCREENSHOT_DIR") or str(tmp_path)

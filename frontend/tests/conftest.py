"""Browser-test fixtures: Debian's Chromium driven by Playwright against real daphne.

Builds on the shared fixtures (``daphne_server``, ``start_daphne``, ``alice``,
``bob``, ``staff_user``, ``make_order``, ``login_cookies``); what tests call
(``Pages``, ``wait_until_live``, ...) is in ``frontend.tests.helpers``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

from frontend.tests.helpers import Pages, in_thread
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS


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

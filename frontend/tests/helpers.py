"""What the browser tests share: pages opened as a user, and small actions on them."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import connections
from playwright.sync_api import Browser, BrowserContext, Page, expect

T = TypeVar("T")

LIVE_TIMEOUT_MS = 2000
# Longer waits: page loads, transport fallback, reconnect backoff.
SLOW_TIMEOUT_MS = 15000


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


def screenshot_dir(tmp_path: Any) -> str:
    """Where screenshots go: BOOKTIME_SCREENSHOT_DIR (scripts/screenshots.py) or a temp dir."""
    return os.environ.get("BOOKTIME_SCREENSHOT_DIR") or str(tmp_path)


def staff_moves(staff_page: Page, order: Any, status: str) -> None:
    """Click the staff dashboard's button that moves ``order`` to ``status``."""
    row = staff_page.locator(f'#orders tr[data-order-id="{order.pk}"]')
    button = row.locator(f'button[data-transition="{status}"]')
    expect(button).to_be_enabled()
    button.click()


def expect_status(page: Page, status: str, timeout: int = LIVE_TIMEOUT_MS) -> None:
    """The tracking page's status badge shows ``status`` within ``timeout`` ms."""
    expect(page.locator("#order-status")).to_have_attribute("data-status", status, timeout=timeout)


def timeline_statuses(page: Page) -> list[str]:
    """Statuses in the tracking timeline, oldest first."""
    values = page.locator("#timeline li").evaluate_all(
        "items => items.map(li => [Number(li.dataset.eventId), li.dataset.status])"
    )
    return [status for _, status in sorted(values)]


def timeline_ids_newest_first(page: Page) -> list[int]:
    return page.locator("#timeline li").evaluate_all(
        "items => items.map(li => Number(li.dataset.eventId))"
    )


def in_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a database write in a worker thread and return its result.

    Playwright's sync API keeps an asyncio loop running on the test thread,
    where the on-commit publisher's ``async_to_sync`` refuses to run; the
    events would then reach pages only through the pending-event publisher.
    A plain thread publishes them the way a web request or a shell would.
    """

    def run() -> T:
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result(timeout=30)

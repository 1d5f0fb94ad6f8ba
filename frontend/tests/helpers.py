"""Small actions the browser tests share."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import connections
from playwright.sync_api import Page, expect

T = TypeVar("T")

LIVE_TIMEOUT_MS = 2000


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

"""A page that missed events while offline shows all of them, in order, once back."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from frontend.tests.helpers import (
    Pages,
    expect_status,
    in_thread,
    timeline_statuses,
    wait_until_live,
)
from orders.actions import transition_order

pytestmark = [pytest.mark.browser, pytest.mark.live]


@pytest.mark.parametrize("transport", ["ws", "sse", "poll"])
def test_page_offline_during_two_changes_shows_both_in_order_after_reconnecting(
    pages: Pages, alice: Any, make_order: Any, transport: str
) -> None:
    order = make_order(alice)
    page = pages.open(f"/orders/{order.pk}/?transport={transport}", alice, wait_live=False)
    wait_until_live(page, transport)

    page.context.set_offline(True)
    expect(page.locator("#conn")).to_have_attribute("data-state", "offline")
    in_thread(transition_order, order, "paid")
    in_thread(transition_order, order, "packed")
    # Nothing can arrive while offline (the page saw only its first event).
    assert timeline_statuses(page) == ["placed"]

    page.context.set_offline(False)

    wait_until_live(page, transport)
    expect_status(page, "packed")
    assert timeline_statuses(page) == ["placed", "paid", "packed"]


def test_page_resumes_from_its_cursor_after_the_server_went_away(
    pages: Pages, start_daphne: Any, alice: Any, make_order: Any
) -> None:
    # A private server we can kill; it must not inherit the test-only ORM override.
    server = start_daphne(name="daphne-restart", DJANGO_ALLOW_ASYNC_UNSAFE="")
    order = make_order(alice)
    page = pages.open(f"/orders/{order.pk}/", alice, base_url=server.url, wait_live=False)
    wait_until_live(page, "ws")

    server.kill()
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    in_thread(transition_order, order, "paid")
    in_thread(transition_order, order, "packed")
    server.start()  # same port

    expect_status(page, "packed", timeout=20000)
    assert timeline_statuses(page) == ["placed", "paid", "packed"]
    expect(page.locator('#conn[data-state="live"]')).to_be_visible()

"""A customer's tracking page shows a change staff make in another browser, live."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from frontend.tests.helpers import (
    Pages,
    expect_status,
    in_thread,
    staff_moves,
    timeline_statuses,
    wait_until_live,
)

pytestmark = [pytest.mark.browser, pytest.mark.live]


@pytest.mark.parametrize(
    ("query", "transport"),
    [("", "ws"), ("?transport=sse", "sse"), ("?transport=poll", "poll")],
    ids=["default-websocket", "forced-sse", "forced-poll"],
)
def test_tracking_page_shows_a_staff_change_within_two_seconds(
    pages: Pages, alice: Any, staff_user: Any, make_order: Any, query: str, transport: str
) -> None:
    order = make_order(alice)
    customer = pages.open(f"/orders/{order.pk}/{query}", alice, wait_live=False)
    wait_until_live(customer, transport)
    expect_status(customer, "placed")
    staff = pages.open("/staff/", staff_user)

    staff_moves(staff, order, "paid")

    expect_status(customer, "paid")
    expect(customer.locator('#steps li[data-step="paid"]')).to_have_class("step current")
    expect(customer.locator('#steps li[data-step="placed"]')).to_have_class("step done")
    assert timeline_statuses(customer) == ["placed", "paid"]
    # The dashboard row follows the same event and offers the next steps.
    expect(
        staff.locator(f'#orders tr[data-order-id="{order.pk}"] button[data-transition="packed"]')
    ).to_be_visible(timeout=2000)


def test_tracking_link_viewer_sees_changes_without_signing_in(
    pages: Pages, alice: Any, staff_user: Any, make_order: Any
) -> None:
    from orders.access import make_tracking_token

    order = make_order(alice, "paid")
    viewer = pages.open(f"/track/#{make_tracking_token(order)}")
    assert f"/track/{order.pk}/#" in viewer.url
    staff = pages.open("/staff/", staff_user)

    staff_moves(staff, order, "packed")

    expect_status(viewer, "packed")


def test_a_refused_transition_shows_the_servers_message(
    pages: Pages, alice: Any, staff_user: Any, make_order: Any
) -> None:
    from orders.actions import transition_order

    order = make_order(alice)
    staff = pages.open("/staff/", staff_user)
    # Freeze this page's view, then let someone else cancel the order: the
    # page still offers "paid", which the server must refuse with a 409.
    staff.evaluate("window.btLive.stop()")
    in_thread(transition_order, order, "cancelled")

    staff_moves(staff, order, "paid")

    toast = staff.locator(".toast.error")
    expect(toast).to_contain_text("cannot become 'paid'", timeout=2000)

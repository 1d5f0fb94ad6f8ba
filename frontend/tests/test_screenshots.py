"""Screenshots of the tracking page and the staff dashboard.

Written to a temporary directory, or to ``BOOKTIME_SCREENSHOT_DIR``
(``scripts/screenshots.py`` points it at docs/screenshots/).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from frontend.tests.helpers import Pages, expect_status, in_thread, screenshot_dir, staff_moves
from orders.actions import transition_order

pytestmark = [pytest.mark.browser, pytest.mark.live]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_it_saves_screenshots_of_the_tracking_page_and_the_dashboard(
    pages: Pages, alice: Any, bob: Any, staff_user: Any, make_order: Any, tmp_path: Path
) -> None:
    out = Path(screenshot_dir(tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    order = make_order(alice, "packed")
    make_order(bob, "delivered")
    make_order(bob, "paid")
    make_order(alice, "cancelled")
    tracking = pages.open(f"/orders/{order.pk}/", alice)
    staff = pages.open("/staff/", staff_user)

    staff_moves(staff, order, "shipped")
    expect_status(tracking, "shipped")
    tracking.screenshot(path=str(out / "tracking.png"), full_page=True)

    tracking.set_viewport_size({"width": 390, "height": 760})
    tracking.screenshot(path=str(out / "tracking-mobile.png"), full_page=True)

    newest = make_order(bob)
    in_thread(transition_order, order, "delivered")
    expect(staff.locator(".toast.new-order")).to_contain_text(newest.reference)
    # The new row's customer comes from the REST API (the envelope has none).
    new_row = staff.locator(f'#orders tr[data-order-id="{newest.pk}"]')
    expect(new_row.locator("td").nth(1)).to_have_text("bob")  # as the server-rendered rows
    staff.screenshot(path=str(out / "staff.png"), full_page=True)

    for name in ("tracking.png", "tracking-mobile.png", "staff.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name

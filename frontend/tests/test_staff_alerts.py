"""The staff dashboard alerts at once when a customer places an order."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from frontend.tests.helpers import LIVE_TIMEOUT_MS, Pages

pytestmark = [pytest.mark.browser, pytest.mark.live]

# Record the alert's side effects the page cannot show: desktop notifications
# (granted, as after the staff member clicked "Enable desktop alerts") and
# WebAudio tones.
RECORD_ALERTS = """
window.__notifications = [];
window.Notification = class RecordedNotification {
  constructor(title, options) { window.__notifications.push(title); this.options = options; }
  static requestPermission() { return Promise.resolve('granted'); }
};
window.Notification.permission = 'granted';
window.__tones = 0;
const realCreateOscillator = AudioContext.prototype.createOscillator;
AudioContext.prototype.createOscillator = function () {
  window.__tones += 1;
  return realCreateOscillator.call(this);
};
"""


def test_staff_dashboard_alerts_when_a_customer_places_an_order(
    pages: Pages, alice: Any, staff_user: Any, products: Any
) -> None:
    staff = pages.open("/staff/", staff_user, init_script=RECORD_ALERTS)
    placed_before = int(staff.locator('.counter[data-status="placed"] .count').inner_text())
    customer = pages.open("/orders/", alice)

    customer.locator("#place-order select[name=product]").select_option(str(products[1].pk))
    customer.locator("#place-order input[name=quantity]").fill("2")
    customer.locator("#place-order button[type=submit]").click()
    expect(customer.locator("#place-result")).to_have_text(
        re.compile(r"Order BT-\w+ placed\."), timeout=5000
    )
    reference = customer.locator("#place-result").inner_text().split()[1]

    toast = staff.locator(".toast.new-order")
    expect(toast).to_contain_text(reference, timeout=LIVE_TIMEOUT_MS)
    expect(staff).to_have_title(re.compile(r"^\(1\) Dashboard"))
    expect(staff.locator('.counter[data-status="placed"] .count')).to_have_text(
        str(placed_before + 1)
    )
    row = staff.locator("#orders tbody tr").first
    expect(row).to_contain_text(reference)
    expect(row.locator('button[data-transition="paid"]')).to_be_visible()
    assert staff.evaluate("window.__notifications") == [f"New order {reference}"]
    assert staff.evaluate("window.__tones") == 1
    # The customer's own list got the new order from the "mine" stream too.
    expect(customer.locator("#orders tbody")).to_contain_text(reference)

    # Touching the page marks the alert read.
    staff.locator("h1").click()
    expect(staff).to_have_title(re.compile(r"^Dashboard"))

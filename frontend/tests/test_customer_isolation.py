"""Customer B's pages never show customer A's order."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from frontend.tests.helpers import LIVE_TIMEOUT_MS, Pages, in_thread
from orders.access import make_tracking_token
from orders.actions import transition_order

pytestmark = [pytest.mark.browser, pytest.mark.live]

# Follow a stream from inside the page; resolves with the first event or error.
FOLLOW = """
([stream, transport, token]) => new Promise((resolve) => {
  const live = new BooktimeLive({
    streams: [stream], after: 0, transport, token,
    onEvent: (s, envelope) => { live.stop(); resolve({event: envelope.id}); },
    onError: (s, code) => { live.stop(); resolve({error: code}); },
  });
  live.start();
})
"""


def test_bobs_orders_page_never_shows_alices_orders(
    pages: Pages, alice: Any, bob: Any, make_order: Any
) -> None:
    alices = make_order(alice)
    bobs = make_order(bob)
    page = pages.open("/orders/", bob)
    expect(page.locator("#orders tbody tr")).to_have_count(1)

    in_thread(transition_order, alices, "paid")
    newer = make_order(alice)
    # Bob's own change comes after Alice's on every stream: once it shows,
    # anything of Alice's that leaked would already be on the page.
    in_thread(transition_order, bobs, "paid")
    expect(page.locator(f'tr[data-order-id="{bobs.pk}"] .badge')).to_have_attribute(
        "data-status", "paid", timeout=LIVE_TIMEOUT_MS
    )

    html = page.content()
    assert alices.reference not in html
    assert newer.reference not in html
    expect(page.locator("#orders tbody tr")).to_have_count(1)


def test_bob_cannot_open_alices_tracking_page(
    pages: Pages, alice: Any, bob: Any, make_order: Any
) -> None:
    order = make_order(alice)
    page = pages.open("/orders/", bob)
    response = page.goto(f"/orders/{order.pk}/")
    assert response is not None and response.status == 404
    assert order.reference not in page.content()


@pytest.mark.parametrize("transport", ["ws", "sse", "poll"])
def test_bobs_page_is_refused_alices_order_stream(
    pages: Pages, alice: Any, bob: Any, make_order: Any, transport: str
) -> None:
    order = make_order(alice, "paid")
    page = pages.open("/orders/", bob)
    wrong_token = make_tracking_token(make_order(bob))  # a real link, to another order

    refused = page.evaluate(FOLLOW, [f"order:{order.pk}", transport, None])
    refused_with_wrong_token = page.evaluate(FOLLOW, [f"order:{order.pk}", transport, wrong_token])

    assert refused == {"error": "forbidden"}
    assert refused_with_wrong_token == {"error": "forbidden"}

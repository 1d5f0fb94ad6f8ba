"""When WebSockets (or SSE too) cannot get through, the client falls back by itself."""

from __future__ import annotations

from typing import Any

import pytest

from frontend.tests.helpers import Pages, expect_status, staff_moves, wait_until_live

pytestmark = [pytest.mark.browser, pytest.mark.live]

# A WebSocket that never connects, as behind a proxy that strips the upgrade.
BROKEN_WEBSOCKET = """
window.__wsAttempts = 0;
window.WebSocket = class BrokenWebSocket extends EventTarget {
  constructor(url) {
    super();
    window.__wsAttempts += 1;
    this.url = url;
    this.readyState = 0;
    setTimeout(() => {
      this.readyState = 3;
      const error = new Event('error');
      if (this.onerror) this.onerror(error);
      this.dispatchEvent(error);
      const close = new CloseEvent('close', { code: 1006 });
      if (this.onclose) this.onclose(close);
      this.dispatchEvent(close);
    }, 10);
  }
  send() { throw new DOMException('not open', 'InvalidStateError'); }
  close() {}
};
"""

# An EventSource that errors before opening, as behind a buffering proxy.
BROKEN_EVENTSOURCE = """
window.__sseAttempts = 0;
window.EventSource = class BrokenEventSource extends EventTarget {
  constructor(url) {
    super();
    window.__sseAttempts += 1;
    this.readyState = 0;
    setTimeout(() => {
      this.readyState = 2;
      const error = new Event('error');
      if (this.onerror) this.onerror(error);
      this.dispatchEvent(error);
    }, 10);
  }
  close() {}
};
"""


@pytest.mark.parametrize(
    ("broken", "expected"),
    [(BROKEN_WEBSOCKET, "sse"), (BROKEN_WEBSOCKET + BROKEN_EVENTSOURCE, "poll")],
    ids=["websocket-broken", "websocket-and-sse-broken"],
)
def test_client_falls_back_by_itself_and_still_gets_the_change(
    pages: Pages,
    alice: Any,
    staff_user: Any,
    make_order: Any,
    broken: str,
    expected: str,
) -> None:
    order = make_order(alice)
    customer = pages.open(f"/orders/{order.pk}/", alice, init_script=broken, wait_live=False)
    wait_until_live(customer, expected)
    assert customer.evaluate("window.__wsAttempts") >= 1
    staff = pages.open("/staff/", staff_user)

    staff_moves(staff, order, "paid")

    expect_status(customer, "paid")

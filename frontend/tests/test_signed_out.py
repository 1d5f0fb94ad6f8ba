"""A page whose sign-in ends while it follows a stream says so and stops (no retry loop).

The server ends the stream (notifications.access): WebSocket close 4401, SSE
``event: error``, a held long-poll's 401. ``booktime-live.js`` then reports the
state ``signed_out`` instead of reconnecting, and the page's indicator says
"Signed out — sign in again" with a link back through the sign-in page. The
state is final: the browser going offline and online again does not turn it
into "Offline" or a reconnect.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from playwright.sync_api import expect

from frontend.tests.helpers import LIVE_TIMEOUT_MS, Pages, in_thread, wait_until_live

pytestmark = [pytest.mark.browser, pytest.mark.live]


@pytest.mark.parametrize("transport", ["ws", "sse", "poll"])
def test_a_page_whose_session_ends_reports_signed_out(
    pages: Pages, alice: Any, make_order: Any, transport: str
) -> None:
    order = make_order(alice)
    page = pages.open(f"/orders/{order.pk}/?transport={transport}", alice, wait_live=False)
    wait_until_live(page, transport)
    key = next(
        c["value"] for c in page.context.cookies() if c["name"] == settings.SESSION_COOKIE_NAME
    )

    in_thread(lambda: SessionStore(session_key=key).flush())

    conn = page.locator("#conn")
    expect(conn).to_have_attribute("data-state", "signed_out", timeout=LIVE_TIMEOUT_MS)
    expect(conn.locator(".conn-text")).to_have_text("Signed out — sign in again")
    link = conn.get_by_role("link", name="sign in again")
    expect(link).to_have_attribute(
        "href", f"/login/?next=%2Forders%2F{order.pk}%2F%3Ftransport%3D{transport}"
    )

    # Offline and back online: our listeners run after the client's (same
    # target, registered later), so once they have fired the client has
    # handled both events.
    page.evaluate(
        """() => {
          window.addEventListener('offline', () => { window.btSawOffline = true; });
          window.addEventListener('online', () => { window.btSawOnline = true; });
        }"""
    )
    page.context.set_offline(True)
    page.wait_for_function("window.btSawOffline === true")
    page.context.set_offline(False)
    page.wait_for_function("window.btSawOnline === true")
    expect(conn).to_have_attribute("data-state", "signed_out", timeout=0)
    expect(conn.locator(".conn-text")).to_have_text("Signed out — sign in again", timeout=0)

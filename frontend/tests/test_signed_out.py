"""A page whose sign-in ends while it follows a stream says so and stops (no retry loop).

The server ends the stream (notifications.access): WebSocket close 4401, SSE
``event: error``, a held long-poll's 401. ``booktime-live.js`` then reports the
state ``signed_out`` instead of reconnecting.
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

    expect(page.locator("#conn")).to_have_attribute(
        "data-state", "signed_out", timeout=LIVE_TIMEOUT_MS
    )

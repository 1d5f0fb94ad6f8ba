"""Tracking links in the browser: the token stays out of every URL and log,
and the order's customer and staff revoke or renew the link from the page.

A link is ``/track/#<token>``: the fragment never leaves the browser. The
page hands the token over in a header and gets a cookie for the order, then
follows it over WebSocket, SSE or long-poll. Here Chromium uses it over each
transport against a daphne of the test's own, and neither any request line
Chromium sent (what a proxy's access log would keep, query strings included)
nor daphne's access log contains the token.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from frontend.tests.helpers import LIVE_TIMEOUT_MS, Pages, expect_status, in_thread, wait_until_live
from orders.access import make_tracking_token
from orders.actions import transition_order
from tests.support.live import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.live]

REFUSED = "invalid, has expired or was revoked"


def test_the_token_is_in_no_request_line_and_no_access_log(
    pages: Pages, start_daphne: Any, alice: Any, make_order: Any
) -> None:
    server = start_daphne("access-log")
    order = make_order(alice, "paid")
    token = make_tracking_token(order)
    signature = token.rsplit(":", 1)[1]
    requested: list[str] = []

    for transport, status in (("ws", "packed"), ("sse", "shipped"), ("poll", "delivered")):
        context = pages.context(base_url=server.url)
        context.on("request", lambda request: requested.append(request.url))
        page = context.new_page()
        page.on("websocket", lambda ws: requested.append(ws.url))
        page.on("pageerror", lambda exc: pages.errors.append(str(exc)))
        page.goto(f"/track/?transport={transport}#{token}")
        wait_until_live(page, transport)
        assert re.search(rf"/track/{order.pk}/\?transport={transport}#", page.url), page.url
        in_thread(transition_order, order, status)
        expect_status(page, status)
        context.close()

    # Every transport was used, and the log saw each of them.
    paths = " ".join(requested)
    for path in ("/track/", f"/track/{order.pk}/", "/ws/live/", "/events/stream/", "/events/poll/"):
        assert path in paths, (path, requested)
    log = wait_until(
        lambda: (text := server.log_path.read_text()) and "GET /events/poll/" in text and text,
        message="daphne's access log",
    )
    # (daphne logs an HTTP request once its response ends: an SSE stream cut
    # off by the client never is; Chromium's request lines above cover it.)
    for line in (
        "POST /track/",
        f"GET /track/{order.pk}/",
        "WSCONNECT /ws/live/",
        "GET /events/poll/",
    ):
        assert line in log, line
    for url in requested:
        assert token not in url and signature not in url, url
    assert token not in log and signature not in log


def test_the_customer_and_staff_revoke_and_renew_the_link_from_the_page(
    pages: Pages, alice: Any, staff_user: Any, make_order: Any
) -> None:
    order = make_order(alice)
    owner = pages.open(f"/orders/{order.pk}/", alice)
    first = owner.locator("#share-url").input_value()
    assert re.fullmatch(rf"{re.escape(pages.base_url)}/track/#[\w:-]+", first), first
    viewer = pages.open(first)
    expect_status(viewer, "placed")

    owner.locator("#revoke-link").click()
    expect(owner.locator("#share-result")).to_contain_text("revoked", timeout=LIVE_TIMEOUT_MS)
    expect(owner.locator("#share-url")).to_have_value("")
    refused = pages.open(first, wait_live=False)
    expect(refused.locator("#track-link-status")).to_contain_text(REFUSED)

    staff = pages.open(f"/orders/{order.pk}/", staff_user)
    staff.locator("#rotate-link").click()
    expect(staff.locator("#share-result")).to_contain_text("New link", timeout=LIVE_TIMEOUT_MS)
    renewed = staff.locator("#share-url").input_value()
    assert renewed != first and "/track/#" in renewed
    follower = pages.open(renewed)
    expect_status(follower, "placed")
    in_thread(transition_order, order, "paid")
    expect_status(follower, "paid")

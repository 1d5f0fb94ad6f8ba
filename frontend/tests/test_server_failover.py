"""Two servers behind a load balancer: when the page's server is killed, the
browser client reconnects through the balancer to the other one, resumes from
its cursor and loses nothing."""

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
from tests.support.live import FailoverProxy

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.slow]


@pytest.mark.parametrize("transport", ["ws", "sse", "poll"])
def test_a_page_moves_to_the_other_server_when_its_server_is_killed(
    pages: Pages, start_daphne: Any, alice: Any, make_order: Any, transport: str
) -> None:
    # Private servers we can kill; they must not inherit the test-only ORM override.
    first = start_daphne(name="first", DJANGO_ALLOW_ASYNC_UNSAFE="")
    second = start_daphne(name="second", DJANGO_ALLOW_ASYNC_UNSAFE="")
    order = make_order(alice)
    with FailoverProxy([first.port, second.port]) as balancer:
        page = pages.open(
            f"/orders/{order.pk}/?transport={transport}",
            alice,
            base_url=balancer.url,
            wait_live=False,
        )
        wait_until_live(page, transport)

        first.kill()
        in_thread(transition_order, order, "paid")  # while the page has no server
        in_thread(transition_order, order, "packed")

        expect_status(page, "packed", timeout=20000)
        wait_until_live(page, transport)
        in_thread(transition_order, order, "shipped")  # live, through the second server
        expect_status(page, "shipped")
        assert timeline_statuses(page) == ["placed", "paid", "packed", "shipped"]
        expect(page.locator('#conn[data-state="live"]')).to_be_visible()

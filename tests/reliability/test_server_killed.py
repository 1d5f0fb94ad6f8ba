"""A daphne process dies (SIGKILL) under its clients: they lose nothing.

Two servers share Redis and the database, as behind a load balancer. The
clients follow the reconnect rule (``tests.support.live.ResumingFollower``):
on a drop they reconnect to the other server with their cursor. Changes made
while they are away arrive from the log, later ones live; each event arrives
once, in id order.

The browser client is not driven here: ``booktime-live.js`` reconnects to the
origin that served its page, so moving it to server B needs a load balancer
in front of both, which this suite does not run.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from notifications.log import latest_event_id
from orders.actions import transition_order
from orders.models import OrderEvent
from tests.support.live import ResumingFollower

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.live,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]


def event_ids(**filters: object) -> list[int]:
    return list(OrderEvent.objects.filter(**filters).order_by("id").values_list("id", flat=True))


async def test_clients_of_a_killed_server_resume_on_the_other_and_lose_nothing(
    start_daphne, alice, bob, make_order, login_cookies
):
    first = await sync_to_async(make_order)(alice)
    second = await sync_to_async(make_order)(alice)
    bobs = await sync_to_async(make_order)(bob)
    cookies = await sync_to_async(login_cookies)(alice)
    start = await sync_to_async(latest_event_id)()
    server_a = start_daphne("a")
    server_b = start_daphne("b")

    followers = [
        ResumingFollower([server_a, server_b], f"order:{first.pk}", cookies=cookies, after=start),
        ResumingFollower([server_a, server_b], "mine", cookies=cookies, after=start),
        ResumingFollower(
            [server_a, server_b], f"order:{first.pk}", transport="sse", cookies=cookies, after=start
        ),
        ResumingFollower(
            [server_a, server_b], "mine", transport="sse", cookies=cookies, after=start
        ),
    ]
    try:
        for follower in followers:
            follower.start()
        for follower in followers:
            await follower.wait_connected()
            assert follower.server is server_a

        async def change(order, status):
            await sync_to_async(transition_order)(order.pk, status)

        await change(first, "paid")
        await change(second, "paid")
        await change(bobs, "paid")
        for follower in followers:
            await follower.wait_for_ids(await sync_to_async(event_ids)(order=first, id__gt=start))

        server_a.kill()
        # While the clients are cut off and reconnecting:
        await change(first, "packed")
        await change(second, "packed")
        await change(bobs, "packed")
        await change(first, "shipped")
        for follower in followers:
            await follower.wait_connected(count=2)
            assert follower.server is server_b
        # Live again, on server B:
        await change(second, "shipped")
        await change(first, "delivered")
        await change(bobs, "shipped")

        expected = {
            f"order:{first.pk}": await sync_to_async(event_ids)(order=first, id__gt=start),
            "mine": await sync_to_async(event_ids)(order__customer=alice, id__gt=start),
        }
        for follower in followers:
            await follower.wait_for_ids(expected[follower.stream])
        for follower in followers:
            # Exactly once and in order on the wire, not only after client-side dedupe.
            received = [event["id"] for event in follower.received]
            assert received == expected[follower.stream], (follower.transport, follower.stream)
            assert follower.resets == []
            statuses = [event["order"]["status"] for event in follower.events]
            assert "delivered" in statuses
            assert all(event["order"]["id"] != bobs.pk for event in follower.events)
    finally:
        for follower in followers:
            await follower.stop()

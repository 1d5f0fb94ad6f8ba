"""SSE and long-poll against a real daphne on real Redis, with httpx."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from asgiref.sync import sync_to_async

from orders.actions import transition_order
from orders.models import OrderEvent
from tests.support.live import async_wait_until, group_member_count
from tests.support.sse import sse_frames, sse_next

pytestmark = [pytest.mark.asyncio, pytest.mark.live, pytest.mark.django_db(transaction=True)]


async def next_event(frames) -> dict:
    while True:
        frame = await sse_next(frames)
        if frame.event.startswith("order."):
            return frame.json()


async def test_sse_gets_a_change_committed_in_another_process_and_leaves_its_group(
    daphne_server, alice, make_order, login_cookies, redis_url, channel_layer_prefix
):
    order = await sync_to_async(make_order)(alice)
    group = f"order.{order.pk}"
    cookies = await sync_to_async(login_cookies)(alice)
    async with (
        httpx.AsyncClient(base_url=daphne_server.url, cookies=cookies, timeout=10) as client,
        client.stream("GET", f"/events/stream/?stream=order:{order.pk}") as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = sse_frames(response.aiter_lines())
        assert (await sse_next(frames)).retry is not None
        await sync_to_async(transition_order)(order.pk, "paid")
        assert (await next_event(frames))["order"]["status"] == "paid"
        assert await group_member_count(redis_url, channel_layer_prefix, group) == 1
    # The client went away: daphne sends http.disconnect and the consumer leaves.
    await async_wait_until(
        lambda: _is_zero(group_member_count(redis_url, channel_layer_prefix, group)),
        timeout=10,
        message="the SSE consumer to leave its group",
    )


async def _is_zero(size) -> bool:
    return (await size) == 0


async def test_sse_reconnecting_with_last_event_id_gets_exactly_what_it_missed(
    daphne_server, alice, make_order, login_cookies
):
    order = await sync_to_async(make_order)(alice)
    cookies = await sync_to_async(login_cookies)(alice)
    url = f"/events/stream/?stream=order:{order.pk}&after=0"
    async with httpx.AsyncClient(base_url=daphne_server.url, cookies=cookies, timeout=10) as client:
        async with client.stream("GET", url) as response:
            frames = sse_frames(response.aiter_lines())
            created = await next_event(frames)
        for status in ("paid", "packed"):
            await sync_to_async(transition_order)(order.pk, status)
        headers = {"Last-Event-ID": str(created["id"])}
        async with client.stream("GET", url, headers=headers) as response:
            frames = sse_frames(response.aiter_lines())
            missed = [await next_event(frames) for _ in range(2)]
            assert [e["order"]["status"] for e in missed] == ["paid", "packed"]
            await sync_to_async(transition_order)(order.pk, "shipped")
            assert (await next_event(frames))["order"]["status"] == "shipped"


async def test_a_long_poll_gets_a_change_committed_in_another_process(
    daphne_server, alice, make_order, login_cookies, redis_url, channel_layer_prefix
):
    order = await sync_to_async(make_order)(alice)
    cookies = await sync_to_async(login_cookies)(alice)
    cursor = await sync_to_async(lambda: OrderEvent.objects.filter(order=order).last().id)()
    async with httpx.AsyncClient(base_url=daphne_server.url, cookies=cookies, timeout=30) as client:
        waiting = asyncio.ensure_future(
            client.get(f"/events/poll/?stream=order:{order.pk}&after={cursor}&timeout=20")
        )
        # The poll is parked on the server (it joined the order's group), so
        # the change reaches it live, not from the log.
        await async_wait_until(
            lambda: group_member_count(redis_url, channel_layer_prefix, f"order.{order.pk}"),
            timeout=10,
            message="the long-poll to join its group",
        )
        assert not waiting.done()
        await sync_to_async(transition_order)(order.pk, "paid")
        body = (await waiting).json()
    assert [e["order"]["status"] for e in body["events"]] == ["paid"]
    assert body["cursor"] == body["events"][0]["id"]


async def test_a_long_poll_loop_across_fifty_rapid_changes_sees_each_id_once_in_order(
    daphne_server, alice, make_order, login_cookies
):
    orders = [await sync_to_async(make_order)(alice) for _ in range(13)]
    cookies = await sync_to_async(login_cookies)(alice)
    cursor = await sync_to_async(lambda: OrderEvent.objects.order_by("-id").first().id)()
    start = cursor

    def fifty_changes() -> None:
        count = 0
        for status in ("paid", "packed", "shipped", "delivered"):
            for order in orders:
                if count == 50:
                    return
                transition_order(order.pk, status)
                count += 1

    seen: list[int] = []
    async with httpx.AsyncClient(base_url=daphne_server.url, cookies=cookies, timeout=30) as client:
        writer = asyncio.ensure_future(sync_to_async(fifty_changes, thread_sensitive=False)())
        while len(seen) < 50:
            response = await client.get(f"/events/poll/?stream=mine&after={cursor}&timeout=10")
            body = response.json()
            assert response.status_code == 200, body
            seen += [e["id"] for e in body["events"]]
            cursor = body["cursor"]
        await writer
    expected = await sync_to_async(
        lambda: list(
            OrderEvent.objects.filter(id__gt=start).order_by("id").values_list("id", flat=True)
        )
    )()
    assert seen == expected
    assert len(seen) == 50

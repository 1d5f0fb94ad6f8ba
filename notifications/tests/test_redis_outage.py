"""A Redis outage mid-stream: clients on all three transports stay connected
(or reconnect by their rules) and end with every event once, in order; order
saves never fail; the server stays up.

Runs against a private redis-server that the test stops and restarts (a
restart forgets every group membership; see "Outages" in docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest
from asgiref.sync import sync_to_async

from orders.actions import transition_order
from orders.models import OrderEvent
from tests.support.live import async_wait_until, ws_connect, ws_recv, ws_send
from tests.support.sse import sse_frames

pytestmark = [pytest.mark.asyncio, pytest.mark.live, pytest.mark.django_db(transaction=True)]

CHANGES = ("paid", "packed", "shipped", "delivered")


async def follow_websocket(server, cookies, cursor, seen: list[int], ready: asyncio.Event) -> None:
    async with await ws_connect(server, cookies=cookies) as ws:
        await ws_send(ws, {"action": "subscribe", "stream": "mine", "after": cursor})
        assert (await ws_recv(ws))["type"] == "subscribed"
        ready.set()
        while True:
            frame = await ws_recv(ws, timeout=60)
            if frame["type"] == "event":
                seen.append(frame["event"]["id"])


async def follow_sse(server, cookies, cursor, seen: list[int], ready: asyncio.Event) -> None:
    last = cursor
    async with httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=60) as client:
        while True:  # EventSource's rule: on a drop, reconnect with Last-Event-ID
            try:
                headers = {"Last-Event-ID": str(last)}
                async with client.stream(
                    "GET", "/events/stream/?stream=mine", headers=headers
                ) as r:
                    if r.status_code != 200:
                        await r.aread()
                        await asyncio.sleep(0.2)
                        continue
                    async for frame in sse_frames(r.aiter_lines()):
                        ready.set()
                        if frame.event.startswith("order."):
                            seen.append(int(frame.id))
                            last = int(frame.id)
            except httpx.HTTPError:
                await asyncio.sleep(0.2)


async def follow_long_poll(server, cookies, cursor, seen: list[int], ready: asyncio.Event) -> None:
    async with httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=30) as client:
        while True:
            ready.set()
            try:
                r = await client.get(f"/events/poll/?stream=mine&after={cursor}&timeout=3")
            except httpx.HTTPError:
                await asyncio.sleep(0.2)
                continue
            if r.status_code != 200:  # 503 while the log is unreachable: retry
                await asyncio.sleep(0.2)
                continue
            body = r.json()
            seen += [e["id"] for e in body["events"]]
            cursor = body["cursor"]


async def _negate(awaitable) -> bool:
    return not await awaitable


@pytest.mark.parametrize(
    "publisher",
    [
        pytest.param(True, id="backlog-also-published-live"),
        # Without the publisher nothing is ever re-sent live: only the
        # consumers' catch-up from the log after re-joining can deliver.
        pytest.param(False, id="catch-up-from-the-log-only"),
    ],
)
async def test_every_client_gets_all_twenty_events_once_in_order_across_a_redis_outage(
    layer_on_private_redis,
    start_daphne,
    start_publisher,
    alice,
    make_order,
    login_cookies,
    publisher,
):
    redis = layer_on_private_redis
    server = start_daphne("outage", REDIS_URL=redis.url)
    if publisher:
        start_publisher(REDIS_URL=redis.url)
    orders = [await sync_to_async(make_order)(alice) for _ in range(5)]
    cookies = await sync_to_async(login_cookies)(alice)
    cursor = await sync_to_async(lambda: OrderEvent.objects.order_by("-id").first().id)()

    seen: dict[str, list[int]] = {"ws": [], "sse": [], "poll": []}
    followers = {"ws": follow_websocket, "sse": follow_sse, "poll": follow_long_poll}
    ready = {name: asyncio.Event() for name in followers}
    tasks = [
        asyncio.ensure_future(follow(server, cookies, cursor, seen[name], ready[name]))
        for name, follow in followers.items()
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready.values())), 20)

        redis.stop()
        for status in CHANGES:
            for order in orders:
                await sync_to_async(transition_order)(order.pk, status)  # never fails
        pending = await sync_to_async(
            lambda: OrderEvent.objects.filter(id__gt=cursor, published_at__isnull=True).count()
        )()
        assert pending == 20, "the changes were published although Redis was down"
        redis.restart()
        if publisher:  # the worker sends the backlog within 5 s of Redis answering
            unpublished = sync_to_async(
                lambda: OrderEvent.objects.filter(published_at__isnull=True).exists()
            )
            await async_wait_until(
                lambda: _negate(unpublished()), timeout=5, message="publish_pending to catch up"
            )

        expected = await sync_to_async(
            lambda: list(OrderEvent.objects.filter(id__gt=cursor).values_list("id", flat=True))
        )()
        try:
            await async_wait_until(lambda: all(len(ids) >= 20 for ids in seen.values()), 30)
        except TimeoutError:
            pytest.fail(f"clients did not catch up: { ({k: len(v) for k, v in seen.items()}) }")
        for name, ids in seen.items():
            assert ids == expected, name
        assert server.running

        # Not deaf afterwards: the next change reaches every client live.
        await sync_to_async(transition_order)(orders[0].pk, "returned")
        newest = await sync_to_async(lambda: OrderEvent.objects.order_by("-id").first().id)()
        try:
            await async_wait_until(lambda: all(len(ids) >= 21 for ids in seen.values()), 15)
        except TimeoutError:
            pytest.fail(
                f"a change after recovery was missed: { {k: v[20:] for k, v in seen.items()} }"
            )
        for name, ids in seen.items():
            assert ids == [*expected, newest], name
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

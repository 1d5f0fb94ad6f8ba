"""Many sockets closing at once on CHANNEL_LAYER=redis cost the process's Redis key nothing.

RedisChannelLayer gives all consumers of a process one Redis key (its
process-specific channel), bounded by ``CHANNEL_LAYER_CAPACITY`` for the whole
process. A closing consumer used to end its layer receive with a message to
itself through that key: a 1,000-client reconnect storm sent a thousand at
once, filling the key (group messages arriving then are dropped for every
consumer of the process) and falling back to cancelling receives (which can
drop a message popped for another consumer, channels_redis #366). Now the
message goes into the layer's local buffer; only the receive leading the
shared BZPOPMIN gets it through Redis as well.

Counted on a private Redis: each ``send`` runs one ZCOUNT, nothing else a
closing consumer does runs one. The sockets that stay then get the next event.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async

from orders.actions import transition_order
from orders.models import OrderEvent
from tests.support.fixtures import use_redis_layer
from tests.support.live import async_wait_until, ws_connect, ws_recv, ws_recv_until, ws_send

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
]

LEAVING = 200
STAYING = 10
BATCH = 50
# Sends through the key allowed for LEAVING closes: the receive leading the
# BZPOPMIN when its consumer closes (about one); a send per close before.
AT_MOST_SENDS = LEAVING // 10


@pytest.fixture
def redis_layer(private_redis: Any, settings: Any, channel_layer_prefix: str) -> Any:
    """This process publishes on a RedisChannelLayer on ``private_redis``, as the server."""
    use_redis_layer(settings, private_redis.url, channel_layer_prefix)
    return private_redis


async def redis_calls(url: str, command: str) -> int:
    client = aioredis.from_url(url)
    try:
        stats = await client.info("commandstats")
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
    finally:
        await client.aclose()


async def group_size(url: str, key: str) -> int:
    client = aioredis.from_url(url)
    try:
        return int(await client.zcard(key))
    finally:
        await client.aclose()


async def test_sockets_closing_at_once_send_nothing_through_redis_and_the_rest_stay_live(
    redis_layer, start_daphne, alice, make_order, login_cookies, channel_layer_prefix
):
    server = start_daphne("mass-close", CHANNEL_LAYER="redis", REDIS_URL=redis_layer.url)
    order = await sync_to_async(make_order)(alice)
    cookies = await sync_to_async(login_cookies)(alice)
    cursor = await sync_to_async(lambda: OrderEvent.objects.order_by("-id").first().id)()
    stream = f"order:{order.pk}"
    group_key = f"{channel_layer_prefix}:group:order.{order.pk}"

    async def open_socket() -> Any:
        ws = await ws_connect(server, cookies=cookies)
        await ws_send(ws, {"action": "subscribe", "stream": stream, "after": cursor})
        assert (await ws_recv(ws))["type"] == "subscribed"
        return ws

    sockets: list[Any] = []
    try:
        while len(sockets) < LEAVING + STAYING:
            batch = min(BATCH, LEAVING + STAYING - len(sockets))
            sockets += await asyncio.gather(*(open_socket() for _ in range(batch)))
        leaving, staying = sockets[:LEAVING], sockets[LEAVING : LEAVING + STAYING]
        assert await group_size(redis_layer.url, group_key) == LEAVING + STAYING

        sends_before = await redis_calls(redis_layer.url, "zcount")
        await asyncio.gather(*(ws.close() for ws in leaving))

        # A consumer leaves its groups once its layer receive has ended.
        async def left() -> bool:
            return await group_size(redis_layer.url, group_key) == STAYING

        await async_wait_until(left, timeout=30, message="the closed sockets to leave the group")
        sends = await redis_calls(redis_layer.url, "zcount") - sends_before
        assert sends <= AT_MOST_SENDS, f"{sends} messages through Redis for {LEAVING} closes"

        await sync_to_async(transition_order)(order.pk, "paid")
        for ws in staying:
            frame, _ = await ws_recv_until(ws, lambda f: f["type"] == "event", timeout=10)
            assert frame["event"]["order"]["status"] == "paid"
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)

"""REDIS_URLS: the channel layer spreads groups over several Redis servers
(channels-redis' consistent hash), and every transport still delivers."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from booktime.redis_topology import layer_hosts
from devtools.redis_server import RedisServer
from orders.actions import transition_order
from tests.support.live import ResumingFollower

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]


@pytest.fixture
def shards(settings: Any) -> Iterator[list[RedisServer]]:
    """Two private Redis servers, with this process's layer sharded over them."""
    servers = [RedisServer().start(), RedisServer().start()]
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    if "hosts" not in layers["default"].get("CONFIG", {}):
        pytest.fail("sharding needs CHANNEL_LAYER=redis or pubsub")
    urls = [server.url for server in servers]
    layers["default"]["CONFIG"]["hosts"] = layer_hosts(urls[0], urls, [], "unused")
    settings.CHANNEL_LAYERS = layers
    settings.REDIS_URLS = urls
    try:
        yield servers
    finally:
        for server in servers:
            server.close()


def shard_keys(server: RedisServer, prefix: str) -> list[str]:
    """What the layer keeps on one shard: pubsub channels (pubsub) or group keys (redis)."""
    import redis

    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        return client.pubsub_channels(f"{prefix}*") + list(client.scan_iter(f"{prefix}*"))
    finally:
        client.close()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_groups_spread_over_both_shards_and_every_transport_delivers(
    shards: list[RedisServer],
    start_daphne: Any,
    staff_user: Any,
    alice: Any,
    make_order: Any,
    login_cookies: Any,
    channel_layer_prefix: str,
) -> None:
    urls = ",".join(server.url for server in shards)
    server = start_daphne(name="sharded", REDIS_URLS=urls)
    orders = [await sync_to_async(make_order)(alice) for _ in range(6)]
    staff_cookies = await sync_to_async(login_cookies)(staff_user)
    alice_cookies = await sync_to_async(login_cookies)(alice)
    followers = [
        ResumingFollower([server], f"order:{order.pk}", transport=transport, cookies=alice_cookies)
        for order in orders
        for transport in ("ws", "sse", "poll")
    ] + [
        ResumingFollower([server], "staff", transport=transport, cookies=staff_cookies)
        for transport in ("ws", "sse", "poll")
    ]
    for follower in followers:
        follower.start()
    try:
        for follower in followers:
            await follower.wait_connected()
        # Both shards hold some of the groups.
        keys = [await sync_to_async(shard_keys)(shard, channel_layer_prefix) for shard in shards]
        assert all(keys), keys
        for order in orders:
            await sync_to_async(transition_order)(order, "paid")
        for follower, order in zip(followers, [o for o in orders for _ in range(3)], strict=False):
            await follower.wait_for_ids([await sync_to_async(last_event_id)(order.pk)])
        staff_expected = await sync_to_async(all_event_ids)()
        for follower in followers[-3:]:
            await follower.wait_for_ids(staff_expected)
    finally:
        for follower in followers:
            await follower.stop()


def last_event_id(order_id: int) -> int:
    from orders.models import OrderEvent

    return OrderEvent.objects.filter(order_id=order_id).latest("id").id


def all_event_ids() -> list[int]:
    from orders.models import OrderEvent

    return list(OrderEvent.objects.order_by("id").values_list("id", flat=True))

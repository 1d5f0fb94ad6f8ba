"""REDIS_URLS: the channel layer spreads groups over several Redis servers
(channels-redis' consistent hash), and every transport still delivers."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers

from booktime.redis_topology import layer_hosts
from devtools.redis_server import RedisServer
from notifications.streams import STAFF_GROUP, group_for
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
    orders = await orders_on_both_shards(alice, make_order, 6)
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


async def orders_on_both_shards(customer: Any, make_order: Any, count: int) -> list[Any]:
    """``count`` new orders whose groups, with the staff group, fall on both
    shards by the hash of the layer the settings configure (the ``shards``
    fixture's): group names depend on the database's ids and the run's prefix,
    and a handful can all hash to one shard."""
    layer = channel_layers.make_backend("default")
    orders: list[Any] = []
    for _ in range(count + 40):
        orders = [*orders, await sync_to_async(make_order)(customer)][-count:]
        groups = [STAFF_GROUP, *(group_for(f"order:{order.pk}") for order in orders)]
        if len(orders) == count and len({shard_of(layer, group) for group in groups}) == 2:
            return orders
    pytest.fail("no run of orders spread over both shards")


def shard_of(layer: Any, group: str) -> int:
    """The index of the shard ``layer`` (pubsub or redis) keeps ``group`` on."""
    if hasattr(layer, "consistent_hash"):  # RedisChannelLayer
        return layer.consistent_hash(group)
    loop_layer = layer._get_layer()
    return loop_layer._shards.index(
        loop_layer._get_shard(loop_layer._get_group_channel_name(group))
    )


def last_event_id(order_id: int) -> int:
    from orders.models import OrderEvent

    return OrderEvent.objects.filter(order_id=order_id).latest("id").id


def all_event_ids() -> list[int]:
    from orders.models import OrderEvent

    return list(OrderEvent.objects.order_by("id").values_list("id", flat=True))

"""The pubsub layer's shard connection (notifications/layers.py): joins of a
group already subscribed skip the shard's lock, but never while an
UNSUBSCRIBE of it may be under way; publishes do not queue behind
(un)subscribes; several groups sent together arrive in order. On a private
redis-server, two layer instances playing two processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from notifications.layers import InboxPubSubChannelLayer

pytestmark = [pytest.mark.asyncio]

PREFIX = "shardlock"
EVENT = {"type": "order.event", "n": 1}


@pytest_asyncio.fixture
async def layers(
    private_redis: Any,
) -> AsyncIterator[tuple[InboxPubSubChannelLayer, InboxPubSubChannelLayer]]:
    """(members, publisher): one process holding the groups, one publishing."""
    members = InboxPubSubChannelLayer(hosts=[private_redis.url], prefix=PREFIX)
    publisher = InboxPubSubChannelLayer(hosts=[private_redis.url], prefix=PREFIX)
    yield members, publisher
    await members.flush()
    await publisher.flush()


async def next_message(inbox: asyncio.Queue) -> dict[str, Any]:
    return await asyncio.wait_for(inbox.get(), 5)


async def test_a_join_racing_the_sweeps_unsubscribe_keeps_the_group_heard(layers: Any) -> None:
    members, publisher = layers
    inbox: asyncio.Queue = asyncio.Queue()
    channel = members.new_inbox_channel(inbox)
    await members.group_add("order.7", channel)
    await members.group_discard("order.7", channel)  # empty: the sweep will unsubscribe
    layer = members._get_layer()
    group_channel = layer._get_group_channel_name("order.7")
    shard = layer._get_shard(group_channel)

    sweep = asyncio.create_task(layer._unsubscribe([group_channel]))
    async with asyncio.timeout(5):
        while not shard._lock.locked():  # the sweep has decided; its UNSUBSCRIBE is in flight
            await asyncio.sleep(0)  # one turn of the loop: the sweep's task runs
    await members.group_add("order.7", channel)  # still listed as subscribed right now
    await asyncio.wait_for(sweep, 5)

    assert group_channel in shard._subscribed_to
    await publisher.group_send("order.7", EVENT)
    assert await next_message(inbox) == EVENT


async def test_a_publish_does_not_wait_for_the_shards_subscriptions(layers: Any) -> None:
    members, publisher = layers
    inbox: asyncio.Queue = asyncio.Queue()
    await members.group_add("staff.orders", members.new_inbox_channel(inbox))
    layer = publisher._get_layer()
    shard = layer._get_shard(layer._get_group_channel_name("staff.orders"))

    async with shard._lock:  # a (un)subscribe of another group in progress
        await asyncio.wait_for(publisher.group_send("staff.orders", EVENT), 5)
    assert await next_message(inbox) == EVENT


async def test_several_groups_sent_together_each_hear_every_message_in_order(
    layers: Any,
) -> None:
    """``group_send_many`` (the on-commit publish's three groups, pipelined per shard)."""
    members, publisher = layers
    orders, staff = asyncio.Queue(), asyncio.Queue()
    await members.group_add("order.7", members.new_inbox_channel(orders))
    await members.group_add("staff.orders", members.new_inbox_channel(staff))

    for n in range(5):
        event = {**EVENT, "n": n}
        await publisher.group_send_many([("order.7", event), ("staff.orders", event)])
    for inbox in (orders, staff):
        assert [(await next_message(inbox))["n"] for _ in range(5)] == [0, 1, 2, 3, 4]

"""Per-user access groups on the pubsub layer: heard through one pattern
subscription per process, not a SUBSCRIBE per user (notifications/layers.py,
``PATTERN_GROUP_PREFIXES``), and still heard after Redis restarts
(``notifications.recovery.resubscribe_pubsub``).

Two layer instances on a private redis-server play two server processes:
one holds the members, the other announces, as ``notifications.access`` does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from notifications.layers import InboxPubSubChannelLayer
from notifications.recovery import resubscribe_pubsub
from tests.support.live import async_wait_until

pytestmark = [pytest.mark.asyncio]

PREFIX = "accesspattern"
CHANGED = {"type": "access.changed"}


async def next_message(inbox: asyncio.Queue) -> dict[str, Any]:
    return await asyncio.wait_for(inbox.get(), 5)


async def test_access_groups_share_one_pattern_and_are_heard_across_a_restart(
    private_redis: Any,
) -> None:
    members = InboxPubSubChannelLayer(hosts=[private_redis.url], prefix=PREFIX)
    announcer = InboxPubSubChannelLayer(hosts=[private_redis.url], prefix=PREFIX)
    alice, bob = asyncio.Queue(), asyncio.Queue()
    alices = members.new_inbox_channel(alice)
    bobs = members.new_inbox_channel(bob)
    store = aioredis.from_url(private_redis.url)
    try:
        await members.group_add("access.user.1", alices)
        await members.group_add("access.user.2", bobs)
        await members.group_add("order.7", alices)
        # One pattern for every user; only the order group has a channel of its own.
        assert {c.decode() for c in await store.pubsub_channels()} == {f"{PREFIX}__group__order.7"}
        assert await store.pubsub_numpat() == 1

        await announcer.group_send("access.user.1", CHANGED)
        assert await next_message(alice) == CHANGED
        await members.group_discard("access.user.1", alices)
        await announcer.group_send("access.user.1", CHANGED)
        await announcer.group_send("access.user.2", {**CHANGED, "n": 2})
        # Published in that order on one connection: had alice still been a
        # member, her message would be in her inbox before bob's arrives.
        assert (await next_message(bob))["n"] == 2
        assert alice.empty()

        private_redis.restart()

        async def pattern_back() -> bool:
            try:
                await resubscribe_pubsub(members)  # what the watchdog does
                return await store.pubsub_numpat() == 1
            except Exception:  # noqa: BLE001 - Redis still coming back
                return False

        await async_wait_until(pattern_back, timeout=10, message="the pattern re-subscribed")

        async def announced() -> bool:
            try:  # the announcer's own connection died with the restart too
                await announcer.group_send("access.user.2", {**CHANGED, "n": 3})
            except Exception:  # noqa: BLE001 - reconnecting
                return False
            return True

        await async_wait_until(announced, timeout=10, message="an announcement after the restart")
        assert (await next_message(bob))["n"] == 3
    finally:
        await store.aclose()
        await members.flush()
        await announcer.flush()

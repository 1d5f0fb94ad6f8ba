"""The pubsub layer's subscriber connection made again: consumers hear of it
before any message the new connection brings.

What was published while the connection was down is lost, and what the new
connection brings is newer. A consumer that took such a live event before
catching up would move its cursor past the lost ones and catch up from
there: they would never arrive (found by
``test_redis_outage.py``, at random, under load). So the layer tells the
process's watchdog at the reconnect itself (``ReconnectNoticingPubSub``,
``InboxPubSubChannelLayer.on_reconnect``), and every consumer's inbox holds
``layer.recovered`` ahead of the first new message
(``LayerWatchdog.subscriber_reconnected``).

On a private Redis (its subscriber connections are killed), with the
watchdog's periodic probe an hour apart: only the reconnect itself can tell.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from notifications import recovery
from notifications.recovery import RECOVERED, LayerWatchdog
from tests.support.fixtures import use_redis_layer

pytestmark = pytest.mark.asyncio

GROUP = "order.1"


def kill_subscribers(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return client.client_kill_filter(_type="pubsub")
    finally:
        client.close()


async def test_a_consumer_hears_of_a_new_subscriber_connection_before_its_first_message(
    private_redis: Any, settings: Any, channel_layer_prefix: str, monkeypatch: Any
) -> None:
    use_redis_layer(settings, private_redis.url, channel_layer_prefix, kind="pubsub")
    monkeypatch.setattr(recovery, "WATCHDOG_INTERVAL_SECONDS", 3600)
    layer = get_channel_layer()
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    channel = layer.new_inbox_channel(inbox)
    await layer.group_add(GROUP, channel)
    watchdog = LayerWatchdog.for_running_loop()
    watchdog.register(channel, inbox)
    publisher: asyncio.Task | None = None
    heard = asyncio.Event()
    try:
        await layer.group_send(GROUP, {"type": "order.event", "n": 0})
        assert (await asyncio.wait_for(inbox.get(), 5))["n"] == 0

        assert await sync_to_async(kill_subscribers)(private_redis.url) >= 1

        async def publish_until_heard() -> None:
            # What is sent before the new connection subscribes is lost. Ends
            # by ``heard``, not by cancelling: a cancel can be lost in
            # redis-py's socket timeout (``asyncio.wait_for``, Python 3.11).
            for n in itertools.count(1):
                if heard.is_set():
                    return
                await layer.group_send(GROUP, {"type": "order.event", "n": n})
                await asyncio.sleep(0.02)  # pacing, not waiting

        publisher = asyncio.create_task(publish_until_heard())
        first = await asyncio.wait_for(inbox.get(), 15)
        assert first == {"type": RECOVERED}, first
        assert (await asyncio.wait_for(inbox.get(), 5))["type"] == "order.event"
        # Told once, and not again by the next probe.
        assert not await layer.take_missed()
    finally:
        heard.set()
        if publisher is not None:
            await asyncio.wait_for(publisher, 10)
        watchdog.unregister(channel)
        layer.release_inbox_channel(channel)
        await layer.flush()

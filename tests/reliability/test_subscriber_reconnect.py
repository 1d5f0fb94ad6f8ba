"""A process whose Redis subscriber connection was dropped loses nothing.

On the pubsub layer (the default) each process hears its groups through one
subscriber connection per shard. When Redis drops it while Redis itself
stays up (``client-output-buffer-limit`` on a process far behind at a fan-out
peak, ``CLIENT KILL``, a proxy or a network reset), redis-py connects and
subscribes again when it next reads, and what was published in between
never arrives. The layer notes the new connection and the process's layer
watchdog has every consumer catch up from the event log by its cursor
(``notifications.layers.ReconnectNoticingPubSub``,
``notifications.recovery.LayerWatchdog``).

A real daphne on a private Redis holds a subscribed WebSocket; it is stopped
(SIGSTOP) while its subscriber connection is killed and three changes are
published to nobody; once it runs again, the client gets all three, in
order, once each.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async

from orders.actions import transition_order
from orders.models import OrderEvent
from tests.support.live import async_wait_until, ws_connect, ws_recv_until, ws_send

pytestmark = [pytest.mark.asyncio, pytest.mark.live, pytest.mark.django_db(transaction=True)]

STEPS = ["paid", "packed", "shipped"]


@pytest.fixture
def pubsub_on_private_redis(private_redis: Any, settings: Any, channel_layer_prefix: str) -> Any:
    """This process publishes on the pubsub layer on ``private_redis``, as the server."""
    settings.CHANNEL_LAYER = "pubsub"
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "notifications.layers.InboxPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": private_redis.url}], "prefix": channel_layer_prefix},
        }
    }
    settings.REDIS_URL = private_redis.url
    return private_redis


def unpublished(order_id: int) -> int:
    return OrderEvent.objects.filter(order_id=order_id, published_at__isnull=True).count()


def kill_subscribers(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return client.client_kill_filter(_type="pubsub")
    finally:
        client.close()


async def test_changes_published_while_a_processs_subscriber_connection_was_down_reach_its_clients(
    pubsub_on_private_redis: Any, start_daphne: Any, alice: Any, make_order: Any, login_cookies: Any
) -> None:
    url = pubsub_on_private_redis.url
    server = start_daphne("resubscribed", CHANNEL_LAYER="pubsub", REDIS_URL=url)
    order = await sync_to_async(make_order)(alice)
    cookies = await sync_to_async(login_cookies)(alice)
    async with await ws_connect(server, cookies=cookies) as ws:
        await ws_send(ws, {"action": "subscribe", "stream": f"order:{order.pk}"})
        await ws_recv_until(ws, lambda f: f["type"] == "subscribed")
        # The pong comes once the subscribe is done, its first backlog read
        # included: what arrives later came live or by a catch-up.
        await ws_send(ws, {"action": "ping"})
        await ws_recv_until(ws, lambda f: f["type"] == "pong")

        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            assert await sync_to_async(kill_subscribers)(url) >= 1
            for status in STEPS:
                await sync_to_async(transition_order)(order.pk, status)

            async def all_sent() -> bool:
                return await sync_to_async(unpublished)(order.pk) == 0

            # Every change was published while no connection of the server listened.
            await async_wait_until(all_sent, message="the three changes sent")
        finally:
            os.kill(server.process.pid, signal.SIGCONT)

        seen = []
        while len(seen) < len(STEPS):
            frame, _ = await ws_recv_until(ws, lambda f: f["type"] == "event", timeout=15)
            seen.append(frame["event"]["order"]["status"])
        assert seen == STEPS
        await ws_send(ws, {"action": "ping"})
        _, before_pong = await ws_recv_until(ws, lambda f: f["type"] == "pong")
        assert not [f for f in before_pong if f["type"] == "event"], before_pong
    assert "missed messages for this process" in server.log_path.read_text(errors="replace")

"""A process that falls behind on ``CHANNEL_LAYER=redis`` loses nothing.

channels-redis drops a group message for a process whose Redis key already
holds ``capacity`` messages (the process is behind: a fan-out peak past
what it can take) and only logs a count in the sender. Here the sender
marks that process's key instead, and the process's layer watchdog, finding
the mark, has every consumer catch up from the event log by its cursor
(``notifications.layers.BlockingPoolRedisChannelLayer.group_send``,
``notifications.recovery.LayerWatchdog``).

A real daphne on the redis layer holds a subscribed WebSocket; it is stopped
(SIGSTOP) while four changes are committed here with a layer capacity of
one, so three of the four group messages are dropped; once it runs again,
the client gets all four, in order, once each.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from orders.actions import transition_order
from orders.models import OrderEvent
from tests.support.fixtures import use_redis_layer
from tests.support.live import async_wait_until, ws_connect, ws_recv_until, ws_send

pytestmark = [pytest.mark.asyncio, pytest.mark.live, pytest.mark.django_db(transaction=True)]

STEPS = ["paid", "packed", "shipped", "delivered"]


@pytest.fixture
def tiny_redis_layer(settings: Any, redis_url: str, channel_layer_prefix: str) -> None:
    """This process publishes on the project's redis layer, one message per process key."""
    use_redis_layer(settings, redis_url, channel_layer_prefix, capacity=1)


def unpublished(order_id: int) -> int:
    return OrderEvent.objects.filter(order_id=order_id, published_at__isnull=True).count()


@pytest.mark.usefixtures("tiny_redis_layer")
async def test_group_messages_dropped_for_a_process_behind_reach_its_clients_from_the_log(
    start_daphne: Any, alice: Any, make_order: Any, login_cookies: Any
) -> None:
    server = start_daphne("behind", CHANNEL_LAYER="redis")
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
            for status in STEPS:
                await sync_to_async(transition_order)(order.pk, status)

            async def all_sent() -> bool:
                return await sync_to_async(unpublished)(order.pk) == 0

            # Every change was sent (three of them dropped) while the process stood still.
            await async_wait_until(all_sent, message="the four changes sent")
        finally:
            os.kill(server.process.pid, signal.SIGCONT)

        seen = []
        while len(seen) < len(STEPS):
            frame, _ = await ws_recv_until(ws, lambda f: f["type"] == "event", timeout=15)
            seen.append(frame["event"]["order"]["status"])
        assert seen == STEPS
        # Nothing twice: the message kept in Redis and the catch-up overlap.
        await ws_send(ws, {"action": "ping"})
        _, before_pong = await ws_recv_until(ws, lambda f: f["type"] == "pong")
        assert not [f for f in before_pong if f["type"] == "event"], before_pong
    assert "missed messages for this process" in server.log_path.read_text(errors="replace")

"""A process that falls behind on ``CHANNEL_LAYER=redis`` loses nothing.

channels-redis drops a group message for a process whose Redis key already
holds ``capacity`` messages (the process is behind: a fan-out peak past
what it can take) and only logs a count in the sender. Here the sender
marks that process's key instead, and the process's layer watchdog, finding
the mark, has every consumer catch up from the event log by its cursor
(``notifications.layers.BlockingPoolRedisChannelLayer.group_send``,
``notifications.recovery.LayerWatchdog``).

Messages left unread past ``CHANNEL_LAYER_EXPIRY`` expire with their key
when nothing is sent after them, which leaves no mark: the watchdog sees
that its process stood still that long and does the same.

A real daphne on the redis layer holds a subscribed WebSocket; it is stopped
(SIGSTOP) while the changes are committed here (with a layer capacity of
one, three of the four group messages are dropped; with an expiry of 1 s,
the process's key expires); once it runs again, the client gets them all,
in order, once each.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async

from notifications.layers import OVERFLOW_SUFFIX
from tests.support.fixtures import use_redis_layer
from tests.support.live import async_wait_until
from tests.support.stopped_server import changes_reach_a_client_of_a_stopped_server

pytestmark = [pytest.mark.asyncio, pytest.mark.live, pytest.mark.django_db(transaction=True)]

STEPS = ["paid", "packed", "shipped", "delivered"]


@pytest.fixture
def tiny_redis_layer(settings: Any, redis_url: str, channel_layer_prefix: str) -> None:
    """This process publishes on the project's redis layer, one message per process key."""
    use_redis_layer(settings, redis_url, channel_layer_prefix, capacity=1)


@pytest.mark.usefixtures("tiny_redis_layer")
async def test_group_messages_dropped_for_a_process_behind_reach_its_clients_from_the_log(
    start_daphne: Any, alice: Any, make_order: Any, login_cookies: Any
) -> None:
    server = start_daphne("behind", CHANNEL_LAYER="redis")
    order = await sync_to_async(make_order)(alice)
    cookies = await sync_to_async(login_cookies)(alice)
    # Capacity 1: of the four changes, three are dropped while it stands still.
    await changes_reach_a_client_of_a_stopped_server(server, cookies, order.pk, STEPS)


async def test_messages_a_stopped_process_left_unread_past_the_expiry_reach_its_clients(
    private_redis: Any,
    settings: Any,
    channel_layer_prefix: str,
    start_daphne: Any,
    alice: Any,
    make_order: Any,
    login_cookies: Any,
) -> None:
    """Messages expire with their key when nothing is sent after them: no
    mark. The process's watchdog sees it stood still past the expiry."""
    url = private_redis.url
    use_redis_layer(settings, url, channel_layer_prefix, expiry=1)
    settings.REDIS_URL = url
    server = start_daphne(
        "stood-still", CHANNEL_LAYER="redis", CHANNEL_LAYER_EXPIRY="1", REDIS_URL=url
    )
    order = await sync_to_async(make_order)(alice)
    cookies = await sync_to_async(login_cookies)(alice)

    async def process_keys_expired() -> None:
        client = aioredis.from_url(url)
        try:

            async def gone() -> bool:
                keys = await client.keys(f"{channel_layer_prefix}specific.*")
                return not [key for key in keys if not key.endswith(OVERFLOW_SUFFIX.encode())]

            await async_wait_until(gone, message="the stopped process's messages expired")
        finally:
            await client.aclose()

    await changes_reach_a_client_of_a_stopped_server(
        server, cookies, order.pk, STEPS, after_sent=process_keys_expired
    )

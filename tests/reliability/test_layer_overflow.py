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

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from tests.support.fixtures import use_redis_layer
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

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

from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async

from tests.support.fixtures import use_redis_layer
from tests.support.stopped_server import changes_reach_a_client_of_a_stopped_server

pytestmark = [pytest.mark.asyncio, pytest.mark.live, pytest.mark.django_db(transaction=True)]

STEPS = ["paid", "packed", "shipped"]


@pytest.fixture
def pubsub_on_private_redis(private_redis: Any, settings: Any, channel_layer_prefix: str) -> Any:
    """This process publishes on the pubsub layer on ``private_redis``, as the server."""
    use_redis_layer(settings, private_redis.url, channel_layer_prefix, kind="pubsub")
    settings.REDIS_URL = private_redis.url
    return private_redis


def kill_subscribers(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        assert client.client_kill_filter(_type="pubsub") >= 1
    finally:
        client.close()


async def test_changes_published_while_a_processs_subscriber_connection_was_down_reach_its_clients(
    pubsub_on_private_redis: Any, start_daphne: Any, alice: Any, make_order: Any, login_cookies: Any
) -> None:
    url = pubsub_on_private_redis.url
    server = start_daphne("resubscribed", CHANNEL_LAYER="pubsub", REDIS_URL=url)
    order = await sync_to_async(make_order)(alice)
    cookies = await sync_to_async(login_cookies)(alice)
    # Every change is published while no connection of the server listens.
    await changes_reach_a_client_of_a_stopped_server(
        server, cookies, order.pk, STEPS, lose=lambda: kill_subscribers(url)
    )

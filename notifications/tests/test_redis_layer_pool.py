"""CHANNEL_LAYER=redis: more layer calls at once than the process has Redis
connections wait for one instead of failing (``BlockingPoolRedisChannelLayer``).

redis-py's stock asyncio pool raises ``MaxConnectionsError`` for every call
over ``max_connections`` (100 by default): in a 1,000-client reconnect storm
most ``group_add``/``group_discard`` calls of the process failed, and the
consumers took each failure for a Redis outage. Against the run's Redis.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import BlockingConnectionPool

from booktime.redis_topology import layer_hosts, parse_sentinels
from devtools.sentinel import MASTER_NAME, SentinelCluster
from notifications.layers import BlockingPoolRedisChannelLayer

CONNECTIONS = 3
CALLS = 60
TIMEOUT = 10


@pytest.fixture(params=["address", "sentinel"])
def hosts(request: pytest.FixtureRequest, redis_url: str) -> Iterator[list[dict[str, Any]]]:
    """The layer's ``hosts`` in both forms ``booktime.redis_topology.layer_hosts`` makes."""
    if request.param == "address":
        found = layer_hosts(redis_url, [], [], MASTER_NAME)
    else:
        cluster = SentinelCluster().start()
        request.addfinalizer(cluster.close)
        found = layer_hosts("", [], parse_sentinels(cluster.sentinel_addresses), MASTER_NAME)
    yield [{**host, "max_connections": CONNECTIONS} for host in found]


@pytest.mark.asyncio
async def test_a_burst_of_calls_larger_than_the_pool_all_succeed_on_few_connections(
    hosts: list[dict[str, Any]], channel_layer_prefix: str
) -> None:
    layer = BlockingPoolRedisChannelLayer(hosts=hosts, prefix=f"{channel_layer_prefix}pool")
    channels = [await layer.new_channel() for _ in range(CALLS)]
    try:
        # A storm's worth at once: joins, a message to every member, leaves.
        await asyncio.wait_for(
            asyncio.gather(*(layer.group_add("storm", channel) for channel in channels)),
            TIMEOUT,
        )
        await layer.group_send("storm", {"type": "order.event", "n": 1})
        received = await asyncio.wait_for(
            asyncio.gather(*(layer.receive(channel) for channel in channels)), TIMEOUT
        )
        assert [message["n"] for message in received] == [1] * CALLS
        await asyncio.wait_for(
            asyncio.gather(*(layer.group_discard("storm", channel) for channel in channels)),
            TIMEOUT,
        )

        pool = layer.connection(0).connection_pool
        assert isinstance(pool, BlockingConnectionPool)
        assert len(pool._available_connections) + len(pool._in_use_connections) <= CONNECTIONS
    finally:
        await layer.flush()


def test_the_redis_layer_setting_uses_it_with_the_configured_pool_size() -> None:
    """What ``booktime/settings.py`` configures for ``CHANNEL_LAYER=redis`` (read
    in a fresh interpreter, as a server would)."""
    code = (
        "import json; from booktime import settings; "
        "print(json.dumps(settings.CHANNEL_LAYERS['default']))"
    )
    env = {**os.environ, "CHANNEL_LAYER": "redis", "CHANNEL_LAYER_MAX_CONNECTIONS": "7"}
    result = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    layer = json.loads(result.stdout.splitlines()[-1])
    assert layer["BACKEND"] == "notifications.layers.BlockingPoolRedisChannelLayer"
    assert [host["max_connections"] for host in layer["CONFIG"]["hosts"]] == [7]

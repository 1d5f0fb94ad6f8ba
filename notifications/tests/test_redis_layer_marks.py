"""CHANNEL_LAYER=redis: a group message that a process loses leaves a mark
its watchdog takes (``BlockingPoolRedisChannelLayer.group_send``,
``take_missed``); one that it gets leaves none. Against the run's Redis; the
end-to-end case, a stopped daphne, is tests/reliability/test_layer_overflow.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from notifications.layers import BlockingPoolRedisChannelLayer

pytestmark = pytest.mark.asyncio

EXPIRY = 60


@pytest_asyncio.fixture
async def layer(redis_url: str, channel_layer_prefix: str) -> AsyncIterator[Any]:
    layer = BlockingPoolRedisChannelLayer(
        hosts=[{"address": redis_url}],
        prefix=f"{channel_layer_prefix}marks",
        capacity=2,
        expiry=EXPIRY,
    )
    yield layer
    await layer.flush()


async def joined_channel(layer: BlockingPoolRedisChannelLayer) -> str:
    channel = await layer.new_channel()
    await layer.group_add("order.1", channel)
    return channel


async def test_messages_the_process_receives_leave_no_mark(layer: Any) -> None:
    channel = await joined_channel(layer)
    await layer.group_send("order.1", {"type": "order.event", "n": 1})
    await layer.group_send("order.1", {"type": "order.event", "n": 2})
    assert not await layer.take_missed()
    received = [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(2)]
    assert [message["n"] for message in received] == [1, 2]


async def test_a_message_past_the_capacity_marks_the_process_once(layer: Any) -> None:
    channel = await joined_channel(layer)
    for n in (1, 2, 3):  # capacity 2: the third is dropped
        await layer.group_send("order.1", {"type": "order.event", "n": n})
    assert await layer.take_missed()
    assert not await layer.take_missed()  # taken
    received = [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(2)]
    assert [message["n"] for message in received] == [1, 2]


async def test_a_message_expired_unread_marks_the_process(layer: Any) -> None:
    channel = await joined_channel(layer)
    # A message the process left unread past the expiry (it was stopped).
    key = layer.prefix + layer.non_local_name(channel)
    stale = layer.serialize({"type": "order.event", "n": 0, "__asgi_channel__": channel})
    connection = layer.connection(layer.consistent_hash(channel))
    await connection.zadd(key, {stale: time.time() - EXPIRY - 5})

    await layer.group_send("order.1", {"type": "order.event", "n": 1})

    assert await layer.take_missed()
    received = await asyncio.wait_for(layer.receive(channel), 5)
    assert received["n"] == 1

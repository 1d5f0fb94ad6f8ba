"""Publishing: after commit, in id order, never failing a save; the backlog
left by a Redis outage is sent by publish_pending once Redis answers."""

from __future__ import annotations

import asyncio
import logging

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifications import publish
from notifications.recovery import resubscribe_pubsub
from orders.actions import transition_order
from orders.models import OrderEvent

pytestmark = pytest.mark.django_db(transaction=True)


async def drain(layer, channel: str) -> list[dict]:
    """Every message waiting on ``channel`` (a short receive timeout ends it)."""
    messages = []
    while True:
        try:
            messages.append(await asyncio.wait_for(layer.receive(channel), 0.5))
        except TimeoutError:
            return messages


def test_saves_succeed_while_redis_is_down_and_the_outage_is_logged_once(
    layer_on_private_redis, alice, make_order, caplog
):
    order = make_order(alice)
    layer_on_private_redis.stop()
    with caplog.at_level(logging.ERROR, logger="notifications.publish"):
        for status in ("paid", "packed", "shipped", "delivered"):
            transition_order(order.pk, status)
    assert OrderEvent.objects.filter(order=order, published_at__isnull=True).count() == 4
    outage_errors = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(outage_errors) == 1


@pytest.mark.asyncio
async def test_publish_pending_sends_the_backlog_in_id_order_once_redis_is_back(
    layer_on_private_redis, alice, make_order
):
    order = await sync_to_async(make_order)(alice)
    layer = get_channel_layer()
    layer_on_private_redis.stop()
    for status in ("paid", "packed", "shipped", "delivered"):
        await sync_to_async(transition_order)(order.pk, status)
    layer_on_private_redis.restart()
    await resubscribe_pubsub(layer)  # what the consumers' watchdog does after a restart
    channel = await layer.new_channel()
    await layer.group_add("staff.orders", channel)

    await sync_to_async(call_command)("publish_pending", "--once")

    pending = OrderEvent.objects.filter(order=order, published_at__isnull=True)
    assert not await pending.aexists()
    messages = await drain(layer, channel)
    statuses = [m["event"]["order"]["status"] for m in messages]
    assert statuses == ["paid", "packed", "shipped", "delivered"]
    assert all(m["group"] == "staff.orders" and m["type"] == "order.event" for m in messages)


@pytest.mark.asyncio
async def test_a_commit_publishes_older_pending_events_first(
    layer_on_private_redis, alice, make_order
):
    """The fast path sends every unpublished event up to its own, oldest
    first, so a client dropping ids it has seen never drops an unseen one."""
    order = await sync_to_async(make_order)(alice)
    layer = get_channel_layer()
    layer_on_private_redis.stop()
    await sync_to_async(transition_order)(order.pk, "paid")  # stays pending
    layer_on_private_redis.restart()
    await resubscribe_pubsub(layer)
    channel = await layer.new_channel()
    await layer.group_add(f"order.{order.pk}", channel)

    await sync_to_async(transition_order)(order.pk, "packed")  # its on-commit publish sends both

    statuses = [m["event"]["order"]["status"] for m in await drain(layer, channel)]
    assert statuses == ["paid", "packed"]
    assert not await OrderEvent.objects.filter(published_at__isnull=True).aexists()


def test_the_on_commit_publish_sends_the_event_it_committed_and_reads_back_only_ids(
    memory_layer, alice, make_order, monkeypatch
):
    """Outside an outage the committed event is the only one pending: it is
    sent as its transaction wrote it (the same envelope as the stored row)
    and the publish reads back no event row, only the pending ids
    (docs/performance.md, round 6)."""
    order = make_order(alice)
    sent: list[OrderEvent] = []
    statements: list[str] = []
    send, publish_pending = publish.run_on_publisher_loop, publish.publish_pending

    def recording_send(function, events):
        sent.extend(events)
        return send(function, events)

    def recording_publish(*args, **kwargs):
        with CaptureQueriesContext(connection) as queries:
            published = publish_pending(*args, **kwargs)
        statements.extend(query["sql"] for query in queries.captured_queries)
        return published

    monkeypatch.setattr(publish, "run_on_publisher_loop", recording_send)
    monkeypatch.setattr(publish, "publish_pending", recording_publish)
    transition_order(order.pk, "paid")

    stored = OrderEvent.objects.get(order=order, type="order.status_changed")
    assert [event.pk for event in sent] == [stored.pk]
    assert sent[0].envelope() == stored.envelope()
    assert stored.published_at is not None
    reads = [sql for sql in statements if sql.startswith("SELECT")]
    assert len(reads) == 1 and "data" not in reads[0], statements

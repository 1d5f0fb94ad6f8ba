"""Publishing committed order events to the channel layer.

Only this module sends order events to groups. Publishing is at-least-once
and in id order: a publish sends every still-unpublished event up to the one
that triggered it, oldest first, so a client that drops ids it has already
seen (``notifications.log.LiveCursor``) never drops one it has not seen.
Saving an order never fails because Redis is down: the error is logged once
per outage and the ``publish_pending`` command sends the backlog later.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction
from django.utils import timezone

from notifications import metrics, sql
from notifications.streams import group_names_for_event
from orders.models import OrderEvent

logger = logging.getLogger(__name__)

MESSAGE_TYPE = "order.event"  # lands in the consumers' ``order_event`` handler
MAX_BATCH = 500


class _OutageLog:
    """Log a layer outage once when it starts and once when it ends."""

    def __init__(self) -> None:
        self._down = False
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if not self._down:
                self._down = True
                logger.error(
                    "Channel layer unreachable (%s: %s); events stay pending and "
                    "publish_pending will send them when it is back.",
                    type(exc).__name__,
                    exc,
                )

    def succeeded(self) -> None:
        with self._lock:
            if self._down:
                self._down = False
                logger.warning("Channel layer reachable again; publishing resumed.")


outage_log = _OutageLog()


def layer_message(envelope: dict[str, Any], group: str, text: str) -> dict[str, Any]:
    """The design's ``{"type": "order.event", "event": ...}`` plus two helpers:
    ``group`` (which subscription of a consumer it is for) and ``json`` (the
    envelope encoded once here, so no consumer re-encodes it per client)."""
    return {"type": MESSAGE_TYPE, "event": envelope, "group": group, "json": text}


async def send_to_groups(events: list[OrderEvent]) -> tuple[int, Exception | None]:
    """Send each event to its groups, in order.

    Returns (how many were sent, the error that stopped it or None). Stops at
    the first failure so that what was sent is always a prefix of ``events``.
    """
    layer = get_channel_layer()
    sent = 0
    try:
        for event in events:
            envelope = event.envelope()
            text = json.dumps(envelope)
            # An event's groups at once (one round trip, not three: the staff
            # group heard 0.7 ms later than the order's; docs/performance.md,
            # round 6). Each group still gets events in id order: the next
            # event is sent only once every group accepted this one.
            groups = group_names_for_event(event.order_id, event.order.customer_id)
            await send_together(layer, [(g, layer_message(envelope, g, text)) for g in groups])
            sent += 1
    except Exception as exc:  # noqa: BLE001 - any layer failure must not break saves
        return sent, exc
    return sent, None


async def send_together(layer: Any, sends: list[tuple[str, dict[str, Any]]]) -> None:
    """``group_send`` of each ``(group, message)`` at once: pipelined, one round
    trip per shard, on the pubsub layer (``group_send_many``); concurrent
    ``group_send``s on the others."""
    send_many = getattr(layer, "group_send_many", None)
    if send_many is not None:
        await send_many(sends)
    else:
        await asyncio.gather(*(layer.group_send(group, message) for group, message in sends))


def pending_events(
    up_to: int | None = None, limit: int = MAX_BATCH, committed: OrderEvent | None = None
) -> list[OrderEvent]:
    """Unpublished events, oldest first (only those with id <= ``up_to`` if given).

    ``committed``: the event whose commit triggered this publish, as its
    transaction wrote it. When it is the only one pending (the rule, outside
    an outage) it is used as it is and only the ids are read: building the
    ORM's select-related query cost 0.8 ms of every order save's on-commit
    publish, before any client could hear of it (docs/performance.md, round 6).
    """
    if committed is not None:
        bound = committed.id if up_to is None else up_to
        ids = [row[0] for row in sql.run(_pending_ids(sql.vendor()), [bound, limit])]
        if not ids:
            return []
        if ids == [committed.id]:
            return [committed]
    qs = OrderEvent.objects.filter(published_at__isnull=True).select_related("order")
    if up_to is not None:
        qs = qs.filter(id__lte=up_to)
    return list(qs.order_by("id")[:limit])


@functools.cache
def _pending_ids(vendor: str) -> str:
    """Unpublished ids up to one, oldest first (the partial index ``orderevent_unpublished``)."""
    published = sql.column(OrderEvent, "published_at")
    key = sql.column(OrderEvent, "id")
    return (
        f"SELECT {key} FROM {sql.table(OrderEvent)} WHERE {published} IS NULL "
        f"AND {key} <= %s ORDER BY {key} LIMIT %s"
    )


@functools.cache
def _mark_published(vendor: str, count: int) -> str:
    published = sql.column(OrderEvent, "published_at")
    return (
        f"UPDATE {sql.table(OrderEvent)} SET {published} = %s "
        f"WHERE {sql.column(OrderEvent, 'id')} IN ({sql.marks([0] * count)}) "
        f"AND {published} IS NULL"
    )


def mark_published(events: list[OrderEvent]) -> None:
    """Stamp ``published_at`` on events just sent (one plain statement; the
    ORM's ``update()`` cost 0.45 ms of every order save)."""
    statement = _mark_published(sql.vendor(), len(events))
    sql.run(statement, [sql.when(timezone.now()), *(event.id for event in events)])


class _PublisherLoop:
    """One long-lived event loop thread per process for publishing from sync code.

    ``async_to_sync`` from a plain thread makes a new event loop per call, and
    with it a new Redis connection (~3 ms, seen as one ``HELLO`` per event in
    the bench). This loop keeps the layer's connection pool between publishes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="booktime-publisher", daemon=True
                )
                thread.start()
                self._loop = loop
            return self._loop


_publisher_loop = _PublisherLoop()
PUBLISH_TIMEOUT_SECONDS = 10


def run_on_publisher_loop(function: Any, *args: Any) -> Any:
    """Run ``await function(*args)`` on the publisher loop and wait for the result.

    The in-memory layer's queues belong to the caller's loop, so it keeps
    using ``async_to_sync`` (tests and single-process development only).
    """
    if isinstance(get_channel_layer(), InMemoryChannelLayer):
        return async_to_sync(function)(*args)
    future = asyncio.run_coroutine_threadsafe(function(*args), _publisher_loop.loop())
    return future.result(PUBLISH_TIMEOUT_SECONDS)


def publish_pending(
    up_to: int | None = None, limit: int = MAX_BATCH, committed: OrderEvent | None = None
) -> int:
    """Publish unpublished events (all, or those with id <= ``up_to``) in id order.

    Returns how many were published; when the layer is down that is fewer
    (often 0) and the outage is logged once. ``committed``: see ``pending_events``.
    """
    events = pending_events(up_to, limit, committed)
    if not events:
        return 0
    try:
        sent, error = run_on_publisher_loop(send_to_groups, events)
    except Exception as exc:  # noqa: BLE001
        sent, error = 0, exc
    if sent:
        mark_published(events[:sent])
        metrics.published(events[:sent])
    if error is not None:
        outage_log.failed(error)
    else:
        outage_log.succeeded()
    return sent


def publish_after_commit(event: OrderEvent) -> None:
    """Called from the post_save receiver: publish once the transaction commits."""
    transaction.on_commit(lambda: publish_pending(up_to=event.id, committed=event))

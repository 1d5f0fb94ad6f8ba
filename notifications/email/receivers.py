"""After an order event commits: create its e-mail and push rows, wake the workers.

A fast path only: the worker's catch-up (each channel's ``prepare``) creates
whatever this misses, e.g. after a crash between the commit and this hook.

The hook runs in the process that changed the order (a shop's request), so
it reads as little as it can: nothing for an event no channel may want (a
status no customer is told of), else the event once for both channels.
Profiled (docs/performance.md, round 11): each channel read the event again
with its order and customer, 41 % of an order change's CPU.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from notifications.email import deliveries as email_rows
from notifications.outbound.rows import stored_event
from notifications.outbound.wakeup import notify_workers
from notifications.push import deliveries as push_rows
from orders.models import OrderEvent

logger = logging.getLogger(__name__)


CHANNELS = (("e-mail", email_rows), ("push", push_rows))


def rows_and_wake(event: OrderEvent) -> None:
    wanting = [(name, channel) for name, channel in CHANNELS if channel.may_want(event)]
    if not wanting:
        return
    created = 0
    try:
        stored = stored_event(event.id)
    except Exception:  # noqa: BLE001 - never fail the request: catch-up creates the rows
        logger.warning("e-mail and push rows for event #%s left to the worker's catch-up", event.id)
        return
    for name, channel in wanting:
        try:
            created += channel.create_rows_for_event(stored)
        except Exception:  # noqa: BLE001 - never fail the request: catch-up creates the rows
            logger.warning("%s rows for event #%s left to the worker's catch-up", name, event.id)
    if created:
        notify_workers()


@receiver(post_save, sender=OrderEvent, dispatch_uid="notifications.email_push_rows")
def email_and_push_rows_for_event(
    sender: type, instance: OrderEvent, created: bool, **kwargs: Any
) -> None:
    if created and not kwargs.get("raw"):
        transaction.on_commit(lambda: rows_and_wake(instance))

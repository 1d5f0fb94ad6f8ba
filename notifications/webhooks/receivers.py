"""After an order event commits: create its webhook delivery rows and wake the workers.

The worker's catch-up creates any row this misses (a crash between commit
and this hook), so it is a fast path, not the guarantee.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from notifications.outbound.wakeup import notify_workers
from notifications.webhooks.deliveries import create_rows_for_event
from orders.models import OrderEvent

logger = logging.getLogger(__name__)


def rows_and_wake(event: OrderEvent) -> None:
    try:
        if create_rows_for_event(event):
            notify_workers()
    except Exception:  # noqa: BLE001 - never fail the request: catch-up creates the rows
        logger.warning("webhook rows for event #%s left to the worker's catch-up", event.id)


@receiver(post_save, sender=OrderEvent, dispatch_uid="notifications.webhook_rows")
def webhook_rows_for_event(
    sender: type, instance: OrderEvent, created: bool, **kwargs: Any
) -> None:
    if created and not kwargs.get("raw"):
        transaction.on_commit(lambda: rows_and_wake(instance))

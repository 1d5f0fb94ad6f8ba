"""After an order event commits: create its e-mail and push rows, wake the workers.

A fast path only: the worker's catch-up (each channel's ``prepare``) creates
whatever this misses, e.g. after a crash between the commit and this hook.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from notifications.email import deliveries as email_rows
from notifications.outbound.wakeup import notify_workers
from notifications.push import deliveries as push_rows
from orders.models import OrderEvent

logger = logging.getLogger(__name__)


def rows_and_wake(event: OrderEvent) -> None:
    created = 0
    for name, create in (
        ("e-mail", email_rows.create_rows_for_event),
        ("push", push_rows.create_rows_for_event),
    ):
        try:
            created += create(event)
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

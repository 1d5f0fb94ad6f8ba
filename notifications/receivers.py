"""Signal handlers: a new OrderEvent row is published after its transaction commits."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from notifications.publish import publish_after_commit
from orders.models import OrderEvent


@receiver(post_save, sender=OrderEvent, dispatch_uid="notifications.publish_order_event")
def publish_new_order_event(
    sender: type, instance: OrderEvent, created: bool, **kwargs: Any
) -> None:
    if created and not kwargs.get("raw"):
        publish_after_commit(instance)

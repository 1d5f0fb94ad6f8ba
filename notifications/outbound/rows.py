"""What the e-mail and push channels' rows share: a cursor over the event log and the catch-up.

Rows are made on commit (each channel's receiver); the catch-up makes any a
lost on-commit hook missed. Event ids follow commit order, so a cursor moved
to the newest id read never passes an event still to come. (Webhooks keep a
cursor per endpoint: ``notifications.webhooks.deliveries.catch_up``.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import Model
from django.utils import timezone

from notifications.email.models import OutboundCursor
from notifications.log import latest_event_id
from orders.models import OrderEvent


def cursor(name: str) -> OutboundCursor:
    """The channel's cursor; a new one starts at the newest event (nothing about the past)."""
    row, _ = OutboundCursor.objects.get_or_create(
        name=name, defaults={"through": latest_event_id()}
    )
    return row


# What the channels' ``rows_for`` read of an event, loaded with it: the order
# (push) and its customer (e-mail).
RELATED = "order__customer"


def stored_event(event_id: int) -> OrderEvent:
    """An event as committed, with ``RELATED`` loaded: read once per commit for
    every channel that may want rows (``notifications.email.receivers``)."""
    return OrderEvent.objects.select_related(RELATED).get(id=event_id)


def create_rows_for_event(
    event: OrderEvent,
    model: type[Model],
    rows_for: Callable[[list[OrderEvent]], list[Any]],
) -> int:
    """On commit of ``event`` (``stored_event``): its ``model`` rows (the
    catch-up makes any this misses)."""
    rows = rows_for([event])
    if rows:
        model.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def catch_up(
    name: str,
    model: type[Model],
    rows_for: Callable[[list[OrderEvent]], list[Any]],
    related: str,
    batch: int,
) -> int:
    """Create ``model`` rows for up to ``batch`` events after cursor ``name``; move it on."""
    position = cursor(name)
    latest = latest_event_id()
    if latest <= position.through:
        return 0
    events = list(
        OrderEvent.objects.filter(id__gt=position.through, id__lte=latest)
        .select_related(related)
        .order_by("id")[:batch]
    )
    through = events[-1].id if len(events) == batch else latest
    rows = rows_for(events)
    if rows:
        model.objects.bulk_create(rows, ignore_conflicts=True)
    OutboundCursor.objects.filter(name=name, through__lt=through).update(
        through=through, at=timezone.now()
    )
    return len(rows)

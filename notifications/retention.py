"""Retention: old events leave the log (``manage.py prune_events``).

What is kept stays a contiguous run of ids: pruning deletes every event up to
a boundary id and nothing above it, so the horizon
(``notifications.models.LogHorizon``) says exactly which cursors the log can
still serve, and ``notifications.log.read_backlog`` answers a cursor below it
with ``reset`` on every transport and the REST feed.

The boundary is the highest id such that every event up to it is

- older than the cutoff (``keep_days`` before now; 0 keeps none);
- published: ``published_at`` is set (an unpublished one is still owed to
  open streams by ``publish_pending``);
- not needed by an *enabled* webhook endpoint: neither the event of a pending
  delivery nor one after the point through which the endpoint's delivery rows
  exist (they are created later by the worker's catch-up). A disabled
  endpoint holds nothing back; if it is enabled again, deliveries whose event
  is gone are marked skipped (``notifications.webhooks``).

The horizon moves first, in its own transaction, and only then are rows
deleted, in batches of ``batch_size`` (each its own short transaction), so a
reader racing the prune sees either the rows or the new horizon, never a gap
(``read_backlog`` reads the horizon after the rows). A run that stops halfway
is finished by the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import F, Min
from django.db.models.functions import Greatest
from django.utils import timezone

from notifications.models import LogHorizon
from notifications.webhooks.models import DeliveryState, WebhookDelivery, WebhookEndpoint
from orders.models import OrderEvent

DEFAULT_BATCH_SIZE = 1000


@dataclass
class PruneResult:
    """What one run did."""

    through: int  # the horizon: events up to this id are gone
    deleted: int  # rows deleted by this run
    held_by: str | None  # what kept the boundary below the cutoff, if anything


def oldest_needed_by_webhooks() -> int | None:
    """The lowest event id an enabled webhook endpoint may still send, if any."""
    enabled = WebhookEndpoint.objects.filter(enabled=True)
    pending = WebhookDelivery.objects.filter(
        endpoint__enabled=True, state=DeliveryState.PENDING
    ).aggregate(m=Min("event_id"))["m"]
    not_yet_rowed = enabled.aggregate(m=Min(Greatest(F("rows_through"), F("start_after"))))["m"]
    candidates = [pending, None if not_yet_rowed is None else not_yet_rowed + 1]
    present = [c for c in candidates if c is not None]
    return min(present) if present else None


def prune_boundary(cutoff: datetime) -> tuple[int, str | None]:
    """(the highest id that may go, what held it below the cutoff or None)."""
    newest = OrderEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    limits = {
        "the retention period": OrderEvent.objects.filter(created_at__gte=cutoff)
        .order_by("id")
        .values_list("id", flat=True)
        .first(),
        "unpublished events": OrderEvent.objects.filter(published_at__isnull=True)
        .order_by("id")
        .values_list("id", flat=True)
        .first(),
        "webhook deliveries": oldest_needed_by_webhooks(),
    }
    present = {reason: first for reason, first in limits.items() if first is not None}
    if not present:
        return newest, None
    reason = min(present, key=lambda r: present[r])
    boundary = min(present[reason] - 1, newest)
    return boundary, (None if reason == "the retention period" else reason)


def move_horizon(boundary: int, now: datetime) -> int:
    """Raise the horizon to ``boundary`` (never lower it); returns the horizon."""
    with transaction.atomic():
        horizon, _ = LogHorizon.objects.select_for_update().get_or_create(pk=1)
        if boundary > horizon.pruned_through:
            horizon.pruned_through = boundary
            horizon.pruned_at = now
            horizon.save(update_fields=["pruned_through", "pruned_at"])
        return horizon.pruned_through


def delete_through(horizon: int, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Delete every event with id <= ``horizon``, ``batch_size`` rows per transaction."""
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(
                OrderEvent.objects.filter(id__lte=horizon)
                .order_by("id")
                .values_list("id", flat=True)[:batch_size]
            )
            if not ids:
                return deleted
            count, _ = OrderEvent.objects.filter(id__gte=ids[0], id__lte=ids[-1]).delete()
            deleted += count


def prune_events(
    keep_days: int, batch_size: int = DEFAULT_BATCH_SIZE, now: datetime | None = None
) -> PruneResult:
    """Delete events older than ``keep_days`` days under the rules above."""
    now = now or timezone.now()
    try:
        cutoff = now - timedelta(days=keep_days)
    except OverflowError:  # longer than the calendar: keep everything
        cutoff = datetime.min.replace(tzinfo=UTC)
    boundary, held_by = prune_boundary(cutoff)
    horizon = move_horizon(boundary, now)
    return PruneResult(
        through=horizon, deleted=delete_through(horizon, batch_size), held_by=held_by
    )

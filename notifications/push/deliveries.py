"""The push log's rules: which subscriptions an event goes to, claiming, recording.

Delivery is at least once: a row is marked sent after the push service
answers 201; a worker that dies in between sends it again. The browser
shows one notification per order (its ``tag``), so a repeat replaces the
first instead of adding a second. A subscription the push service answers
404 or 410 (the browser unsubscribed, or the subscription expired) is
deleted with its rows. Failures are retried with the webhooks' back-off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from notifications.email import content
from notifications.outbound import rows as outbound_rows
from notifications.push import subscriptions
from notifications.push.models import PushMessage, PushState, PushSubscription, Scope
from notifications.webhooks.schedule import gives_up, retry_delay
from orders.models import EventType, OrderEvent

CATCH_UP_BATCH = 500
LEASE_SECONDS = 120
ROWS_CURSOR = "push"


def may_want(event: OrderEvent) -> bool:
    """Whether ``event`` could be for any subscription (``wanted_by``, which
    reads only the event and its order, no query): when not, the commit hook
    reads nothing."""
    return wanted_by(event) is not None


def wanted_by(event: OrderEvent) -> Q | None:
    """The subscriptions ``event`` is for (None: nobody)."""
    wanted = None
    if content.customer_kind(event.type, event.data):
        wanted = Q(scope=Scope.MINE, user_id=event.order.customer_id)
        wanted |= Q(scope=Scope.ORDER, order_id=event.order_id)
    if event.type == EventType.CREATED:
        wanted = Q(scope=Scope.STAFF) if wanted is None else wanted | Q(scope=Scope.STAFF)
    return wanted


def rows_for(events: list[OrderEvent]) -> list[PushMessage]:
    rows = []
    for event in events:
        wanted = wanted_by(event)
        if wanted is None:
            continue
        ids = PushSubscription.objects.filter(wanted, created_at__lte=event.created_at)
        rows.extend(
            PushMessage(subscription_id=sid, event_id=event.id)
            for sid in ids.values_list("id", flat=True)
        )
    return rows


def create_rows_for_event(event: OrderEvent) -> int:
    """On commit of ``event`` (read with ``outbound.rows.stored_event``): its rows."""
    return outbound_rows.create_rows_for_event(event, PushMessage, rows_for)


def catch_up() -> int:
    """Create the rows of the events after the cursor (``notifications.outbound.rows``)."""
    return outbound_rows.catch_up(ROWS_CURSOR, PushMessage, rows_for, "order", CATCH_UP_BATCH)


def claim(limit: int, lease_seconds: float = LEASE_SECONDS) -> list[int]:
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            PushMessage.objects.filter(state=PushState.PENDING)
            .filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now))
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .select_for_update(skip_locked=True)
            .order_by("id")
            .values_list("id", flat=True)[:limit]
        )
        if ids:
            PushMessage.objects.filter(id__in=ids).update(
                lease_until=now + timedelta(seconds=lease_seconds)
            )
    return ids


@dataclass
class Outgoing:
    row_id: int
    subscription_id: int
    subscription_info: dict[str, Any]
    payload: dict[str, Any]


def notification(subscription: PushSubscription, event: OrderEvent) -> dict[str, Any]:
    """What the service worker shows: the e-mail's subject as title, and where a click goes."""
    data = event.data
    if subscription.scope == Scope.STAFF:
        kind, url = "new_order", content.staff_url()
    else:
        kind = content.customer_kind(event.type, data) or data["status"]
        url = (
            content.order_url(event.order_id)
            if subscription.user_id is not None
            else content.tracking_url(event.order)
        )
    items = f"{data['items']} item{'' if data['items'] == 1 else 's'}"
    return {
        "title": content.subject(kind, data["reference"]),
        "body": f"{data['reference']} · {items} · {data['total']}",
        "url": url,
        "tag": f"order-{data['id']}",
        "event_id": event.id,
    }


def start(row_id: int) -> Outgoing | None:
    """What to send for a claimed row (None: the row or subscription is gone, or revoked)."""
    row = (
        PushMessage.objects.select_related("subscription__user", "subscription__order")
        .filter(id=row_id, state=PushState.PENDING)
        .first()
    )
    if row is None:
        return None
    subscription = row.subscription
    if not subscriptions.still_valid(subscription):
        subscription.delete()
        return None
    event = OrderEvent.objects.filter(id=row.event_id).first()
    if event is None:
        PushMessage.objects.filter(id=row_id).update(
            state=PushState.FAILED, lease_until=None, last_error="event pruned from the log"
        )
        return None
    info = {
        "endpoint": subscription.endpoint,
        "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
    }
    return Outgoing(row.id, subscription.pk, info, notification(subscription, event))


def record(row_id: int, status: int | None, error: str = "") -> None:
    """Record one attempt: 2xx sent; 404/410 deletes the subscription; else retry or give up."""
    now = timezone.now()
    row = PushMessage.objects.filter(id=row_id).first()
    if row is None:
        return
    if status in (404, 410):  # the browser's subscription is gone: every target of it
        endpoint = PushSubscription.objects.filter(id=row.subscription_id).values("endpoint")
        PushSubscription.objects.filter(endpoint__in=endpoint).delete()
        return
    ok = status is not None and 200 <= status < 300
    first = row.first_attempt_at or now
    attempts = row.attempts + 1
    permanent = status is not None and 400 <= status < 500 and status not in (408, 425, 429)
    final = not ok and (permanent or gives_up(first, now))
    PushMessage.objects.filter(id=row_id).update(
        state=PushState.SENT if ok else PushState.FAILED if final else PushState.PENDING,
        attempts=attempts,
        first_attempt_at=first,
        last_attempt_at=now,
        sent_at=now if ok else None,
        retry_at=None if ok or final else now + retry_delay(attempts),
        lease_until=None,
        last_status_code=status,
        last_error=error[:300],
    )
    if ok:
        PushSubscription.objects.filter(id=row.subscription_id).update(last_success_at=now)


def release(row_ids: list[int]) -> None:
    PushMessage.objects.filter(id__in=row_ids, state=PushState.PENDING).update(lease_until=None)

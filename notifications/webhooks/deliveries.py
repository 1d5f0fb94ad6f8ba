"""The delivery log's rules: creating rows, claiming endpoints, recording outcomes.

Ordering: an endpoint gets its events in id order. Only the worker holding an
endpoint's lease sends to it, oldest pending row first, one at a time; a
failure sets ``retry_at`` on the endpoint and so holds every later row. Rows
are only sent up to ``rows_through``, the id through which the worker has
checked that every matching event has its row (``catch_up``): a row created
on commit for event N+1 never overtakes event N whose on-commit hook was lost.

Claiming: ``claim_endpoints`` leases due endpoints in one short transaction
(``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers never wait
for or take each other's endpoints; SQLite has one writer at a time). A lease
that runs out (crashed worker) makes the endpoint claimable again.

All functions here are synchronous ORM code; the worker calls them through
``sync_to_async``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Exists, F, Max, OuterRef, Q
from django.utils import timezone

from notifications.webhooks.models import (
    RESPONSE_EXCERPT_BYTES,
    DeliveryState,
    WebhookDelivery,
    WebhookEndpoint,
)
from notifications.webhooks.schedule import gives_up, retry_delay
from orders.models import OrderEvent, format_timestamp

logger = logging.getLogger(__name__)

CATCH_UP_BATCH = 1000
HISTORY_KEEP = 50
LEASE_SECONDS = 120


@dataclass
class Attempt:
    """The outcome of one HTTP attempt."""

    ok: bool
    at: datetime
    status_code: int | None = None
    latency_ms: int | None = None
    error: str = ""
    response: str = ""

    def as_history(self) -> dict[str, Any]:
        return {
            "at": format_timestamp(self.at),
            "status_code": self.status_code,
            "latency_ms": self.latency_ms,
            "error": self.error,
        }


@dataclass
class Outgoing:
    """One row to send: what the sender needs, read in one query."""

    delivery_id: int
    event_id: int
    envelope: dict[str, Any] | None  # None: the event was pruned from the log


@dataclass
class EndpointSnapshot:
    id: int
    url: str
    secrets: list[str] = field(default_factory=list)


# -- creating rows ------------------------------------------------------------------


def create_rows_for_event(event: OrderEvent) -> int:
    """On commit of ``event``: one pending row per enabled endpoint that wants it."""
    endpoints = WebhookEndpoint.objects.filter(enabled=True, start_after__lt=event.id)
    rows = [
        WebhookDelivery(endpoint=endpoint, event_id=event.id, event_type=event.type)
        for endpoint in endpoints.only("id", "event_types")
        if endpoint.wants(event.type)
    ]
    if rows:
        WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def catch_up(endpoint_ids: list[int] | None = None) -> int:
    """Create the rows missing since each enabled endpoint's ``rows_through``.

    Event ids follow commit order, so once event M is visible every event
    below M is either visible too or never will be: ``rows_through`` may
    safely move up to the newest id read.
    """
    latest = OrderEvent.objects.aggregate(m=Max("id"))["m"] or 0
    endpoints = WebhookEndpoint.objects.filter(enabled=True, rows_through__lt=latest)
    if endpoint_ids is not None:
        endpoints = endpoints.filter(id__in=endpoint_ids)
    created = 0
    for endpoint in endpoints.only("id", "event_types", "rows_through", "start_after"):
        start = max(endpoint.rows_through, endpoint.start_after)
        events = list(
            OrderEvent.objects.filter(id__gt=start, id__lte=latest)
            .order_by("id")
            .values_list("id", "type")[:CATCH_UP_BATCH]
        )
        through = events[-1][0] if len(events) == CATCH_UP_BATCH else latest
        rows = [
            WebhookDelivery(endpoint_id=endpoint.id, event_id=event_id, event_type=event_type)
            for event_id, event_type in events
            if endpoint.wants(event_type)
        ]
        if rows:
            WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True)
            created += len(rows)
        WebhookEndpoint.objects.filter(id=endpoint.id, rows_through__lt=through).update(
            rows_through=through
        )
    return created


# -- claiming -----------------------------------------------------------------------


def due_endpoints(now: datetime) -> Any:
    """Enabled, not leased, not backing off, with a sendable pending row."""
    sendable = WebhookDelivery.objects.filter(
        endpoint=OuterRef("pk"), state=DeliveryState.PENDING, event_id__lte=OuterRef("rows_through")
    )
    return (
        WebhookEndpoint.objects.filter(enabled=True)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now))
        .filter(Exists(sendable))
    )


def claim_endpoints(limit: int, lease_seconds: float = LEASE_SECONDS) -> list[EndpointSnapshot]:
    """Lease up to ``limit`` due endpoints to the caller, least recently served first."""
    if limit <= 0:
        return []
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            due_endpoints(now)
            .select_for_update(skip_locked=True)
            .order_by(F("lease_until").asc(nulls_first=True), "id")
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return []
        WebhookEndpoint.objects.filter(id__in=ids).update(
            lease_until=now + timedelta(seconds=lease_seconds)
        )
        endpoints = list(WebhookEndpoint.objects.filter(id__in=ids))
    return [snapshot(endpoint, now) for endpoint in endpoints]


def snapshot(endpoint: WebhookEndpoint, now: datetime) -> EndpointSnapshot:
    secrets = [endpoint.secret]
    if (
        endpoint.previous_secret
        and endpoint.previous_secret_expires_at
        and endpoint.previous_secret_expires_at > now
    ):
        secrets.append(endpoint.previous_secret)
    return EndpointSnapshot(endpoint.id, endpoint.url, secrets)


def release(endpoint_id: int) -> None:
    """Give the lease back (the time it ends records when the endpoint was last served)."""
    WebhookEndpoint.objects.filter(id=endpoint_id).update(lease_until=timezone.now())


def next_batch(endpoint_id: int, limit: int) -> list[Outgoing]:
    """The endpoint's oldest sendable pending rows, in event id order (after a catch-up)."""
    catch_up([endpoint_id])
    endpoint = WebhookEndpoint.objects.filter(id=endpoint_id, enabled=True).first()
    if endpoint is None:
        return []
    rows = list(
        WebhookDelivery.objects.filter(
            endpoint_id=endpoint_id,
            state=DeliveryState.PENDING,
            event_id__lte=endpoint.rows_through,
        )
        .order_by("event_id")
        .values_list("id", "event_id")[:limit]
    )
    events = OrderEvent.objects.in_bulk([event_id for _, event_id in rows])
    return [
        Outgoing(
            delivery_id,
            event_id,
            events[event_id].envelope() if event_id in events else None,
        )
        for delivery_id, event_id in rows
    ]


# -- recording outcomes --------------------------------------------------------------


def _excerpt(text: str) -> str:
    return text.encode()[:RESPONSE_EXCERPT_BYTES].decode(errors="ignore")


def record_successes(endpoint_id: int, sent: list[tuple[Outgoing, Attempt]]) -> None:
    """Mark rows delivered (one transaction) and the endpoint healthy."""
    if not sent:
        return
    with transaction.atomic():
        rows = WebhookDelivery.objects.in_bulk([out.delivery_id for out, _ in sent])
        for out, attempt in sent:
            row = rows.get(out.delivery_id)
            if row is None:
                continue
            _apply(row, attempt)
            row.state = DeliveryState.DELIVERED if out.envelope else DeliveryState.SKIPPED
            row.delivered_at = attempt.at
            row.next_attempt_at = None
        WebhookDelivery.objects.bulk_update(list(rows.values()), UPDATE_FIELDS)
        WebhookEndpoint.objects.filter(id=endpoint_id).update(
            last_success_at=sent[-1][1].at,
            consecutive_failures=0,
            failing_since=None,
            retry_at=None,
        )


def record_failure(endpoint_id: int, out: Outgoing, attempt: Attempt) -> bool:
    """Record a failed attempt, schedule the retry; True if the endpoint got disabled."""
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(id=endpoint_id)
        endpoint.consecutive_failures += 1
        endpoint.failing_since = endpoint.failing_since or attempt.at
        endpoint.last_failure_at = attempt.at
        retry_at = attempt.at + retry_delay(endpoint.consecutive_failures)
        disabled = gives_up(endpoint.failing_since, attempt.at)
        if disabled:
            endpoint.enabled = False
            endpoint.disabled_at = attempt.at
            endpoint.disabled_reason = (
                f"Disabled after failing since {format_timestamp(endpoint.failing_since)} "
                f"({endpoint.consecutive_failures} attempts)."
            )
            retry_at = None
        endpoint.retry_at = retry_at
        endpoint.save(
            update_fields=[
                "consecutive_failures",
                "failing_since",
                "last_failure_at",
                "retry_at",
                "enabled",
                "disabled_at",
                "disabled_reason",
            ]
        )
        row = WebhookDelivery.objects.get(id=out.delivery_id)
        _apply(row, attempt)
        row.next_attempt_at = retry_at
        row.save(update_fields=UPDATE_FIELDS)
    if disabled:
        logger.warning("Webhook endpoint %s disabled: %s", endpoint_id, endpoint.disabled_reason)
    return disabled


UPDATE_FIELDS = [
    "state",
    "attempts",
    "first_attempt_at",
    "last_attempt_at",
    "delivered_at",
    "next_attempt_at",
    "last_status_code",
    "last_latency_ms",
    "last_error",
    "last_response",
    "history",
]


def _apply(row: WebhookDelivery, attempt: Attempt) -> None:
    row.attempts += 1
    row.first_attempt_at = row.first_attempt_at or attempt.at
    row.last_attempt_at = attempt.at
    row.last_status_code = attempt.status_code
    row.last_latency_ms = attempt.latency_ms
    row.last_error = attempt.error[:300]
    row.last_response = _excerpt(attempt.response)
    row.history = [*row.history, attempt.as_history()][-HISTORY_KEEP:]


# -- staff actions ------------------------------------------------------------------


def resend(delivery: WebhookDelivery) -> WebhookDelivery:
    """Send one delivery again, now (it goes first: it is the endpoint's oldest pending row)."""
    with transaction.atomic():
        WebhookDelivery.objects.filter(id=delivery.id).update(
            state=DeliveryState.PENDING, next_attempt_at=timezone.now()
        )
        WebhookEndpoint.objects.filter(id=delivery.endpoint_id).update(retry_at=None)
    delivery.refresh_from_db()
    return delivery


def replay(endpoint: WebhookEndpoint, after: int) -> int:
    """Send every event with id > ``after`` again, in order; returns rows re-queued.

    Rows that already exist go back to pending; missing ones (events from
    before the endpoint existed, say) are created by the next catch-up.
    """
    with transaction.atomic():
        requeued = WebhookDelivery.objects.filter(endpoint=endpoint, event_id__gt=after).update(
            state=DeliveryState.PENDING, next_attempt_at=None
        )
        WebhookEndpoint.objects.filter(id=endpoint.id).update(
            start_after=min(endpoint.start_after, after),
            rows_through=min(endpoint.rows_through, after),
            retry_at=None,
        )
    endpoint.refresh_from_db()
    return requeued


def set_enabled(endpoint: WebhookEndpoint, enabled: bool) -> None:
    """Enable (resuming where it stopped, with a clean failure record) or disable."""
    endpoint.enabled = enabled
    if enabled:
        endpoint.disabled_reason = ""
        endpoint.disabled_at = None
        endpoint.consecutive_failures = 0
        endpoint.failing_since = None
        endpoint.retry_at = None
    else:
        endpoint.disabled_at = timezone.now()
        endpoint.disabled_reason = endpoint.disabled_reason or "Disabled by staff."


def latest_event_id() -> int:
    return OrderEvent.objects.aggregate(m=Max("id"))["m"] or 0


def rotate_secret(endpoint: WebhookEndpoint, grace_seconds: int) -> str:
    """Give the endpoint a new secret; the old one keeps signing for ``grace_seconds``."""
    from notifications.webhooks.signing import new_secret

    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = timezone.now() + timedelta(seconds=grace_seconds)
    endpoint.secret = new_secret()
    endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
    return endpoint.secret

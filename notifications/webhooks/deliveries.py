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

All functions here are synchronous database code; the worker calls them
through ``sync_to_async``, about once per batch (``finish_batches``, which
records the batches several endpoints finished in one transaction). The
hot-path statements are SQL written out in ``queries`` (building them with
the ORM cost more than running them); the rest is ORM.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from notifications.log import latest_event_id
from notifications.webhooks import queries
from notifications.webhooks.models import (
    RESPONSE_EXCERPT_BYTES,
    DeliveryState,
    WebhookDelivery,
    WebhookEndpoint,
    wants,
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
    """One row to send: what the sender needs, and the row's record so far."""

    delivery_id: int
    event_id: int
    envelope: dict[str, Any] | None  # None: the event was pruned from the log
    attempts: int = 0
    first_attempt_at: datetime | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class EndpointSnapshot:
    id: int
    url: str
    secrets: list[str] = field(default_factory=list)
    first_batch: list[Outgoing] = field(default_factory=list)  # read with the claim


# -- creating rows ------------------------------------------------------------------


def create_rows_for_event(event: OrderEvent) -> int:
    """On commit of ``event``: one pending row per enabled endpoint that wants it."""
    rows = [
        (endpoint_id, event.id, event.type)
        for endpoint_id, event_types in queries.endpoints_wanting(event.id)
        if wants(event_types, event.type)
    ]
    queries.insert_rows(rows)
    return len(rows)


def catch_up() -> int:
    """Create the rows missing since each enabled endpoint's ``rows_through``; advance it.

    Event ids follow commit order, so once event M is visible every event
    below M is either visible too or never will be: ``rows_through`` may
    safely move up to the newest id read. Endpoints at the same point (all of
    them, usually) are handled together: one query finds the rows the
    on-commit hook did not make (normally none), one update moves them on.
    An endpoint far behind (a replay) moves ``CATCH_UP_BATCH`` events per call,
    in a group of its own, so it never holds the others back.
    """
    latest = queries.newest_event_id()
    groups: dict[int, dict[int, list[str]]] = {}
    for endpoint_id, start, event_types in queries.endpoints_behind(latest):
        groups.setdefault(start, {})[endpoint_id] = event_types
    created = 0
    for start, wanted in groups.items():
        through = queries.nth_event_id_after(start, latest, CATCH_UP_BATCH)
        rows = [
            row
            for row in queries.missing_rows(list(wanted), start, through)
            if wants(wanted[row[0]], row[2])
        ]
        queries.insert_rows(rows)
        created += len(rows)
        queries.advance_rows_through(list(wanted), through)
    return created


# -- claiming -----------------------------------------------------------------------


def claim_endpoints(limit: int, lease_seconds: float = LEASE_SECONDS) -> list[EndpointSnapshot]:
    """Lease up to ``limit`` due endpoints to the caller, least recently served first.

    Due: enabled, not leased, not backing off, with a sendable pending row
    (``queries.due_endpoint_ids``). A plain read first: most scans find
    nothing due and so take no lock (on SQLite, no write lock at all).
    """
    if limit <= 0:
        return []
    now = timezone.now()
    if not queries.due_endpoint_ids(now, limit, lock=False):
        return []
    with transaction.atomic():
        ids = queries.due_endpoint_ids(now, limit, lock=True)
        if not ids:
            return []
        queries.set_lease(ids, now + timedelta(seconds=lease_seconds))
        endpoints = list(WebhookEndpoint.objects.filter(id__in=ids))
    return [snapshot(endpoint, now) for endpoint in endpoints]


def catch_up_and_claim(limit: int, batch: int) -> list[EndpointSnapshot]:
    """A worker's scan in one trip to the database: ``catch_up``, ``claim_endpoints``,
    and each claimed endpoint's first batch."""
    catch_up()
    endpoints = claim_endpoints(limit)
    for endpoint in endpoints:
        endpoint.first_batch = next_batch(endpoint.id, batch)
    return endpoints


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
    queries.update_endpoint(endpoint_id, {"lease_until": timezone.now()})


def next_batch(endpoint_id: int, limit: int) -> list[Outgoing]:
    """The endpoint's oldest sendable pending rows, in event id order (up to ``rows_through``)."""
    batch = []
    for row in queries.sendable_rows(endpoint_id, limit):
        delivery_id, event_id, attempts, first_attempt_at, history, event_type, at, data = row
        event = None
        if event_type is not None:
            event = OrderEvent(id=event_id, type=event_type, created_at=at, data=data)
        envelope = event.envelope() if event is not None else None
        batch.append(Outgoing(delivery_id, event_id, envelope, attempts, first_attempt_at, history))
    return batch


def finish_batches(
    finished: list[tuple[int, list[tuple[Outgoing, Attempt]]]], limit: int
) -> list[list[Outgoing]]:
    """For each (endpoint id, successes) pair: record the successes and read the
    endpoint's next batch, giving its lease back if there is none. One transaction
    for all of them: the worker gathers the batches its jobs finish meanwhile.

    A catch-up first (two small queries when nothing is behind), so a running job
    finds events committed since the last scan by itself, wake-up or not (a
    process that commits and exits at once may never send its wake-up).
    """
    catch_up()
    batches: dict[int, list[Outgoing]] = {}
    with transaction.atomic():
        _mark_delivered([pair for _, sent in finished for pair in sent])
        # Endpoint rows are locked in id order, as catch_up locks them.
        for endpoint_id, sent in sorted(finished, key=lambda item: item[0]):
            batches[endpoint_id] = next_batch(endpoint_id, limit)
            _mark_healthy(endpoint_id, sent, release=not batches[endpoint_id])
    return [batches[endpoint_id] for endpoint_id, _ in finished]


def finish_with_failure(
    endpoint_id: int, sent: list[tuple[Outgoing, Attempt]], out: Outgoing, attempt: Attempt
) -> bool:
    """Record a batch's successes, then the failure that ended it, and give the lease
    back (one transaction); True if the endpoint got disabled."""
    with transaction.atomic():
        record_successes(endpoint_id, sent)
        disabled = record_failure(endpoint_id, out, attempt)
        release(endpoint_id)
    return disabled


# -- recording outcomes --------------------------------------------------------------


def _excerpt(text: str) -> str:
    return text.encode()[:RESPONSE_EXCERPT_BYTES].decode(errors="ignore")


def record_successes(endpoint_id: int, sent: list[tuple[Outgoing, Attempt]]) -> None:
    """Mark rows delivered and the endpoint healthy (one transaction)."""
    if not sent:
        return
    with transaction.atomic():
        _mark_delivered(sent)
        _mark_healthy(endpoint_id, sent, release=False)


def _attempt_record(
    attempts: int, first_attempt_at: datetime | None, history: list[Any], attempt: Attempt
) -> dict[str, Any]:
    """What one more attempt changes in its row (field name -> new value)."""
    return {
        "attempts": attempts + 1,
        "first_attempt_at": first_attempt_at or attempt.at,
        "last_attempt_at": attempt.at,
        "last_status_code": attempt.status_code,
        "last_latency_ms": attempt.latency_ms,
        "last_error": attempt.error[:300],
        "last_response": _excerpt(attempt.response),
        "history": [*history, attempt.as_history()][-HISTORY_KEEP:],
    }


def _mark_delivered(sent: list[tuple[Outgoing, Attempt]]) -> None:
    """One ``UPDATE`` statement run for every row, each row's new record computed from
    the one read with its batch: only the lease holder writes a row's attempts."""
    rows = [
        (
            out.delivery_id,
            _attempt_record(out.attempts, out.first_attempt_at, out.history, attempt)
            | {
                "state": DeliveryState.DELIVERED if out.envelope else DeliveryState.SKIPPED,
                "delivered_at": attempt.at,
                "next_attempt_at": None,
            },
        )
        for out, attempt in sent
    ]
    if rows:
        queries.update_rows(list(rows[0][1]), rows)


def _mark_healthy(endpoint_id: int, sent: list[tuple[Outgoing, Attempt]], release: bool) -> None:
    """After successes: a clean failure record; ``release``: the lease given back too."""
    changes: dict[str, Any] = {"lease_until": timezone.now()} if release else {}
    if sent:
        changes |= {
            "last_success_at": sent[-1][1].at,
            "consecutive_failures": 0,
            "failing_since": None,
            "retry_at": None,
        }
    if changes:
        queries.update_endpoint(endpoint_id, changes)


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
        changes = _attempt_record(row.attempts, row.first_attempt_at, row.history, attempt)
        changes["next_attempt_at"] = retry_at
        for name, value in changes.items():
            setattr(row, name, value)
        row.save(update_fields=list(changes))
    if disabled:
        logger.warning("Webhook endpoint %s disabled: %s", endpoint_id, endpoint.disabled_reason)
    return disabled


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


def cursors_from_now() -> dict[str, int]:
    """A new endpoint's cursors: events from now on (replay reaches further back).

    The log's newest id, which is its pruned horizon once every event is
    pruned (notifications.log owns ids, cursors and the horizon).
    """
    latest = latest_event_id()
    return {"start_after": latest, "rows_through": latest}


def rotate_secret(endpoint: WebhookEndpoint, grace_seconds: int) -> str:
    """Give the endpoint a new secret; the old one keeps signing for ``grace_seconds``."""
    from notifications.webhooks.signing import new_secret

    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = timezone.now() + timedelta(seconds=grace_seconds)
    endpoint.secret = new_secret()
    endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
    return endpoint.secret

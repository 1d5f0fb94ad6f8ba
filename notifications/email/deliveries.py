"""The e-mail log's rules: creating rows, folding, claiming, recording outcomes.

Delivery promise (docs/notifications.md):

- **At most one e-mail per (recipient, event, audience)**: the unique
  constraint ``emailmessage_once``; rows are created on commit and again by
  the worker's catch-up, conflicts ignored.
- **At most once per row, even across a crash.** Before a message goes to
  the mail server its row is marked ``sending`` in its own committed
  transaction; after the server accepts it, ``sent``. A worker that dies in
  between leaves the row ``sending``; after ``EMAIL_SENDING_STUCK_SECONDS``
  ``sweep`` marks it ``unknown`` and it is **not** sent again (the message
  most likely went out; staff can see the row). A send that fails with an
  error (server down, refused, time-out) is retried with the webhooks'
  back-off, for up to ``WEBHOOKS_DISABLE_AFTER_SECONDS``; a 5xx refusal of
  the message is final (``failed``). The ``Message-ID`` is fixed per row, so
  the rare ambiguous failure (connection lost after the data was sent) that
  is retried carries the same id and mail clients show it once.
- **Folding.** A customer e-mail waits ``EMAIL_FOLD_SECONDS`` after its
  change. When its turn comes and a newer e-mail for the same order and
  recipient exists, it is marked ``folded`` into that one, which mentions it
  ("before that it was shipped"): changes within the window (or while the
  mail server is down) make one e-mail about the newest status.

Synchronous ORM code; the channel calls it through ``sync_to_async``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import formataddr, parseaddr
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from notifications.email import content, preferences
from notifications.email.models import (
    STAFF_NEW_ORDERS,
    Audience,
    EmailMessage,
    EmailState,
    OutboundCursor,
)
from notifications.email.unsubscribe import unsubscribe_url
from notifications.outbound import rows as outbound_rows
from notifications.outbound.rows import cursor
from notifications.webhooks.schedule import gives_up, retry_delay
from orders.models import EventType, Order, OrderEvent

logger = logging.getLogger(__name__)

CATCH_UP_BATCH = 500
LEASE_SECONDS = 120
DIGEST_MAX_ORDERS = 200
ROWS_CURSOR = "email"
DIGEST_CURSOR = "email.digest"


def staff_recipients() -> list[tuple[int, str]]:
    users = get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
    return list(users.order_by("pk").values_list("pk", "email"))


def rows_for(events: list[OrderEvent]) -> list[EmailMessage]:
    """The e-mails ``events`` make (events with ``order__customer`` loaded)."""
    fold = timedelta(seconds=settings.EMAIL_FOLD_SECONDS)
    each = settings.EMAIL_STAFF_NEW_ORDERS == "each"
    staff = staff_recipients() if each and any(e.type == EventType.CREATED for e in events) else []
    rows = []
    for event in events:
        kind = content.customer_kind(event.type, event.data)
        customer = event.order.customer
        if kind and customer.email and customer.is_active:
            rows.append(
                EmailMessage(
                    recipient=customer.email,
                    user_id=customer.pk,
                    audience=Audience.CUSTOMER,
                    kind=kind,
                    event_id=event.id,
                    order_id=event.order_id,
                    not_before=event.created_at + fold,
                )
            )
        if each and event.type == EventType.CREATED:
            rows.extend(
                EmailMessage(
                    recipient=email,
                    user_id=user_id,
                    audience=Audience.STAFF,
                    kind="new_order",
                    event_id=event.id,
                    order_id=event.order_id,
                    event_ids=[event.id],
                    not_before=event.created_at,
                )
                for user_id, email in staff
            )
    return rows


def may_want(event: OrderEvent) -> bool:
    """Whether ``rows_for`` could make an e-mail of ``event``, from its type and
    data alone (no query): when not, the commit hook reads nothing."""
    if content.customer_kind(event.type, event.data) is not None:
        return True
    return event.type == EventType.CREATED and settings.EMAIL_STAFF_NEW_ORDERS == "each"


def create_rows_for_event(event: OrderEvent) -> int:
    """On commit of ``event`` (read with ``outbound.rows.stored_event``): its rows."""
    return outbound_rows.create_rows_for_event(event, EmailMessage, rows_for)


def catch_up() -> int:
    """Create the rows of the events after the cursor (``notifications.outbound.rows``)."""
    return outbound_rows.catch_up(
        ROWS_CURSOR, EmailMessage, rows_for, "order__customer", CATCH_UP_BATCH
    )


def make_digests(now: datetime) -> int:
    """Staff digest mode: every ``EMAIL_STAFF_DIGEST_MINUTES``, one e-mail about the new orders."""
    if settings.EMAIL_STAFF_NEW_ORDERS != "digest":
        return 0
    cursor(DIGEST_CURSOR)
    with transaction.atomic():
        position = OutboundCursor.objects.select_for_update().get(name=DIGEST_CURSOR)
        if now - position.at < timedelta(minutes=settings.EMAIL_STAFF_DIGEST_MINUTES):
            return 0
        ids = list(
            OrderEvent.objects.filter(id__gt=position.through, type=EventType.CREATED)
            .order_by("id")
            .values_list("id", "order_id")[:DIGEST_MAX_ORDERS]
        )
        if not ids:
            return 0
        anchor, order_id = ids[-1]
        rows = [
            EmailMessage(
                recipient=email,
                user_id=user_id,
                audience=Audience.STAFF,
                kind="digest",
                event_id=anchor,
                order_id=order_id,
                event_ids=[event_id for event_id, _ in ids],
                not_before=now,
            )
            for user_id, email in staff_recipients()
        ]
        EmailMessage.objects.bulk_create(rows, ignore_conflicts=True)
        position.through, position.at = anchor, now
        position.save(update_fields=["through", "at"])
    return len(rows)


# -- the worker's steps -------------------------------------------------------------


def sweep(now: datetime) -> int:
    """Rows left ``sending`` by a stopped worker become ``unknown`` (never re-sent)."""
    stuck = now - timedelta(seconds=settings.EMAIL_SENDING_STUCK_SECONDS)
    count = EmailMessage.objects.filter(
        state=EmailState.SENDING, sending_started_at__lt=stuck
    ).update(
        state=EmailState.UNKNOWN,
        lease_until=None,
        last_error="The worker stopped while sending; not re-sent (at most once).",
    )
    if count:
        logger.warning("%s e-mail(s) left 'sending' by a stopped worker marked unknown", count)
    return count


def prepare(now: datetime | None = None) -> None:
    now = now or timezone.now()
    catch_up()
    make_digests(now)
    sweep(now)


def claim(limit: int, lease_seconds: float = LEASE_SECONDS) -> list[int]:
    """Lease up to ``limit`` due pending rows, oldest due first."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            EmailMessage.objects.filter(state=EmailState.PENDING, not_before__lte=now)
            .filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now))
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .select_for_update(skip_locked=True)
            .order_by("not_before", "id")
            .values_list("id", flat=True)[:limit]
        )
        if ids:
            EmailMessage.objects.filter(id__in=ids).update(
                lease_until=now + timedelta(seconds=lease_seconds)
            )
    return ids


@dataclass
class Outgoing:
    row_id: int
    message: EmailMultiAlternatives


def _finish(row: EmailMessage, state: str, **fields: Any) -> None:
    EmailMessage.objects.filter(id=row.id).update(state=state, lease_until=None, **fields)


def _newer(row: EmailMessage) -> EmailMessage | None:
    """The newest e-mail for the same order and recipient that supersedes ``row``."""
    return (
        EmailMessage.objects.filter(
            audience=Audience.CUSTOMER,
            recipient=row.recipient,
            order_id=row.order_id,
            id__gt=row.id,
            state__in=[EmailState.PENDING, EmailState.SENDING, EmailState.SENT, EmailState.UNKNOWN],
        )
        .order_by("-id")
        .first()
    )


def from_address() -> str:
    return formataddr((settings.SHOP_NAME, parseaddr(settings.DEFAULT_FROM_EMAIL)[1]))


def message_id(row: EmailMessage) -> str:
    domain = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2] or "booktime.local"
    return f"<booktime.{row.audience}.{row.event_id}.{row.id}@{domain}>"


def start_sending(row_id: int) -> Outgoing | None:
    """Fold, mute or render the row; mark it ``sending`` (committed) and return the message.

    None: nothing to send (folded, muted, event pruned, already handled).
    """
    row = EmailMessage.objects.filter(id=row_id, state=EmailState.PENDING).first()
    if row is None:
        return None
    if row.audience == Audience.CUSTOMER and (newer := _newer(row)) is not None:
        _finish(row, EmailState.FOLDED, folded_into=newer)
        return None
    preference = row.kind if row.audience == Audience.CUSTOMER else STAFF_NEW_ORDERS
    if row.user_id is not None and not preferences.wants(row.user_id, preference):
        _finish(row, EmailState.SKIPPED, last_error="muted by the recipient")
        return None
    rendered = render(row)
    if rendered is None:
        _finish(row, EmailState.SKIPPED, last_error="the event is no longer in the log")
        return None
    subject, text, html = rendered
    now = timezone.now()
    row.message_id = message_id(row)
    link = unsubscribe_url(row.user_id, row.audience) if row.user_id else content.preferences_url()
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=from_address(),
        to=[row.recipient],
        headers={
            "Message-ID": row.message_id,
            "List-Unsubscribe": f"<{link}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "X-Booktime-Event": str(row.event_id),
            "Auto-Submitted": "auto-generated",
        },
    )
    message.attach_alternative(html, "text/html")
    # Committed before the mail server sees the message: see the module docstring.
    EmailMessage.objects.filter(id=row.id, state=EmailState.PENDING).update(
        state=EmailState.SENDING,
        sending_started_at=now,
        first_attempt_at=row.first_attempt_at or now,
        last_attempt_at=now,
        subject=subject,
        message_id=row.message_id,
    )
    return Outgoing(row.id, message)


def render(row: EmailMessage) -> tuple[str, str, str] | None:
    link = unsubscribe_url(row.user_id, row.audience) if row.user_id else content.preferences_url()
    if row.audience == Audience.STAFF:
        events = list(OrderEvent.objects.filter(id__in=row.event_ids or [row.event_id]))
        return content.staff_email(row.kind, events, link) if events else None
    event = OrderEvent.objects.filter(id=row.event_id).first()
    order = Order.objects.select_related("customer").filter(id=row.order_id).first()
    if event is None or order is None:
        return None
    earlier = list(
        EmailMessage.objects.filter(folded_into=row)
        .order_by("event_id")
        .values_list("kind", flat=True)
    )
    return content.customer_email(row.kind, event, order, earlier, link)


def record_sent(row_id: int) -> None:
    now = timezone.now()
    row = EmailMessage.objects.get(id=row_id)
    _finish(row, EmailState.SENT, sent_at=now, attempts=row.attempts + 1, last_error="")


def record_failure(row_id: int, error: str, permanent: bool = False) -> None:
    """A send that raised: retry with back-off (the message was not accepted), or give up."""
    now = timezone.now()
    row = EmailMessage.objects.get(id=row_id)
    attempts = row.attempts + 1
    first = row.first_attempt_at or now
    final = permanent or gives_up(first, now)
    EmailMessage.objects.filter(id=row_id).update(
        state=EmailState.FAILED if final else EmailState.PENDING,
        attempts=attempts,
        first_attempt_at=first,
        last_attempt_at=now,
        retry_at=None if final else now + retry_delay(attempts),
        lease_until=None,
        last_error=error[:300],
    )


def release(row_ids: list[int]) -> None:
    """Give back claimed rows this job did not get to."""
    EmailMessage.objects.filter(id__in=row_ids, state=EmailState.PENDING).update(lease_until=None)

"""The e-mail channel in-process (worker loop + e-mail channel, Django's locmem backend).

Folding within the window, preferences honoured at send time, staff new-order
e-mails per order and as a digest, catch-up after a lost on-commit hook, the
unique (recipient, event, audience) rule, ``EMAIL_URL`` parsing and the VAPID
key command.
"""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from py_vapid import Vapid

from booktime.email_url import parse_email_url
from notifications.email import deliveries, preferences
from notifications.email.channel import EmailChannel
from notifications.email.models import EmailMessage, EmailState, OutboundCursor
from notifications.outbound.worker import Worker
from orders.actions import transition_order

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def email_settings(settings: Any) -> Any:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.EMAIL_FOLD_SECONDS = 0
    settings.SITE_URL = "https://shop.example"
    settings.SHOP_NAME = "Bookshop Test"
    mail.outbox = []
    return settings


def drain() -> None:
    async def run() -> None:
        await Worker([EmailChannel()], concurrency=4, poll_seconds=0.1, listen=False).drain()

    asyncio.run(run())


def make_due() -> None:
    """As if the folding window had passed."""
    EmailMessage.objects.update(not_before=timezone.now() - timedelta(seconds=1))


def test_changes_within_the_window_fold_into_one_email(
    email_settings: Any, make_order: Any, alice: Any
) -> None:
    email_settings.EMAIL_FOLD_SECONDS = 60
    order = make_order(alice, "shipped")
    transition_order(order, "delivered")
    drain()
    assert mail.outbox == []  # placed, shipped and delivered all wait for the window
    make_due()
    drain()
    assert [m.subject for m in mail.outbox] == [f"Your order {order.reference} has been delivered"]
    assert "Before that it was placed, shipped." in mail.outbox[0].body
    folded = EmailMessage.objects.filter(state=EmailState.FOLDED).order_by("id")
    assert [row.kind for row in folded] == ["placed", "shipped"]
    assert {row.folded_into.kind for row in folded} == {"delivered"}


def test_a_kind_muted_before_sending_is_skipped(
    email_settings: Any, make_order: Any, alice: Any
) -> None:
    email_settings.EMAIL_FOLD_SECONDS = 60
    order = make_order(alice, "placed")
    preferences.update(alice, {"placed": False})
    make_due()
    drain()
    assert mail.outbox == []
    row = EmailMessage.objects.get(order_id=order.pk)
    assert row.state == EmailState.SKIPPED and row.last_error == "muted by the recipient"


def test_staff_get_one_email_per_new_order_when_set_to_each(
    email_settings: Any, make_order: Any, alice: Any, staff_user: Any
) -> None:
    email_settings.EMAIL_STAFF_NEW_ORDERS = "each"
    order = make_order(alice, "paid")
    drain()
    staff_mail = [m for m in mail.outbox if m.to == [staff_user.email]]
    assert [m.subject for m in staff_mail] == [f"New order {order.reference}"]
    assert (
        staff_mail[0]
        .extra_headers["List-Unsubscribe"]
        .startswith("<https://shop.example/unsubscribe/")
    )


def test_staff_digest_collects_new_orders_every_n_minutes(
    email_settings: Any, make_order: Any, alice: Any, bob: Any, staff_user: Any
) -> None:
    email_settings.EMAIL_STAFF_NEW_ORDERS = "digest"
    email_settings.EMAIL_STAFF_DIGEST_MINUTES = 10
    drain()  # starts the digest clock at the newest event
    first, second = make_order(alice), make_order(bob)
    drain()
    assert not [m for m in mail.outbox if m.to == [staff_user.email]]  # 10 minutes not up
    OutboundCursor.objects.filter(name=deliveries.DIGEST_CURSOR).update(
        at=timezone.now() - timedelta(minutes=11)
    )
    drain()
    digests = [m for m in mail.outbox if m.to == [staff_user.email]]
    assert [m.subject for m in digests] == ["2 new orders at Bookshop Test"]
    assert first.reference in digests[0].body and second.reference in digests[0].body
    drain()
    assert len([m for m in mail.outbox if m.to == [staff_user.email]]) == 1


def test_catch_up_makes_rows_a_lost_commit_hook_missed_and_never_twice(
    email_settings: Any, make_order: Any, alice: Any
) -> None:
    drain()  # the cursor starts at the newest event
    order = make_order(alice, "placed")
    EmailMessage.objects.all().delete()  # as if the process died before its on-commit hook
    deliveries.catch_up()
    deliveries.catch_up()
    row = EmailMessage.objects.get()
    assert (row.kind, row.order_id) == ("placed", order.pk)
    with pytest.raises(IntegrityError), transaction.atomic():
        EmailMessage.objects.create(
            recipient=row.recipient, audience=row.audience, kind="placed", event_id=row.event_id
        )
    drain()
    assert len(mail.outbox) == 1


def test_email_url_forms() -> None:
    smtp = parse_email_url("smtp://us%40er:p%3As@mail.example.com:587/?tls=1")
    assert smtp["EMAIL_HOST"] == "mail.example.com" and smtp["EMAIL_PORT"] == 587
    assert (smtp["EMAIL_HOST_USER"], smtp["EMAIL_HOST_PASSWORD"]) == ("us@er", "p:s")
    assert smtp["EMAIL_USE_TLS"] and not smtp["EMAIL_USE_SSL"] and smtp["EMAIL_TIMEOUT"] == 30
    assert parse_email_url("smtps://mail.example.com")["EMAIL_PORT"] == 465
    assert parse_email_url("console:")["EMAIL_BACKEND"].endswith("console.EmailBackend")
    anymail = parse_email_url("backend:anymail.backends.mailgun.EmailBackend")
    assert anymail == {"EMAIL_BACKEND": "anymail.backends.mailgun.EmailBackend"}
    for bad in ("mail.example.com", "smtp://", "pop3://x", "smtp://h/?tls=1&ssl=1", "smtp://h:x"):
        with pytest.raises(ValueError):
            parse_email_url(bad)


def test_create_vapid_keys_prints_a_usable_key_pair() -> None:
    out = io.StringIO()
    call_command("create_vapid_keys", stdout=out)
    lines = dict(line.split("=", 1) for line in out.getvalue().splitlines())
    vapid = Vapid.from_string(lines["VAPID_PRIVATE_KEY"])
    headers = vapid.sign({"sub": "mailto:a@example.com", "aud": "https://push.example"})
    assert headers["Authorization"].endswith(f"k={lines['VAPID_PUBLIC_KEY']}")


def test_a_message_that_cannot_be_built_waits_for_its_lease_instead_of_looping(
    email_settings: Any, make_order: Any, alice: Any, monkeypatch: Any
) -> None:
    order = make_order(alice, "placed")
    make_due()

    def broken(order: Any) -> str:
        raise RuntimeError("a bug while building the e-mail")

    monkeypatch.setattr("notifications.email.content.tracking_url", broken)
    drain()  # returns: the crashed batch is not claimed again at once
    assert mail.outbox == []
    row = EmailMessage.objects.get(order_id=order.pk, kind="placed")
    assert row.state == EmailState.PENDING
    assert row.lease_until is not None and row.lease_until > timezone.now()


def test_an_order_change_reads_its_event_once_for_email_and_push_and_only_when_wanted(
    email_settings: Any, make_order: Any, alice: Any
) -> None:
    """The commit hook runs in the shop's request: it reads the event (with its
    order and customer) once for both channels, and not at all for a status
    no customer is told of (NOTIFY_CUSTOMER_STATUSES leaves out paid, packed)."""
    order = make_order(alice)

    def event_reads(status: str) -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            transition_order(order, status)
        return [q["sql"] for q in queries if 'FROM "orders_orderevent" INNER JOIN' in q["sql"]]

    assert event_reads("paid") == []
    assert event_reads("packed") == []
    assert len(event_reads("shipped")) == 1
    rows = EmailMessage.objects.filter(order_id=order.id).order_by("id")
    assert [row.kind for row in rows] == ["placed", "shipped"]

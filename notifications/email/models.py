"""E-mail preferences, the e-mail log, and the outbound channels' cursors.

One ``EmailMessage`` row per (recipient, event, audience) at most: the unique
constraint is what makes "one e-mail per recipient and event" hold however
many times a row is created (on commit, by the worker's catch-up, twice).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from orders.models import OrderEvent

# Preference key for staff new-order e-mails (per order or digest).
STAFF_NEW_ORDERS = "staff_new_orders"


class EmailPreferences(models.Model):
    """What one user does not want; no row means everything on."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="email_preferences"
    )
    # Kinds switched off: customer statuses ("shipped", ...) and STAFF_NEW_ORDERS.
    muted = models.JSONField(default=list, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)  # last one-click unsubscribe
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "e-mail preferences"

    def __str__(self) -> str:
        return f"e-mail preferences of {self.user}"


class Audience(models.TextChoices):
    CUSTOMER = "customer", "Customer"
    STAFF = "staff", "Staff"


class EmailState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending (handed to the mail server)"
    SENT = "sent", "Sent"
    FOLDED = "folded", "Folded into a newer e-mail"
    SKIPPED = "skipped", "Skipped (muted, or no address)"
    UNKNOWN = "unknown", "Unknown (worker stopped while sending; not re-sent)"
    FAILED = "failed", "Failed (refused, or gave up)"


class EmailMessage(models.Model):
    """One e-mail to one recipient about one event (a digest: about several)."""

    recipient = models.EmailField()
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    audience = models.CharField(max_length=16, choices=Audience.choices)
    # placed, shipped, ... (customer); new_order, digest (staff).
    kind = models.CharField(max_length=32)
    # The event the e-mail is about (a digest: the newest it covers). A plain id:
    # the log may be pruned under the e-mail log.
    event = models.ForeignKey(
        OrderEvent, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    order_id = models.BigIntegerField(null=True, blank=True)
    event_ids = models.JSONField(default=list, blank=True)  # a digest's events
    state = models.CharField(max_length=16, choices=EmailState.choices, default=EmailState.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    # Not sent before (the folding window); then retried from retry_at.
    not_before = models.DateTimeField(default=timezone.now)
    retry_at = models.DateTimeField(null=True, blank=True)
    # A worker has claimed the row until then (a crashed worker's claim runs out).
    lease_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sending_started_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    folded_into = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="folded"
    )
    subject = models.CharField(max_length=300, blank=True)
    message_id = models.CharField(max_length=200, blank=True)
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "event", "audience"], name="emailmessage_once"
            )
        ]
        indexes = [
            models.Index(
                fields=["not_before"],
                condition=models.Q(state="pending"),
                name="emailmessage_pending",
            ),
            models.Index(fields=["order_id", "recipient"], name="emailmessage_order"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} e-mail to {self.recipient} (event #{self.event_id}, {self.state})"


class OutboundCursor(models.Model):
    """How far a channel has checked that every event has its rows (one row per name)."""

    name = models.CharField(max_length=32, primary_key=True)
    through = models.BigIntegerField(default=0)
    at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} through #{self.through}"

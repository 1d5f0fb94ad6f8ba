"""Webhook endpoints and their delivery log.

One ``WebhookDelivery`` row per (endpoint, event). An endpoint receives its
events in id order: only its oldest undelivered row is ever in flight, and a
failure holds every later row until it succeeds (``deliveries`` owns that rule).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from notifications.webhooks.signing import new_secret
from orders.models import OrderEvent

RESPONSE_EXCERPT_BYTES = 1024


class WebhookEndpoint(models.Model):
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    # Event types to send (``order.created``, ...); empty means all.
    event_types = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    secret = models.CharField(max_length=100, default=new_secret, editable=False)
    # The secret before the last rotation; signs too until it expires.
    previous_secret = models.CharField(max_length=100, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    # Delivery state (written by the worker).
    # Events with id <= start_after are not sent (creation cursor; lowered by a replay).
    start_after = models.BigIntegerField(default=0, editable=False)
    # Delivery rows exist for every matching event with start_after < id <= rows_through.
    rows_through = models.BigIntegerField(default=0, editable=False)
    # Held back (after a failure) until then; null: due now.
    retry_at = models.DateTimeField(null=True, blank=True, editable=False)
    # A worker owns this endpoint until then (a crashed worker's lease runs out).
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_failure_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["enabled", "retry_at"], name="webhookendpoint_due")]

    def __str__(self) -> str:
        return self.url


def wants(event_types: list[str], event_type: str) -> bool:
    """Whether an endpoint subscribed to ``event_types`` (empty: all) gets ``event_type``."""
    return not event_types or event_type in event_types


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    SKIPPED = "skipped", "Skipped (event pruned from the log)"


class WebhookDelivery(models.Model):
    """One event for one endpoint, with the outcome of every attempt."""

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    # Kept as a plain id: the event log may be pruned under a delivery's history.
    event = models.ForeignKey(
        OrderEvent, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    event_type = models.CharField(max_length=32)
    state = models.CharField(
        max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # When the next attempt is due; null while it waits behind an older event.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    last_response = models.TextField(blank=True)  # first RESPONSE_EXCERPT_BYTES of the body
    # Every attempt: [{"at", "status_code", "latency_ms", "error"}], newest last (capped).
    history = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["endpoint_id", "event_id"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event"], name="webhookdelivery_once")
        ]
        indexes = [
            models.Index(
                fields=["endpoint", "event"],
                condition=models.Q(state="pending"),
                name="webhookdelivery_pending",
            )
        ]

    def __str__(self) -> str:
        return f"event #{self.event_id} -> {self.endpoint_id} ({self.state})"

"""Push subscriptions and the push log.

A subscription follows one of three things: a user's own orders (``mine``),
one order through its tracking link (``order``, for anonymous viewers:
revoked with the link, see ``subscriptions.still_valid``), or new orders
for staff (``staff``). One ``PushMessage`` per (subscription, event) at most.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from orders.models import Order, OrderEvent


class Scope(models.TextChoices):
    MINE = "mine", "My orders"
    ORDER = "order", "One order (tracking link)"
    STAFF = "staff", "New orders (staff)"


class PushSubscription(models.Model):
    # The push service URL the browser gave (one per browser and application key;
    # a browser may follow several targets, one row each).
    endpoint = models.URLField(max_length=2000)
    target = models.CharField(max_length=40)  # the stream: mine, staff, order:<id>
    p256dh = models.CharField(max_length=200)  # the browser's ECDH public key (base64url)
    auth = models.CharField(max_length=100)  # its 16-byte auth secret (base64url)
    scope = models.CharField(max_length=8, choices=Scope.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="push_subscriptions",
    )
    order = models.ForeignKey(
        Order, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    # The order's tracking_version when an anonymous viewer subscribed through
    # its link (None where orders have no such field): a revoked or rotated
    # link ends the subscription.
    tracking_version = models.IntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_success_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "target"], name="pushsubscription_once")
        ]
        indexes = [models.Index(fields=["scope", "user"], name="pushsubscription_scope")]

    def __str__(self) -> str:
        return f"push {self.scope} #{self.pk}"


class PushState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed (refused, or gave up)"


class PushMessage(models.Model):
    subscription = models.ForeignKey(
        PushSubscription, on_delete=models.CASCADE, related_name="messages"
    )
    event = models.ForeignKey(
        OrderEvent, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    state = models.CharField(max_length=16, choices=PushState.choices, default=PushState.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    retry_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["subscription", "event"], name="pushmessage_once")
        ]
        indexes = [
            models.Index(
                fields=["id"], condition=models.Q(state="pending"), name="pushmessage_pending"
            )
        ]

    def __str__(self) -> str:
        return f"push event #{self.event_id} -> {self.subscription_id} ({self.state})"

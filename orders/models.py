"""Catalogue, orders and the durable, ordered order-event log.

Every save that creates an ``Order`` or changes its status writes exactly one
``OrderEvent`` in the same transaction, whichever code path saved it (admin,
REST, shell, service code). ``QuerySet.update()`` and raw SQL bypass ``save()``
and therefore the log: use ``orders.actions`` or ``Order.save()``.
"""

from __future__ import annotations

import secrets
from datetime import UTC
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connections, models, transaction
from django.utils import timezone

from orders.signals import tracking_links_revoked
from orders.status import OrderStatus, check_transition

# Fields whose change (without a status change) is announced as order.updated.
TRACKED_FIELDS = (
    "shipping_name",
    "shipping_address",
    "shipping_city",
    "shipping_postcode",
    "shipping_country",
    "total",
    "item_count",
)

# No 0/O/1/I/L: references are read aloud on the phone to support staff.
REFERENCE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

# pg_advisory_xact_lock key serialising event inserts ("booktime" in ASCII).
EVENT_LOG_LOCK_KEY = 0x626F6F6B74696D65


def new_reference() -> str:
    """An unguessable public order reference such as ``BT-7Q2KX9``."""
    return "BT-" + "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(6))


class Product(models.Model):
    sku = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    active = models.BooleanField(default=True, help_text="Inactive products cannot be ordered.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"


class Order(models.Model):
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders"
    )
    reference = models.CharField(max_length=16, unique=True, default=new_reference, editable=False)
    status = models.CharField(
        max_length=16, choices=OrderStatus.choices, default=OrderStatus.PLACED, db_index=True
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    shipping_name = models.CharField(max_length=200, blank=True)
    shipping_address = models.CharField(max_length=300, blank=True)
    shipping_city = models.CharField(max_length=100, blank=True)
    shipping_postcode = models.CharField(max_length=20, blank=True)
    shipping_country = models.CharField(max_length=2, blank=True, default="GB")
    # Denormalised from the lines so that the order.created event (written
    # before the lines exist) carries the right figures.
    total = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0.00"))
    item_count = models.PositiveIntegerField(default=0)
    # Tracking links carry the version they were made for (orders/access.py):
    # bumping it ends every link of the order. Save bumps it when the
    # customer changes; orders.actions.revoke_tracking_links on request.
    tracking_version = models.PositiveIntegerField(default=1, editable=False)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.reference

    # -- the guarded save ------------------------------------------------------

    def save(self, *args: Any, actor: Any = None, note: str = "", **kwargs: Any) -> None:
        """Save atomically, validating the status change and logging one event.

        ``actor`` (a user or None) and ``note`` are recorded on the event.
        Raises ``orders.status.InvalidTransition`` for a refused status change.
        A change of customer bumps ``tracking_version``: the previous
        customer's tracking links stop working.
        """
        using = kwargs.get("using") or self._state.db or "default"
        with transaction.atomic(using=using):
            previous_status = None
            if self._state.adding:
                if self.status != OrderStatus.PLACED:
                    check_transition(None, self.status)  # type: ignore[arg-type]
                event_type = EventType.CREATED
            else:
                # Re-read under a row lock: the in-memory copy may be stale and
                # two concurrent transitions must not both pass the check.
                row = (
                    Order.objects.using(using)
                    .select_for_update()
                    .filter(pk=self.pk)
                    .values_list("status", "customer_id", "tracking_version")
                    .first()
                )
                current = row[0] if row is not None else None
                if row is not None:
                    self._keep_tracking_version(row[1], row[2], kwargs)
                if current is not None and current != self.status:
                    check_transition(current, self.status)
                    previous_status = current
                    event_type = EventType.STATUS_CHANGED
                elif self._tracked_fields_changed():
                    event_type = EventType.UPDATED
                else:
                    event_type = None
            super().save(*args, **kwargs)
            if event_type is not None:
                OrderEvent.record(
                    self,
                    event_type,
                    previous_status=previous_status,
                    actor=actor,
                    note=note,
                    using=using,
                )
        self._remember_saved_state()

    def _keep_tracking_version(
        self, stored_customer_id: int, stored_version: int, save_kwargs: dict[str, Any]
    ) -> None:
        """The stored version, never a stale in-memory one (that could revive
        revoked links), plus one when the customer changes."""
        self.tracking_version = stored_version
        if stored_customer_id == self.customer_id:
            return
        self.tracking_version = stored_version + 1
        fields = save_kwargs.get("update_fields")
        if fields is not None:
            save_kwargs["update_fields"] = {*fields, "tracking_version"}
        order_id = self.pk
        transaction.on_commit(
            lambda: tracking_links_revoked.send(sender=Order, order_id=order_id),
            using=save_kwargs.get("using") or self._state.db or "default",
        )

    # -- change tracking -------------------------------------------------------

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any) -> Order:
        instance = super().from_db(db, field_names, values)
        instance._remember_saved_state()
        return instance

    def _remember_saved_state(self) -> None:
        self._saved_state = {f: getattr(self, f, None) for f in ("status", *TRACKED_FIELDS)}

    def _tracked_fields_changed(self) -> bool:
        saved = getattr(self, "_saved_state", None)
        if saved is None:
            return False
        return any(saved[f] != getattr(self, f) for f in TRACKED_FIELDS)


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveSmallIntegerField()
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.product.name}"

    @property
    def line_total(self) -> Decimal:
        return self.unit_price * self.quantity


class EventType(models.TextChoices):
    CREATED = "order.created", "Order created"  # new-order alert on the staff stream
    STATUS_CHANGED = "order.status_changed", "Status changed"
    UPDATED = "order.updated", "Order updated"  # shipping details or totals edited


def lock_event_log(using: str = "default") -> None:
    """Make event ids follow commit order.

    On PostgreSQL an id is drawn from a sequence at insert time, so a later id
    can commit before an earlier one and a reader paging with ``after=<id>``
    would skip the earlier one for good. A transaction-scoped advisory lock
    held from before the insert until commit serialises event-writing
    transactions. SQLite already admits one writer at a time.
    """
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [EVENT_LOG_LOCK_KEY])


class OrderEvent(models.Model):
    """One entry of the durable, ordered log. ``id`` is the global cursor."""

    id = models.BigAutoField(primary_key=True)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=32, choices=EventType.choices)
    # Snapshot of the order as the event left it: the envelope's "order" part.
    data = models.JSONField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Null until the channel layer accepted the event. Used by the
    # publish_pending command to find what the on-commit fast path missed.
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["id"],
                condition=models.Q(published_at__isnull=True),
                name="orderevent_unpublished",
            ),
            models.Index(fields=["order", "id"], name="orderevent_order_id"),
        ]

    def __str__(self) -> str:
        return f"#{self.id} {self.type} {self.data.get('reference', '')}"

    @classmethod
    def record(
        cls,
        order: Order,
        event_type: str,
        *,
        previous_status: str | None = None,
        actor: Any = None,
        note: str = "",
        using: str = "default",
    ) -> OrderEvent:
        """Append one event for ``order``; call inside the order's transaction."""
        lock_event_log(using)
        if actor is not None and not getattr(actor, "is_authenticated", False):
            actor = None
        return cls.objects.using(using).create(
            order=order,
            type=event_type,
            data=order_snapshot(order, previous_status),
            actor=actor,
            note=note[:500],
        )

    def envelope(self) -> dict[str, Any]:
        """The JSON every transport sends (the envelope; see docs/architecture.md)."""
        return {
            "id": self.id,
            "type": self.type,
            "at": format_timestamp(self.created_at),
            "order": self.data,
        }


def order_snapshot(order: Order, previous_status: str | None) -> dict[str, Any]:
    return {
        "id": order.pk,
        "reference": order.reference,
        "status": order.status,
        "previous_status": previous_status,
        "total": f"{Decimal(order.total):.2f}",
        "items": order.item_count,
        "updated_at": format_timestamp(order.updated_at),
    }


def format_timestamp(value: Any) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z``: ``2026-11-24T21:00:00.123Z``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

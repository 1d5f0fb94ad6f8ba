"""The order lifecycle: status values, the one table of allowed transitions,
and the domain error raised for anything else."""

from __future__ import annotations

from django.db import models

from booktime.errors import ClientError


class OrderStatus(models.TextChoices):
    PLACED = "placed", "Placed"  # the customer submitted the order
    PAID = "paid", "Paid"  # payment captured
    PACKED = "packed", "Packed"  # picked and boxed in the warehouse
    SHIPPED = "shipped", "Shipped"  # handed to the courier
    DELIVERED = "delivered", "Delivered"  # the courier confirmed delivery
    CANCELLED = "cancelled", "Cancelled"  # stopped before shipping
    RETURNED = "returned", "Returned"  # came back after delivery


# status -> statuses it may move to next. Anything not listed is refused.
TRANSITIONS: dict[str, frozenset[str]] = {
    OrderStatus.PLACED: frozenset({OrderStatus.PAID, OrderStatus.CANCELLED}),
    OrderStatus.PAID: frozenset({OrderStatus.PACKED, OrderStatus.CANCELLED}),
    OrderStatus.PACKED: frozenset({OrderStatus.SHIPPED, OrderStatus.CANCELLED}),
    OrderStatus.SHIPPED: frozenset({OrderStatus.DELIVERED}),
    OrderStatus.DELIVERED: frozenset({OrderStatus.RETURNED}),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.RETURNED: frozenset(),
}

# The happy path, in order; used by the tracking timeline.
MAIN_PATH: tuple[str, ...] = (
    OrderStatus.PLACED,
    OrderStatus.PAID,
    OrderStatus.PACKED,
    OrderStatus.SHIPPED,
    OrderStatus.DELIVERED,
)


class InvalidTransition(ClientError):
    """Raised when an order is asked to move to a status it may not reach.

    Code ``invalid_transition`` (HTTP 409); the error names ``current``,
    ``requested`` and what is ``allowed`` next.
    """

    def __init__(self, current: str | None, requested: str) -> None:
        self.current = current
        self.requested = requested
        allowed = allowed_next(current) if current else [OrderStatus.PLACED.value]
        if current is None:
            reason = f"a new order must start as 'placed', not '{requested}'"
        elif requested not in TRANSITIONS:
            reason = f"'{requested}' is not an order status"
        else:
            reason = f"an order that is '{current}' cannot become '{requested}'"
        hint = f"allowed next: {', '.join(allowed)}" if allowed else "no further changes allowed"
        self.allowed = allowed
        super().__init__(
            "invalid_transition",
            f"{reason} ({hint})",
            field="status",
            current=current,
            requested=requested,
            allowed=list(allowed),
        )


def allowed_next(current: str) -> list[str]:
    """Statuses ``current`` may move to, in lifecycle order."""
    order = [s.value for s in OrderStatus]
    return sorted(TRANSITIONS.get(current, ()), key=order.index)


def check_transition(current: str | None, requested: str) -> None:
    """Raise ``InvalidTransition`` unless ``current -> requested`` is allowed."""
    if current is None or requested not in TRANSITIONS.get(current, ()):
        raise InvalidTransition(current, requested)

"""The writes that change an order. Views, consumers and commands call these.

Each is atomic; the event-log row is written by ``Order.save()`` inside the
same transaction, and publishing happens only after commit (see
``notifications.receivers``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import F

from booktime.errors import ClientError
from orders.models import Order, OrderLine, Product
from orders.signals import tracking_links_revoked
from orders.status import check_transition

MIN_QUANTITY = 1
MAX_QUANTITY = 99
MAX_LINES = 50


class OrderError(ClientError):
    """A request to place or change an order that cannot be honoured.

    Code ``invalid`` (HTTP 400); ``fields`` maps input field names to messages.
    """

    def __init__(self, message: str, fields: dict[str, Any] | None = None) -> None:
        super().__init__("invalid", message, fields=fields)


@dataclass(frozen=True)
class LineRequest:
    product_id: int
    quantity: int


def place_order(
    customer: Any,
    lines: Iterable[LineRequest],
    *,
    shipping: dict[str, str] | None = None,
) -> Order:
    """Create an order in status ``placed`` with its lines, as one transaction."""
    requested = list(lines)
    if not requested:
        raise OrderError("An order needs at least one line.", {"lines": "must not be empty"})
    if len(requested) > MAX_LINES:
        raise OrderError(f"An order has at most {MAX_LINES} lines.", {"lines": "too many lines"})
    for index, line in enumerate(requested):
        if not MIN_QUANTITY <= line.quantity <= MAX_QUANTITY:
            raise OrderError(
                f"Quantity must be between {MIN_QUANTITY} and {MAX_QUANTITY}.",
                {f"lines[{index}].quantity": f"must be {MIN_QUANTITY}-{MAX_QUANTITY}"},
            )
    ids = {line.product_id for line in requested}
    products = Product.objects.in_bulk(ids)
    for index, line in enumerate(requested):
        product = products.get(line.product_id)
        if product is None or not product.active:
            raise OrderError(
                f"Product {line.product_id} does not exist or is not for sale.",
                {f"lines[{index}].product": "unknown or inactive product"},
            )
    total = sum(
        (products[line.product_id].price * line.quantity for line in requested), Decimal("0.00")
    )
    with transaction.atomic():
        order = Order(
            customer=customer,
            total=total,
            item_count=sum(line.quantity for line in requested),
            **(shipping or {}),
        )
        order.save(actor=customer)
        OrderLine.objects.bulk_create(
            OrderLine(
                order=order,
                product=products[line.product_id],
                quantity=line.quantity,
                unit_price=products[line.product_id].price,
            )
            for line in requested
        )
    return order


def transition_order(
    order: Order | int, status: str, *, actor: Any = None, note: str = ""
) -> Order:
    """Move an order to ``status``; raises ``InvalidTransition`` when not allowed."""
    order_id = order.pk if isinstance(order, Order) else order
    with transaction.atomic():
        locked = Order.objects.select_for_update().get(pk=order_id)
        check_transition(locked.status, status)  # also refuses "move to where it is"
        locked.status = status
        locked.save(actor=actor, note=note)
    return locked


def revoke_tracking_links(order: Order | int) -> Order:
    """End every tracking link of the order (revoke; rotate is this plus a new
    link, ``orders.access.make_tracking_token``). Returns the order as stored.

    Bumps ``tracking_version``; not an order change, so no event is logged.
    ``tracking_links_revoked`` is sent after commit.
    """
    order_id = order.pk if isinstance(order, Order) else order
    with transaction.atomic():
        Order.objects.filter(pk=order_id).update(tracking_version=F("tracking_version") + 1)
        revoked = Order.objects.get(pk=order_id)
        transaction.on_commit(lambda: tracking_links_revoked.send(sender=Order, order_id=order_id))
    return revoked

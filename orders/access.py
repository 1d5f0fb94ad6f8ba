"""Order access: signed tracking links that let an anonymous holder follow one order.

The token is a Django signature over the order id (salt ``TRACKING_SALT``),
valid for ``TRACKING_TOKEN_MAX_AGE`` seconds. Who may read what, with or
without one, is decided by ``notifications.streams.authorize``.
"""

from __future__ import annotations

from django.conf import settings
from django.core import signing

from orders.models import Order

TRACKING_SALT = "booktime.tracking"


def make_tracking_token(order: Order | int) -> str:
    """A signed token letting an anonymous holder follow one order."""
    order_id = order.pk if isinstance(order, Order) else order
    return signing.dumps({"o": order_id}, salt=TRACKING_SALT, compress=False)


def order_id_from_token(token: str) -> int | None:
    """The order a tracking token grants, or None if tampered or expired."""
    try:
        payload = signing.loads(token, salt=TRACKING_SALT, max_age=settings.TRACKING_TOKEN_MAX_AGE)
    except signing.BadSignature:  # includes SignatureExpired
        return None
    order_id = payload.get("o") if isinstance(payload, dict) else None
    return order_id if isinstance(order_id, int) else None

"""Who may subscribe a browser to what, and when a subscription stops being valid.

A push subscription follows a stream, named as the live streams are
(``mine``, ``staff``, ``order:<id>``), and is allowed by the same rule,
``notifications.streams.authorize``: a customer their own orders, staff
anything, an anonymous viewer one order through its tracking link. Nobody
can subscribe a browser to another customer's order.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from booktime.errors import ClientError
from notifications.push.models import PushSubscription, Scope
from notifications.streams import authorize
from notifications.webhooks.safety import UnsafeURL, validate_url
from orders.models import Order


def tracking_version(order: Order) -> int | None:
    """The order's tracking-link version, where orders have one (else None)."""
    return getattr(order, "tracking_version", None)


def _key(value: Any, name: str, size: int) -> str:
    if not isinstance(value, str) or not value:
        raise ClientError(
            "invalid", f"keys.{name} must be a base64url string", field=f"keys.{name}"
        )
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        raise ClientError(
            "invalid", f"keys.{name} is not base64url", field=f"keys.{name}"
        ) from None
    if len(raw) != size:
        raise ClientError(
            "invalid", f"keys.{name} must be {size} bytes, got {len(raw)}", field=f"keys.{name}"
        )
    return value.rstrip("=")


def subscribe(
    user: Any, stream: str, token: str | None, endpoint: Any, keys: Any
) -> PushSubscription:
    """Store (or move) the browser's subscription to ``stream``; raises ``ClientError``."""
    grant = authorize(user, stream, tracking_token=token)  # StreamError: 400/401/403
    if not isinstance(endpoint, str) or not endpoint:
        raise ClientError("invalid", "endpoint must be the push service URL", field="endpoint")
    try:
        endpoint = validate_url(endpoint)
    except UnsafeURL as exc:
        raise ClientError("invalid", str(exc), field="endpoint") from None
    if not isinstance(keys, dict):
        raise ClientError("invalid", "keys must be {p256dh, auth}", field="keys")
    p256dh = _key(keys.get("p256dh"), "p256dh", 65)
    auth = _key(keys.get("auth"), "auth", 16)
    signed_in = user is not None and user.is_authenticated
    fields: dict[str, Any] = {
        "p256dh": p256dh,
        "auth": auth,
        "user": user if signed_in else None,
        "order": None,
        "tracking_version": None,
    }
    target = f"order:{grant.order_id}" if grant.order_id is not None else grant.stream
    if grant.order_id is not None:
        order = Order.objects.get(pk=grant.order_id)
        if signed_in and not user.is_staff and order.customer_id == user.pk:
            # The owner follows all their orders, not just this one.
            target, fields["scope"] = "mine", Scope.MINE
        else:
            fields.update(scope=Scope.ORDER, order=order)
            if not (signed_in and user.is_staff):
                fields["tracking_version"] = tracking_version(order)
                fields["user"] = None
    else:
        fields["scope"] = Scope.STAFF if target == "staff" else Scope.MINE
    subscription, _ = PushSubscription.objects.update_or_create(
        endpoint=endpoint, target=target, defaults=fields
    )
    return subscription


def unsubscribe(endpoint: Any) -> int:
    """Forget a browser (every target): knowing its endpoint URL is the authority."""
    if not isinstance(endpoint, str) or not endpoint:
        raise ClientError("invalid", "endpoint must be the push service URL", field="endpoint")
    deleted, _ = PushSubscription.objects.filter(endpoint=endpoint).delete()
    return deleted


def still_valid(subscription: PushSubscription) -> bool:
    """False once the user is gone or inactive, lost staff rights, or the link was revoked."""
    user = subscription.user
    if subscription.scope in (Scope.MINE, Scope.STAFF) and (user is None or not user.is_active):
        return False
    if subscription.scope == Scope.STAFF and not user.is_staff:
        return False
    if subscription.scope == Scope.ORDER:
        order = subscription.order
        if order is None:
            return False
        if user is None:
            # The link it was made with was revoked or rotated, or has expired.
            if subscription.tracking_version != tracking_version(order):
                return False
            age = timezone.now() - subscription.created_at
            if age > timedelta(seconds=settings.TRACKING_TOKEN_MAX_AGE):
                return False
    return True

"""Tracking links: a signed token that lets an anonymous holder follow one order.

A token is bound to the order, its **current customer** and the order's
``tracking_version``: a Django timestamped signature over ``{"o": order id,
"v": version}`` with a salt that includes the customer id (so the link
verifies only while that customer owns the order, without writing the
customer into the readable payload). It stops working when

- it is older than ``TRACKING_TOKEN_MAX_AGE`` seconds;
- the order changes customer (``Order.save`` bumps the version);
- the customer or staff revoke or rotate the order's links
  (``orders.actions.revoke_tracking_links``, ``POST``/``DELETE
  api/orders/<id>/tracking-link/``).

Checking one costs one query (``order_for_token``). The link is
``/track/#<token>``: the token is in the URL fragment, which browsers never
send, so it appears in no request line and no access log. The tracking page
hands it to the server in a header (``TRACKING_HEADER``) and keeps it in a
cookie per order (``tracking_cookie_name``) that every transport reads.
Who may read what, with or without a token, is decided by
``notifications.streams.authorize``.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core import signing
from django.urls import reverse

from orders.models import Order

TRACKING_SALT = "booktime.tracking"
TRACKING_HEADER = "X-Tracking-Token"
TRACKING_COOKIE_PREFIX = "bt_track_"
# Real tokens are ~60 characters; anything much longer is not one.
MAX_TOKEN_LENGTH = 256


def tracking_signer(customer_id: int) -> signing.TimestampSigner:
    """The signer for links to orders of ``customer_id``."""
    return signing.TimestampSigner(salt=f"{TRACKING_SALT}:{customer_id}")


def make_tracking_token(order: Order) -> str:
    """A signed token letting an anonymous holder follow ``order`` (as it is now)."""
    payload = {"o": order.pk, "v": order.tracking_version}
    return tracking_signer(order.customer_id).sign_object(payload, compress=False)


def _claimed_order(token: str) -> tuple[int, int] | None:
    """(order id, version) the token's payload names; not yet verified."""
    encoded = token.split(":", 1)[0]
    if not encoded or encoded.startswith("."):  # "." marks a compressed payload
        return None
    try:
        payload = json.loads(signing.b64_decode(encoded.encode("ascii")))
    except (ValueError, UnicodeError, TypeError):
        return None
    if not isinstance(payload, dict):
        return None
    order_id, version = payload.get("o"), payload.get("v")
    if type(order_id) is not int or type(version) is not int or order_id < 1:
        return None
    return order_id, version


def order_for_token(token: Any) -> Order | None:
    """The order a tracking token opens, or None (malformed, tampered, expired,
    revoked, or the order changed customer). One query."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    claimed = _claimed_order(token)
    if claimed is None:
        return None
    order_id, version = claimed
    order = Order.objects.filter(pk=order_id).first()
    if order is None or order.tracking_version != version:
        return None
    try:
        tracking_signer(order.customer_id).unsign_object(
            token, max_age=settings.TRACKING_TOKEN_MAX_AGE
        )
    except signing.BadSignature:  # includes SignatureExpired
        return None
    return order


def order_id_from_token(token: Any) -> int | None:
    """The id of the order a tracking token opens, or None (see ``order_for_token``)."""
    order = order_for_token(token)
    return order.pk if order is not None else None


def tracking_path(token: str) -> str:
    """The link's path: ``/track/#<token>`` (the token never reaches a server)."""
    return f"{reverse('track')}#{token}"


def tracking_cookie_name(order_id: int) -> str:
    """The cookie in which the tracking page keeps the token for ``order_id``."""
    return f"{TRACKING_COOKIE_PREFIX}{order_id}"

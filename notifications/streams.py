"""Stream names, the channel-layer groups behind them, and who may read them.

One authorization function, ``authorize``, serves every transport (WebSocket,
SSE, long-poll) and the REST event feed:

| stream       | group              | who                                               |
|--------------|--------------------|---------------------------------------------------|
| ``order:<id>`` | ``order.<id>``     | the order's customer, staff, tracking-token holder |
| ``mine``     | ``customer.<uid>`` | the signed-in customer (all their orders)         |
| ``staff``    | ``staff.orders``   | staff only                                        |
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from booktime.errors import ClientError
from notifications import sql
from orders.access import order_id_from_token
from orders.models import Order

STAFF_GROUP = "staff.orders"
_ORDER_STREAM = re.compile(r"order:([1-9][0-9]{0,17})")
_MAX_STREAM_NAME = 64


class StreamError(ClientError):
    """A stream that may not be read (codes from ``booktime.errors.CODES``).

    ``bad_stream`` (malformed or unknown name, HTTP 400; names the ``stream``
    input), ``unauthenticated`` (sign in or bring a tracking token, HTTP
    401), ``forbidden`` (HTTP 403; says nothing about whether the order exists).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, field="stream" if code == "bad_stream" else None)


@dataclass(frozen=True)
class Subscription:
    """A stream a given reader may read: its group and what the log filters on."""

    stream: str
    group: str
    order_id: int | None = None  # only this order's events
    customer_id: int | None = None  # only this customer's orders' events
    # Neither set: every event (the staff stream).


def group_names_for_event(order_id: int, customer_id: int) -> list[str]:
    """Every group an order's event is sent to."""
    return [f"order.{order_id}", f"customer.{customer_id}", STAFF_GROUP]


def parse_stream_name(stream: Any) -> tuple[str, int | None]:
    """Validate a stream name; returns (kind, order id or None).

    Raises ``StreamError("bad_stream")`` for anything but ``order:<id>``,
    ``mine`` or ``staff``.
    """
    if not isinstance(stream, str) or not stream or len(stream) > _MAX_STREAM_NAME:
        raise StreamError("bad_stream", "stream must be 'order:<id>', 'mine' or 'staff'")
    if stream in ("mine", "staff"):
        return stream, None
    match = _ORDER_STREAM.fullmatch(stream)
    if match is None:
        raise StreamError(
            "bad_stream", f"unknown stream {stream[:40]!r}: use 'order:<id>', 'mine' or 'staff'"
        )
    return "order", int(match.group(1))


def group_for(stream: Any, user_id: Any = None) -> str | None:
    """The group ``authorize`` would grant for ``stream``, from its name alone
    (None when that takes the database: a bad name, ``mine`` for an unknown
    user). Lets a consumer join before it authorizes (notifications.resume)."""
    try:
        kind, order_id = parse_stream_name(stream)
    except StreamError:
        return None
    if kind == "staff":
        return STAFF_GROUP
    if kind == "mine":
        return None if user_id is None else f"customer.{user_id}"
    return f"order.{order_id}"


def owns(user_id: Any, order_id: int) -> bool:
    """Whether ``order_id`` is the customer's: one SQL statement (once per
    subscribe; notifications.sql)."""
    statement = _owns_select(sql.vendor())
    return bool(sql.run(statement, [order_id, sql.prep(Order, "customer", user_id)]))


@functools.cache
def _owns_select(vendor: str) -> str:
    return (
        f"SELECT 1 FROM {sql.table(Order)} WHERE {sql.column(Order, 'id')} = %s "
        f"AND {sql.column(Order, 'customer')} = %s"
    )


def authorize(user: Any, stream: Any, tracking_token: str | None = None) -> Subscription:
    """Decide whether ``user`` (or a tracking-token holder) may read ``stream``.

    Synchronous: it may query the database. Async callers wrap it in
    ``notifications.hops.database_hop``. Raises ``StreamError``.
    """
    kind, order_id = parse_stream_name(stream)
    signed_in = bool(user is not None and user.is_authenticated and user.is_active)
    is_staff = signed_in and user.is_staff

    if kind == "staff":
        if is_staff:
            return Subscription(stream="staff", group=STAFF_GROUP)
        if not signed_in:
            raise StreamError("unauthenticated", "sign in as staff to read the staff stream")
        raise StreamError("forbidden", "the staff stream is for staff only")

    if kind == "mine":
        if not signed_in:
            raise StreamError("unauthenticated", "sign in to follow your orders")
        return Subscription(stream="mine", group=f"customer.{user.pk}", customer_id=user.pk)

    assert order_id is not None
    subscription = Subscription(stream=stream, group=f"order.{order_id}", order_id=order_id)
    if is_staff:
        return subscription
    if tracking_token and order_id_from_token(tracking_token) == order_id:
        return subscription
    if signed_in and owns(user.pk, order_id):
        return subscription
    if not signed_in and not tracking_token:
        raise StreamError("unauthenticated", "sign in or use a tracking link to follow this order")
    # Same answer whether the order exists or not: nothing to infer.
    raise StreamError("forbidden", "you may not read this stream")

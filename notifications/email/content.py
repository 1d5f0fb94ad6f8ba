"""What e-mails (and push notifications) say, and which events make them.

The subject is the one line both channels share: a push notification's
title is its e-mail's subject. Bodies come from templates a shop can
override (put a file with the same path in a template directory listed
before the app's): ``notifications/email/customer_<kind>.html`` (or
``.txt``) for one status, else ``notifications/email/customer.html``;
``staff_new_order`` and ``staff_digest`` for staff; ``subject.txt`` for
every subject.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.template.loader import render_to_string, select_template
from django.urls import reverse

from orders.access import make_tracking_token, tracking_path
from orders.models import EventType, Order, OrderEvent
from orders.status import OrderStatus

STATUS_LABELS = dict(OrderStatus.choices)


def customer_kind(event_type: str, data: dict[str, Any]) -> str | None:
    """The customer notification an event makes (a status), or None."""
    if event_type == EventType.CREATED:
        kind = OrderStatus.PLACED.value
    elif event_type == EventType.STATUS_CHANGED:
        kind = data.get("status")
    else:
        return None
    return kind if kind in settings.NOTIFY_CUSTOMER_STATUSES else None


# -- links: every URL in an e-mail or notification is built here --------------------


def absolute(path: str) -> str:
    return settings.SITE_URL + path


def tracking_url(order: Order) -> str:
    """The order's signed tracking link (no sign-in needed); the one place that builds it."""
    return absolute(tracking_path(make_tracking_token(order)))


def order_url(order_id: int) -> str:
    """The signed-in owner's (or staff's) page of the order."""
    return absolute(reverse("order_tracking", args=[order_id]))


def staff_url() -> str:
    return absolute(reverse("staff_dashboard"))


def preferences_url() -> str:
    return absolute(reverse("notification_preferences"))


# -- rendering -----------------------------------------------------------------------


def subject(kind: str, reference: str, count: int = 0) -> str:
    """One line: ``Your order BT-7Q2KX9 has shipped``; a push notification's title too."""
    text = render_to_string(
        "notifications/email/subject.txt",
        {"kind": kind, "reference": reference, "count": count, "shop_name": settings.SHOP_NAME},
    )
    return " ".join(text.split())[:300]


def _render(names: list[str], context: dict[str, Any]) -> str:
    return select_template(names).render(context)


def customer_email(
    kind: str, event: OrderEvent, order: Order, earlier: list[str], unsubscribe: str
) -> tuple[str, str, str]:
    """(subject, text, html) of a customer e-mail about ``event``; ``earlier``: folded kinds."""
    data = event.data
    context = {
        "shop_name": settings.SHOP_NAME,
        "kind": kind,
        "status_label": STATUS_LABELS.get(kind, kind),
        "earlier": [STATUS_LABELS.get(k, k) for k in earlier],
        "order": data,
        "customer_name": order.shipping_name or order.customer.get_username(),
        "lines": list(order.lines.select_related("product")),
        "tracking_url": tracking_url(order),
        "preferences_url": preferences_url(),
        "unsubscribe_url": unsubscribe,
    }
    context["subject"] = subject(kind, data["reference"])
    text = _render(
        [f"notifications/email/customer_{kind}.txt", "notifications/email/customer.txt"], context
    )
    html = _render(
        [f"notifications/email/customer_{kind}.html", "notifications/email/customer.html"], context
    )
    return context["subject"], text, html


def staff_email(kind: str, events: list[OrderEvent], unsubscribe: str) -> tuple[str, str, str]:
    """(subject, text, html) of a staff new-order e-mail, or of a digest of several."""
    orders = [event.data for event in events]
    reference = orders[-1]["reference"] if orders else ""
    context = {
        "shop_name": settings.SHOP_NAME,
        "orders": orders,
        "dashboard_url": staff_url(),
        "preferences_url": preferences_url(),
        "unsubscribe_url": unsubscribe,
        "subject": subject(kind, reference, len(orders)),
        "minutes": settings.EMAIL_STAFF_DIGEST_MINUTES,
    }
    text = _render([f"notifications/email/staff_{kind}.txt"], context)
    html = _render([f"notifications/email/staff_{kind}.html"], context)
    return context["subject"], text, html

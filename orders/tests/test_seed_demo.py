"""The seed_demo command: demo shop data that goes through the real order actions."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from orders.management.commands.seed_demo import ORDERS, path_to
from orders.models import Order, OrderEvent, Product

pytestmark = pytest.mark.django_db


def seed(settings: Any, *args: str) -> str:
    settings.DEBUG = True
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def test_it_creates_users_products_and_orders_in_the_promised_statuses(settings: Any) -> None:
    output = seed(settings)

    users = get_user_model().objects.in_bulk(["alice", "bob", "staff"], field_name="username")
    assert users["staff"].is_staff and not users["alice"].is_staff
    assert users["alice"].check_password("booktime-demo")
    assert Product.objects.filter(active=True).count() == 6
    for username, orders in ORDERS.items():
        statuses = sorted(
            Order.objects.filter(customer__username=username).values_list("status", flat=True)
        )
        assert statuses == sorted(status for status, _ in orders)
    assert "sign in as 'alice'" in output
    assert "/track/#" in output  # the token in the fragment, never sent to a server


def test_every_demo_order_has_its_full_event_history(settings: Any) -> None:
    seed(settings)

    for order in Order.objects.all():
        history = list(order.events.order_by("id").values_list("data__status", flat=True))
        assert history == ["placed", *path_to(order.status)]
        assert order.total > 0 and order.item_count == sum(
            line.quantity for line in order.lines.all()
        )


def test_running_it_again_adds_nothing(settings: Any) -> None:
    seed(settings)
    counts = (Order.objects.count(), OrderEvent.objects.count(), Product.objects.count())

    seed(settings, "--password", "another-one")

    assert (Order.objects.count(), OrderEvent.objects.count(), Product.objects.count()) == counts
    assert get_user_model().objects.get(username="bob").check_password("another-one")


def test_it_refuses_to_run_with_debug_off(settings: Any) -> None:
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG=1"):
        call_command("seed_demo", stdout=StringIO())
    assert not get_user_model().objects.filter(username="alice").exists()


def test_force_runs_it_with_debug_off(settings: Any) -> None:
    settings.DEBUG = False
    call_command("seed_demo", "--force", stdout=StringIO())
    assert Order.objects.filter(customer__username="alice").count() == len(ORDERS["alice"])


def test_demo_paths_follow_the_transition_table() -> None:
    assert path_to("placed") == []
    assert path_to("shipped") == ["paid", "packed", "shipped"]
    assert path_to("cancelled") == ["cancelled"]
    assert path_to("returned") == ["paid", "packed", "shipped", "delivered", "returned"]

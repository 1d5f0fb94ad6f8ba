"""The admin change form: status changes are validated (form error, not a 500) and logged."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from orders.models import OrderEvent
from tests.support.forms import form_values

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_user(db: None) -> Any:
    return get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")


@pytest.fixture
def admin_client(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def change_form(client: Client, order: Any) -> tuple[str, dict[str, str]]:
    url = f"/admin/orders/order/{order.pk}/change/"
    response = client.get(url)
    assert response.status_code == 200
    return url, form_values(response.content.decode())


def test_an_illegal_status_change_is_a_form_error(
    admin_client: Client, alice: Any, make_order: Any
) -> None:
    order = make_order(alice, "placed")
    url, data = change_form(admin_client, order)
    response = admin_client.post(url, {**data, "status": "delivered"})
    assert response.status_code == 200  # the form again, not a 500 or a redirect
    errors = response.context["adminform"].form.errors
    assert "cannot become 'delivered'" in errors["status"][0]
    order.refresh_from_db()
    assert order.status == "placed"
    assert OrderEvent.objects.filter(order=order).count() == 1


def test_a_legal_status_change_is_logged_with_the_admin_as_actor(
    admin_client: Client, admin_user: Any, alice: Any, make_order: Any
) -> None:
    order = make_order(alice, "paid")
    url, data = change_form(admin_client, order)
    response = admin_client.post(url, {**data, "status": "packed"})
    assert response.status_code == 302, response.content[:2000]
    order.refresh_from_db()
    assert order.status == "packed"
    event = OrderEvent.objects.filter(order=order).latest("id")
    assert (event.type, event.actor, event.data["previous_status"]) == (
        "order.status_changed",
        admin_user,
        "paid",
    )


def test_the_change_form_shows_lines_and_events_read_only(
    admin_client: Client, alice: Any, make_order: Any
) -> None:
    order = make_order(alice, "shipped")
    response = admin_client.get(f"/admin/orders/order/{order.pk}/change/")
    page = response.content.decode()
    assert "Dune" in page
    assert "packed → shipped" in page
    url, data = change_form(admin_client, order)
    assert not any(name.startswith("events-0-type") for name in data)  # not editable
    assert admin_client.get(f"/admin/orders/order/{order.pk}/delete/").status_code == 403


def test_products_and_tokens_are_in_the_admin(admin_client: Client, products: list[Any]) -> None:
    assert "Dune" in admin_client.get("/admin/orders/product/").content.decode()
    assert admin_client.get("/admin/authtoken/tokenproxy/").status_code == 200

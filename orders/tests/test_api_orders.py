"""Order list (filters, pagination), detail (lines, events, tracking token) and products."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from orders.access import order_id_from_token
from orders.models import Order
from tests.support.api import assert_error

pytestmark = pytest.mark.django_db


def test_order_detail_has_lines_events_allowed_next_and_a_tracking_token(
    api_as: Any, alice: Any, make_order: Any
) -> None:
    order = make_order(alice, "paid", quantity=3)
    data = api_as("alice").get(f"/api/orders/{order.pk}/").json()
    assert data["reference"] == order.reference
    assert data["status"] == "paid"
    assert data["allowed_next"] == ["packed", "cancelled"]
    assert [(line["sku"], line["quantity"], line["line_total"]) for line in data["lines"]] == [
        ("BK-001", 3, "37.50")
    ]
    assert [(e["type"], e["order"]["status"]) for e in data["events"]] == [
        ("order.created", "placed"),
        ("order.status_changed", "paid"),
    ]
    assert order_id_from_token(data["tracking_token"]) == order.pk


def test_order_list_is_newest_first_and_paginated(api_as: Any, alice: Any, make_order: Any) -> None:
    made = [make_order(alice).pk for _ in range(5)]
    client = api_as("alice")
    first = client.get("/api/orders/?page_size=2").json()
    assert first["count"] == 5
    assert [o["id"] for o in first["results"]] == made[::-1][:2]
    assert first["previous"] is None and first["next"].endswith("page=2&page_size=2")
    last = client.get("/api/orders/?page_size=2&page=3").json()
    assert [o["id"] for o in last["results"]] == [made[0]]
    assert last["next"] is None
    assert_error(client.get("/api/orders/?page_size=2&page=4"), 404, "not_found")


def test_order_list_filters_by_status_and_creation_time(
    api_as: Any, alice: Any, make_order: Any
) -> None:
    old = make_order(alice, "shipped")
    Order.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    new_paid = make_order(alice, "paid")
    new_placed = make_order(alice)
    client = api_as("alice")

    def ids(query: str) -> list[int]:
        response = client.get(f"/api/orders/?{query}")
        assert response.status_code == 200, response.content
        return [o["id"] for o in response.json()["results"]]

    week_ago = (timezone.now() - timedelta(days=7)).isoformat().replace("+00:00", "Z")
    assert ids("status=paid") == [new_paid.pk]
    assert ids(f"created_after={week_ago}") == [new_placed.pk, new_paid.pk]
    assert ids(f"created_before={week_ago}") == [old.pk]
    assert ids(f"created_after={week_ago}&status=shipped") == []


def test_unknown_api_paths_and_non_numeric_ids_are_json_404s(api_as: Any, alice: Any) -> None:
    client = api_as("alice")
    for path in ["/api/orders/abc/", "/api/orders/1234567890123456789/", "/api/nothing/"]:
        assert_error(client.get(path), 404, "not_found")


def test_products_list_active_products_with_prices(api_as: Any, products: list[Any]) -> None:
    data = api_as("alice").get("/api/products/").json()
    assert data == [
        {"id": products[0].pk, "sku": "BK-001", "name": "Dune", "price": "12.50", "active": True},
        {"id": products[1].pk, "sku": "BK-002", "name": "Emma", "price": "7.99", "active": True},
    ]


def test_a_method_the_endpoint_lacks_is_405_in_the_error_shape(
    api_as: Any, alice: Any, make_order: Any
) -> None:
    order = make_order(alice)
    assert_error(api_as("staff").delete(f"/api/orders/{order.pk}/"), 405, "method_not_allowed")
    assert_error(api_as("staff").get(f"/api/orders/{order.pk}/transition/"), 405)

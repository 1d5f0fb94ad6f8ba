"""Bad input is refused with 400 (or 409 for an illegal transition), naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from orders.models import Order, OrderEvent
from tests.support.api import assert_error

pytestmark = pytest.mark.django_db


def place(api_as: Any, body: Any) -> Any:
    return api_as("alice").post("/api/orders/", body, format="json")


@pytest.mark.parametrize(
    "lines,field",
    [
        ([], "lines"),
        ("not a list", "lines"),
        ([{"product": 1}], "lines[0].quantity"),
        ([{"quantity": 1}], "lines[0].product"),
        ([{"product": "x", "quantity": 1}], "lines[0].product"),
        ([{"product": 10**19, "quantity": 1}], "lines[0].product"),
    ],
)
def test_it_rejects_malformed_lines(
    api_as: Any, products: list[Any], lines: Any, field: str
) -> None:
    error = assert_error(place(api_as, {"lines": lines}), 400)
    assert field in error["fields"], error
    assert not Order.objects.exists()


@pytest.mark.parametrize("quantity", [0, -1, 100, 1000])
def test_it_rejects_quantities_outside_1_to_99(
    api_as: Any, products: list[Any], quantity: int
) -> None:
    body = {"lines": [{"product": products[0].pk, "quantity": 1},
                      {"product": products[1].pk, "quantity": quantity}]}  # fmt: skip
    error = assert_error(place(api_as, body), 400)
    assert list(error["fields"]) == ["lines[1].quantity"]


@pytest.mark.parametrize("quantity", [1, 99])
def test_it_accepts_the_quantity_bounds(api_as: Any, products: list[Any], quantity: int) -> None:
    body = {"lines": [{"product": products[0].pk, "quantity": quantity}]}
    response = place(api_as, body)
    assert response.status_code == 201, response.content
    assert response.json()["items"] == quantity


def test_it_rejects_unknown_and_inactive_products(api_as: Any, products: list[Any]) -> None:
    body = {"lines": [{"product": products[0].pk, "quantity": 1},
                      {"product": products[2].pk, "quantity": 1},  # inactive
                      {"product": 999999, "quantity": 1}]}  # fmt: skip
    error = assert_error(place(api_as, body), 400)
    assert set(error["fields"]) == {"lines[1].product", "lines[2].product"}


def test_it_rejects_a_missing_body_and_bad_json(api_as: Any, products: list[Any]) -> None:
    assert "lines" in assert_error(place(api_as, {}), 400)["fields"]
    response = api_as("alice").post("/api/orders/", "{not json", content_type="application/json")
    assert_error(response, 400, "parse_error")


def test_it_rejects_a_bad_country_code(api_as: Any, products: list[Any]) -> None:
    body = {"lines": [{"product": products[0].pk, "quantity": 1}], "shipping_country": "gb"}
    assert "shipping_country" in assert_error(place(api_as, body), 400)["fields"]


def test_a_placed_order_records_lines_totals_and_one_event(
    api_as: Any, alice: Any, products: list[Any]
) -> None:
    body = {
        "lines": [{"product": products[0].pk, "quantity": 2},
                  {"product": products[1].pk, "quantity": 1}],
        "shipping_name": "Alice", "shipping_city": "London", "shipping_country": "GB",
    }  # fmt: skip
    response = place(api_as, body)
    assert response.status_code == 201, response.content
    data = response.json()
    assert response["Location"] == f"/api/orders/{data['id']}/"
    assert data["status"] == "placed" and data["customer"] == alice.pk
    assert data["total"] == "32.99"  # 2 × 12.50 + 7.99
    assert [(line["sku"], line["quantity"]) for line in data["lines"]] == [
        ("BK-001", 2),
        ("BK-002", 1),
    ]
    assert [e["type"] for e in data["events"]] == ["order.created"]
    assert data["shipping_city"] == "London"
    assert OrderEvent.objects.get().actor == alice


def test_an_illegal_transition_is_409_with_the_allowed_statuses(
    api_as: Any, alice: Any, make_order: Any
) -> None:
    order = make_order(alice, "placed")
    response = api_as("staff").post(
        f"/api/orders/{order.pk}/transition/", {"status": "shipped"}, format="json"
    )
    error = assert_error(response, 409, "invalid_transition")
    assert error["allowed"] == ["paid", "cancelled"]
    assert error["current"] == "placed" and error["requested"] == "shipped"
    assert "cannot become 'shipped'" in error["message"]
    assert OrderEvent.objects.filter(order=order).count() == 1


def test_a_transition_to_the_same_status_is_409(api_as: Any, alice: Any, make_order: Any) -> None:
    order = make_order(alice, "paid")
    response = api_as("staff").post(
        f"/api/orders/{order.pk}/transition/", {"status": "paid"}, format="json"
    )
    assert assert_error(response, 409, "invalid_transition")["allowed"] == ["packed", "cancelled"]


def test_a_final_status_allows_nothing(api_as: Any, alice: Any, make_order: Any) -> None:
    order = make_order(alice, "cancelled")
    response = api_as("staff").post(
        f"/api/orders/{order.pk}/transition/", {"status": "paid"}, format="json"
    )
    assert assert_error(response, 409)["allowed"] == []


def test_an_unknown_status_is_400(api_as: Any, alice: Any, make_order: Any) -> None:
    order = make_order(alice)
    response = api_as("staff").post(
        f"/api/orders/{order.pk}/transition/", {"status": "lost"}, format="json"
    )
    assert "status" in assert_error(response, 400, "invalid")["fields"]


def test_a_transition_records_the_staff_actor_and_note(
    api_as: Any, alice: Any, staff_user: Any, make_order: Any
) -> None:
    order = make_order(alice, "packed")
    response = api_as("staff_token").post(
        f"/api/orders/{order.pk}/transition/",
        {"status": "shipped", "note": "DPD 1234"},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "shipped"
    assert response.json()["allowed_next"] == ["delivered"]
    event = OrderEvent.objects.filter(order=order).latest("id")
    assert (event.type, event.actor, event.note) == ("order.status_changed", staff_user, "DPD 1234")
    assert event.data["previous_status"] == "packed"


@pytest.mark.parametrize(
    "query,field",
    [
        ("status=lost", "status"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2026-13-01", "created_before"),
    ],
)
def test_order_list_filters_are_validated(api_as: Any, alice: Any, query: str, field: str) -> None:
    response = api_as("alice").get(f"/api/orders/?{query}")
    assert field in assert_error(response, 400)["fields"]

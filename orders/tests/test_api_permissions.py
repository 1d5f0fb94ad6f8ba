"""Who may do what, over every endpoint: anonymous, two customers, staff, and tokens."""

from __future__ import annotations

from typing import Any

import pytest

from orders.models import Order, OrderEvent
from tests.support.api import assert_error

pytestmark = pytest.mark.django_db

ALL = ["anonymous", "alice", "bob", "staff", "alice_token", "staff_token"]


@pytest.fixture
def orders(alice: Any, bob: Any, make_order: Any) -> dict[str, Order]:
    return {"alice": make_order(alice, "paid"), "bob": make_order(bob)}


@pytest.mark.parametrize(
    "principal,status",
    [("anonymous", 401), ("alice", 200), ("bob", 200), ("staff", 200),
     ("alice_token", 200), ("staff_token", 200)],
)  # fmt: skip
def test_products_are_for_signed_in_callers(
    api_as: Any, products: list[Any], principal: str, status: int
) -> None:
    response = api_as(principal).get("/api/products/")
    if status == 401:
        assert_error(response, 401, "unauthenticated")
        assert response["WWW-Authenticate"] == "Token"
        return
    assert response.status_code == 200
    assert [p["sku"] for p in response.json()] == ["BK-001", "BK-002"]  # inactive one hidden


@pytest.mark.parametrize(
    "principal,visible",
    [("anonymous", None), ("alice", {"alice"}), ("bob", {"bob"}), ("staff", {"alice", "bob"}),
     ("alice_token", {"alice"}), ("staff_token", {"alice", "bob"})],
)  # fmt: skip
def test_order_list_shows_only_what_the_caller_may_see(
    api_as: Any, orders: dict[str, Order], principal: str, visible: set[str] | None
) -> None:
    response = api_as(principal).get("/api/orders/")
    if visible is None:
        assert_error(response, 401, "unauthenticated")
        return
    assert response.status_code == 200
    ids = {row["id"] for row in response.json()["results"]}
    assert ids == {orders[owner].pk for owner in visible}


@pytest.mark.parametrize(
    "principal,status",
    [("anonymous", 401), ("alice", 200), ("bob", 404), ("staff", 200),
     ("alice_token", 200), ("staff_token", 200)],
)  # fmt: skip
def test_order_detail_is_404_for_other_customers(
    api_as: Any, orders: dict[str, Order], principal: str, status: int
) -> None:
    response = api_as(principal).get(f"/api/orders/{orders['alice'].pk}/")
    if status != 200:
        assert_error(response, status)
        return
    assert response.json()["reference"] == orders["alice"].reference


def test_a_missing_order_and_another_customers_order_look_the_same(
    api_as: Any, orders: dict[str, Order]
) -> None:
    bob = api_as("bob")
    other = bob.get(f"/api/orders/{orders['alice'].pk}/")
    missing = bob.get("/api/orders/999999/")
    assert other.status_code == missing.status_code == 404
    assert other.json() == missing.json()


@pytest.mark.parametrize(
    "principal,status",
    [("anonymous", 401), ("alice", 201), ("bob", 201), ("staff", 201),
     ("alice_token", 403), ("staff_token", 201)],
)  # fmt: skip
def test_placing_an_order_needs_a_session_or_a_staff_token(
    api_as: Any, products: list[Any], principal: str, status: int
) -> None:
    body = {"lines": [{"product": products[0].pk, "quantity": 2}]}
    before = Order.objects.count()
    response = api_as(principal).post("/api/orders/", body, format="json")
    if status != 201:
        assert_error(response, status)
        assert Order.objects.count() == before
        return
    assert response.status_code == 201, response.content
    assert Order.objects.count() == before + 1


@pytest.mark.parametrize(
    "principal,status",
    [("anonymous", 401), ("alice", 403), ("bob", 404), ("staff", 200),
     ("alice_token", 403), ("staff_token", 200)],
)  # fmt: skip
def test_only_staff_may_change_an_orders_status(
    api_as: Any, orders: dict[str, Order], principal: str, status: int
) -> None:
    order = orders["alice"]
    response = api_as(principal).post(
        f"/api/orders/{order.pk}/transition/", {"status": "packed"}, format="json"
    )
    order.refresh_from_db()
    if status != 200:
        assert_error(response, status)
        assert order.status == "paid"
        return
    assert response.status_code == 200, response.content
    assert order.status == "packed"


@pytest.mark.parametrize(
    "principal,visible",
    [("anonymous", None), ("alice", {"alice"}), ("bob", {"bob"}), ("staff", {"alice", "bob"}),
     ("alice_token", {"alice"}), ("staff_token", {"alice", "bob"})],
)  # fmt: skip
def test_event_feed_shows_only_the_callers_orders(
    api_as: Any, orders: dict[str, Order], principal: str, visible: set[str] | None
) -> None:
    response = api_as(principal).get("/api/events/?after=0")
    if visible is None:
        assert_error(response, 401, "unauthenticated")
        return
    assert response.status_code == 200
    seen = [event["id"] for event in response.json()["events"]]
    allowed = OrderEvent.objects.filter(order__in=[orders[o] for o in visible])
    assert seen == list(allowed.order_by("id").values_list("id", flat=True))


@pytest.mark.parametrize(
    "principal,status",
    [("anonymous", 401), ("alice", 200), ("bob", 403), ("staff", 200),
     ("alice_token", 200), ("staff_token", 200)],
)  # fmt: skip
def test_event_feed_for_one_order_follows_the_stream_rule(
    api_as: Any, orders: dict[str, Order], principal: str, status: int
) -> None:
    order = orders["alice"]
    response = api_as(principal).get(f"/api/events/?after=0&order={order.pk}")
    if status != 200:
        assert_error(response, status)
        return
    types = [event["type"] for event in response.json()["events"]]
    assert types == ["order.created", "order.status_changed"]


@pytest.mark.parametrize("principal", ALL)
@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_schema_and_docs_are_public(api_as: Any, principal: str, path: str) -> None:
    response = api_as(principal).get(path)
    assert response.status_code == 200


def test_a_session_post_without_the_csrf_token_is_refused(
    api_as: Any, alice: Any, products: list[Any]
) -> None:
    client = api_as("alice")
    client.credentials()  # drop the X-CSRFToken header the browser would send
    response = client.post(
        "/api/orders/", {"lines": [{"product": products[0].pk, "quantity": 1}]}, format="json"
    )
    error = assert_error(response, 403, "forbidden")
    assert "CSRF" in error["message"]
    assert not Order.objects.exists()


def test_an_inactive_users_token_is_refused(api_as: Any, alice: Any) -> None:
    client = api_as("alice_token")
    alice.is_active = False
    alice.save()
    assert_error(client.get("/api/orders/"), 401, "unauthenticated")

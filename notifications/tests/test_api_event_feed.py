"""api/events/: pages of envelopes in id order after a cursor; reset when it cannot be served."""

from __future__ import annotations

from typing import Any

import pytest

from notifications.log import latest_event_id
from notifications.models import LogHorizon
from orders.models import OrderEvent
from tests.support.api import assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(alice: Any, bob: Any, make_order: Any) -> list[int]:
    """Seven events over three orders; returns every event id in order."""
    make_order(alice, "shipped")  # created, paid, packed, shipped
    make_order(bob, "paid")  # created, paid
    make_order(alice, "placed")  # created
    return list(OrderEvent.objects.order_by("id").values_list("id", flat=True))


def feed(client: Any, query: str = "") -> Any:
    response = client.get(f"/api/events/?{query}")
    assert response.status_code == 200, response.content
    return response.json()


def test_it_pages_through_the_whole_log_following_next(api_as: Any, history: list[int]) -> None:
    client = api_as("staff_token")
    seen: list[int] = []
    cursor = 0
    pages = 0
    while True:
        page = feed(client, f"after={cursor}&limit=3")
        pages += 1
        assert not page["reset"]
        assert len(page["events"]) <= 3
        seen += [event["id"] for event in page["events"]]
        cursor = page["next"]
        if not page["more"]:
            break
    assert seen == history
    assert pages == 3  # 3 + 3 + 1
    assert cursor == history[-1]
    assert feed(client, f"after={cursor}") == {
        "events": [],
        "next": cursor,
        "reset": False,
        "more": False,
    }


def test_events_are_envelopes(api_as: Any, history: list[int]) -> None:
    event = feed(api_as("staff"), "after=0&limit=1")["events"][0]
    stored = OrderEvent.objects.get(pk=event["id"])
    assert event == stored.envelope()
    assert set(event) == {"id", "type", "at", "order"}
    assert event["at"].endswith("Z")


def test_without_a_cursor_it_starts_from_now(api_as: Any, history: list[int]) -> None:
    page = feed(api_as("staff"))
    assert page == {"events": [], "next": history[-1], "reset": False, "more": False}


def test_a_cursor_from_the_future_is_a_reset(api_as: Any, history: list[int]) -> None:
    page = feed(api_as("staff"), f"after={history[-1] + 1000}")
    assert page == {"events": [], "next": history[-1], "reset": True, "more": False}


def test_a_cursor_before_the_pruned_horizon_is_a_reset(api_as: Any, history: list[int]) -> None:
    LogHorizon.objects.create(pk=1, pruned_through=history[3])
    page = feed(api_as("staff"), f"after={history[1]}")
    assert page["reset"] is True and page["events"] == []
    assert page["next"] == latest_event_id()
    # A cursor at or beyond the horizon is still served.
    page = feed(api_as("staff"), f"after={history[3]}")
    assert not page["reset"]
    assert [e["id"] for e in page["events"]] == history[4:]


def test_a_customers_cursor_skips_other_customers_events(
    api_as: Any, alice: Any, history: list[int]
) -> None:
    page = feed(api_as("bob"), "after=0")
    ids = [e["id"] for e in page["events"]]
    assert ids == list(
        OrderEvent.objects.filter(order__customer__username="bob").values_list("id", flat=True)
    )
    # Having seen all of his, bob's cursor moves to the newest event overall.
    assert page["next"] == history[-1]


def test_it_filters_by_order_and_type(api_as: Any, alice: Any, history: list[int]) -> None:
    order = alice.orders.order_by("id").first()
    page = feed(api_as("alice"), f"after=0&order={order.pk}&type=order.status_changed")
    assert [e["order"]["status"] for e in page["events"]] == ["paid", "packed", "shipped"]
    assert {e["order"]["id"] for e in page["events"]} == {order.pk}
    created = feed(api_as("staff"), "after=0&type=order.created")
    assert [e["type"] for e in created["events"]] == ["order.created"] * 3


def test_an_order_filter_for_a_missing_order_is_forbidden_to_customers(
    api_as: Any, history: list[int]
) -> None:
    assert_error(api_as("alice").get("/api/events/?after=0&order=999999"), 403, "forbidden")
    assert feed(api_as("staff"), "after=0&order=999999")["events"] == []


@pytest.mark.parametrize(
    "query,param,code",
    [
        # A bad cursor is ``bad_cursor`` here as on the streams (booktime.errors).
        ("after=-1", "after", "bad_cursor"),
        ("after=abc", "after", "bad_cursor"),
        ("after=1.5", "after", "bad_cursor"),
        ("after=%EF%BC%91", "after", "bad_cursor"),  # a full-width digit one
        ("after=99999999999999999999", "after", "bad_cursor"),
        ("limit=0", "limit", "invalid"),
        ("limit=501", "limit", "invalid"),
        ("limit=ten", "limit", "invalid"),
        ("after=0&order=0", "order", "invalid"),
        ("after=0&order=x", "order", "invalid"),
        ("after=0&type=order.deleted", "type", "invalid"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    api_as: Any, history: list[int], query: str, param: str, code: str
) -> None:
    error = assert_error(api_as("staff").get(f"/api/events/?{query}"), 400, code)
    assert param in error["fields"], error


@pytest.mark.parametrize("limit", [1, 500])
def test_limit_bounds_are_accepted(api_as: Any, history: list[int], limit: int) -> None:
    page = feed(api_as("staff"), f"after=0&limit={limit}")
    assert len(page["events"]) == min(limit, len(history))
    assert page["more"] is (limit < len(history))


def test_the_default_limit_is_100(api_as: Any, alice: Any, make_order: Any) -> None:
    for _ in range(26):
        make_order(alice, "shipped")  # four events each
    assert OrderEvent.objects.count() == 104
    page = feed(api_as("staff"), "after=0")
    assert len(page["events"]) == 100 and page["more"] is True
    assert page["next"] == page["events"][-1]["id"]

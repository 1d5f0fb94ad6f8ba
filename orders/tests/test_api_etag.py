"""Cheap polling: order detail and feed pages carry an ETag; If-None-Match gets a 304."""

from __future__ import annotations

from typing import Any

import pytest

from orders.actions import transition_order

pytestmark = pytest.mark.django_db


def test_order_detail_answers_304_until_the_order_changes(
    api_as: Any, alice: Any, make_order: Any
) -> None:
    order = make_order(alice, "paid")
    client = api_as("alice_token")
    url = f"/api/orders/{order.pk}/"
    first = client.get(url)
    etag = first["ETag"]
    assert etag.startswith('W/"')

    unchanged = client.get(url, HTTP_IF_NONE_MATCH=etag)
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged["ETag"] == etag

    transition_order(order, "packed")
    changed = client.get(url, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200
    assert changed.json()["status"] == "packed"
    assert changed["ETag"] != etag


def test_if_none_match_lists_and_strong_forms_are_understood(
    api_as: Any, alice: Any, make_order: Any
) -> None:
    order = make_order(alice)
    client = api_as("alice")
    url = f"/api/orders/{order.pk}/"
    etag = client.get(url)["ETag"]
    strong = etag.removeprefix("W/")
    assert client.get(url, HTTP_IF_NONE_MATCH=f'"other", {strong}').status_code == 304
    assert client.get(url, HTTP_IF_NONE_MATCH="*").status_code == 304
    assert client.get(url, HTTP_IF_NONE_MATCH='"other"').status_code == 200


def test_feed_page_answers_304_until_a_new_event_arrives(
    api_as: Any, alice: Any, make_order: Any
) -> None:
    order = make_order(alice)
    client = api_as("staff_token")
    first = client.get("/api/events/?after=0")
    assert first.status_code == 200
    etag = first["ETag"]
    again = client.get("/api/events/?after=0", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b""

    transition_order(order, "paid")
    fresh = client.get("/api/events/?after=0", HTTP_IF_NONE_MATCH=etag)
    assert fresh.status_code == 200
    assert [e["type"] for e in fresh.json()["events"]] == ["order.created", "order.status_changed"]


def test_the_etag_depends_on_what_the_caller_may_see(
    api_as: Any, alice: Any, bob: Any, make_order: Any
) -> None:
    make_order(alice)
    make_order(bob)
    alice_etag = api_as("alice").get("/api/events/?after=0")["ETag"]
    staff_etag = api_as("staff").get("/api/events/?after=0")["ETag"]
    assert alice_etag != staff_etag

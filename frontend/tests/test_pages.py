"""Server-rendered pages: who sees what, and the state each page embeds."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from orders.access import make_tracking_token
from orders.actions import transition_order

pytestmark = pytest.mark.django_db


def client_for(user: Any | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def embedded(response: Any, element_id: str) -> Any:
    """The JSON a page embeds with ``json_script``."""
    match = re.search(
        rf'<script id="{element_id}" type="application/json">(.*?)</script>',
        response.content.decode(),
        re.S,
    )
    assert match, f"no #{element_id} in page"
    return json.loads(match.group(1))


def test_home_sends_each_kind_of_visitor_to_their_page(alice: Any, staff_user: Any) -> None:
    assert client_for(None).get("/").url == "/login/"
    assert client_for(alice).get("/").url == "/orders/"
    assert client_for(staff_user).get("/").url == "/staff/"


def test_login_page_signs_in_and_logout_signs_out(alice: Any) -> None:
    client = Client()
    assert client.get("/login/").status_code == 200
    response = client.post(
        "/login/", {"username": "alice", "password": "correct-horse-battery-staple"}
    )
    assert response.status_code == 302
    assert client.get("/orders/").status_code == 200
    assert client.get("/logout/").status_code == 200  # a confirmation page
    assert client.post("/logout/").url == "/logged-out/"
    assert client.get("/orders/").status_code == 302


def test_my_orders_needs_sign_in(db: None) -> None:
    assert client_for(None).get("/orders/").url.startswith("/login/?next=")


def test_my_orders_lists_only_the_customers_own_orders(
    alice: Any, bob: Any, make_order: Any
) -> None:
    mine = make_order(alice)
    theirs = make_order(bob)
    response = client_for(alice).get("/orders/")
    assert mine.reference in response.content.decode()
    assert theirs.reference not in response.content.decode()
    live = embedded(response, "bt-live")
    assert live["stream"] == "mine"
    assert live["after"] >= mine.events.last().id


def test_tracking_page_embeds_the_last_event_id_and_highlights_the_current_step(
    alice: Any, make_order: Any
) -> None:
    order = make_order(alice, "packed")
    response = client_for(alice).get(f"/orders/{order.pk}/")
    assert response.status_code == 200
    live = embedded(response, "bt-live")
    assert live == {"stream": f"order:{order.pk}", "after": order.events.last().id, "token": None}
    html = response.content.decode()
    assert 'class="step current" data-step="packed"' in html
    assert 'class="step done" data-step="paid"' in html
    assert 'class="step todo" data-step="shipped"' in html
    assert html.count("data-event-id=") == 3  # created, paid, packed


def test_a_cancelled_order_shows_the_cancelled_step(alice: Any, make_order: Any) -> None:
    order = make_order(alice, "paid")
    transition_order(order, "cancelled")
    html = client_for(alice).get(f"/orders/{order.pk}/").content.decode()
    assert 'class="step current" data-step="cancelled"' in html
    assert 'class="step skipped" data-step="shipped"' in html


def test_it_hides_another_customers_order(alice: Any, bob: Any, make_order: Any) -> None:
    order = make_order(alice)
    response = client_for(bob).get(f"/orders/{order.pk}/")
    assert response.status_code == 404
    assert order.reference not in response.content.decode()
    # The JSON state used after a reset is guarded the same way.
    assert client_for(bob).get(f"/orders/{order.pk}/?format=json").status_code == 404


def test_a_missing_order_looks_like_a_forbidden_one(bob: Any) -> None:
    assert client_for(bob).get("/orders/999999/").status_code == 404


def test_staff_may_open_any_order(alice: Any, staff_user: Any, make_order: Any) -> None:
    order = make_order(alice)
    assert client_for(staff_user).get(f"/orders/{order.pk}/").status_code == 200


def test_tracking_link_works_without_sign_in(alice: Any, make_order: Any) -> None:
    order = make_order(alice, "shipped")
    token = make_tracking_token(order)
    client = client_for(None)
    # /track/#<token>: the page's script reads the fragment, which no request carries.
    assert client.get("/track/").status_code == 200
    exchange = client.post("/track/", HTTP_X_TRACKING_TOKEN=token)
    assert exchange.status_code == 200
    assert exchange.json() == {"url": f"/track/{order.pk}/"}
    cookie = exchange.cookies[f"bt_track_{order.pk}"]
    assert cookie.value == token and cookie["httponly"] and cookie["samesite"] == "Strict"
    response = client.get(f"/track/{order.pk}/")
    assert response.status_code == 200
    assert order.reference in response.content.decode()
    assert embedded(response, "bt-live")["token"] is None  # the transports use the cookie
    assert client.get(f"/track/{order.pk}/?format=json").json()["order"]["id"] == order.pk


def test_a_tampered_tracking_link_is_refused(alice: Any, make_order: Any) -> None:
    order = make_order(alice)
    token = make_tracking_token(order)
    client = client_for(None)
    for bad in (f"{token[:-2]}xx", "nonsense", ""):
        answer = client.post("/track/", HTTP_X_TRACKING_TOKEN=bad)
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"
    assert client.get(f"/track/{order.pk}/").status_code == 404
    assert client.get(f"/track/{order.pk}/", HTTP_X_TRACKING_TOKEN=token).status_code == 200


def test_staff_dashboard_is_for_staff_only(alice: Any, staff_user: Any, make_order: Any) -> None:
    make_order(alice, "paid")
    assert client_for(None).get("/staff/").url.startswith("/login/")
    assert client_for(alice).get("/staff/").status_code == 403
    response = client_for(staff_user).get("/staff/")
    assert response.status_code == 200
    state = embedded(response, "bt-state")
    assert state["counts"]["paid"] == 1
    assert state["counts"]["placed"] == 0
    assert state["orders"][0]["next"] == ["packed", "cancelled"]


def test_state_json_matches_the_page(alice: Any, make_order: Any) -> None:
    order = make_order(alice, "paid")
    state = client_for(alice).get(f"/orders/{order.pk}/?format=json").json()
    assert state["order"]["status"] == "paid"
    assert [e["type"] for e in state["events"]] == ["order.created", "order.status_changed"]
    assert state["cursor"] == state["events"][-1]["id"]


def test_static_client_is_served(db: None) -> None:
    response = client_for(None).get("/static/frontend/booktime-live.js")
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"BooktimeLive" in body

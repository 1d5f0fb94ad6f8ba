"""Web Push server side: a real ``manage.py deliver`` -> a local push service process.

The service checks the VAPID JWT (signature with the application server
key, ``aud``, ``exp``, ``sub``) and decrypts each payload (RFC 8291) with
keys generated here as a browser would; the tests check what arrives, that
a 404/410 answer deletes the subscription, and that a subscription made
through a tracking link does not outlive the order's link.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from notifications.email.content import order_url, staff_url
from notifications.push.models import PushMessage, PushState, PushSubscription
from orders.access import make_tracking_token
from orders.actions import transition_order
from tests.support.live import wait_until

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def subscribe(client: APIClient, stream: str, subscription: dict, token: str | None = None) -> Any:
    body = {"stream": stream, "subscription": subscription}
    if token:
        body["token"] = token
    return client.post("/api/push/subscriptions/", body, format="json")


def payloads(service: Any, name: str) -> list[dict[str, Any]]:
    return [json.loads(r["payload"]) for r in service.requests(name) if not r["error"]]


def test_payloads_arrive_signed_encrypted_and_say_what_the_email_says(
    outbound_settings: Any,
    push_service: Any,
    start_deliver_worker: Any,
    make_order: Any,
    alice: Any,
    staff_user: Any,
) -> None:
    customer, staff = APIClient(), APIClient()
    customer.force_login(alice)
    staff.force_login(staff_user)
    assert subscribe(customer, "mine", push_service.subscribe("alice")).status_code == 201
    assert subscribe(staff, "staff", push_service.subscribe("staff")).status_code == 201
    start_deliver_worker()

    order = make_order(alice, "placed")
    for status in ("paid", "packed", "shipped"):
        transition_order(order, status)
    got = wait_until(
        lambda: len(p := payloads(push_service, "alice")) >= 2 and p, 20, "alice's two pushes"
    )
    assert [p["title"] for p in got] == [
        f"Thank you for your order {order.reference}",
        f"Your order {order.reference} has shipped",
    ]
    assert got[1]["url"] == order_url(order.pk) and got[1]["tag"] == f"order-{order.pk}"
    staff_got = wait_until(lambda: payloads(push_service, "staff"), 20, "the staff push")
    assert staff_got[0]["title"] == f"New order {order.reference}"
    assert staff_got[0]["url"] == staff_url()

    for request in push_service.requests():
        assert request["error"] == "" and request["status"] == 201
        claims = request["claims"]
        assert claims["aud"] == f"http://127.0.0.1:{push_service.port}"
        assert claims["sub"] == "mailto:ops@bookshop.test"
        headers = {name.lower(): value for name, value in request["headers"].items()}
        assert int(headers["ttl"]) == 24 * 3600 and headers["content-encoding"] == "aes128gcm"
    wait_until(
        lambda: PushMessage.objects.filter(state=PushState.SENT).count() == 3,
        message="rows marked sent",
    )
    assert len(push_service.requests()) == 3  # paid and packed are not notified; nothing twice


def test_gone_subscription_is_deleted_and_others_still_get_theirs(
    outbound_settings: Any,
    push_service: Any,
    start_deliver_worker: Any,
    make_order: Any,
    alice: Any,
    bob: Any,
) -> None:
    client = APIClient()
    client.force_login(alice)
    assert subscribe(client, "mine", push_service.subscribe("gone", status=410)).status_code == 201
    client.force_login(bob)
    assert subscribe(client, "mine", push_service.subscribe("bob")).status_code == 201
    client.force_login(alice)
    missing = push_service.subscribe("missing", status=404)
    assert subscribe(client, "mine", missing).status_code == 201
    start_deliver_worker()
    make_order(alice, "placed")
    bobs = make_order(bob, "placed")

    wait_until(
        lambda: not PushSubscription.objects.filter(user=alice).exists(),
        20,
        "both of alice's dead subscriptions deleted",
    )
    got = wait_until(lambda: payloads(push_service, "bob"), 20, "bob's push")
    assert got[0]["title"] == f"Thank you for your order {bobs.reference}"
    assert {r["status"] for r in push_service.requests("gone")} == {410}
    assert {r["status"] for r in push_service.requests("missing")} == {404}


def test_a_tracking_link_subscription_opens_the_link_and_ends_with_it(
    outbound_settings: Any,
    push_service: Any,
    start_deliver_worker: Any,
    make_order: Any,
    alice: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order = make_order(alice, "packed")
    anonymous = APIClient()
    token = make_tracking_token(order)
    response = subscribe(anonymous, f"order:{order.pk}", push_service.subscribe("viewer"), token)
    assert response.status_code == 201 and response.json()["scope"] == "order"
    start_deliver_worker()
    transition_order(order, "shipped")
    got = wait_until(lambda: payloads(push_service, "viewer"), 20, "the viewer's push")
    assert got[0]["title"] == f"Your order {order.reference} has shipped"
    assert got[0]["url"].startswith(f"{outbound_settings.SITE_URL}/track/")

    # The link is revoked (the order's tracking version moves on, where orders
    # have one; here: the subscription's recorded version no longer matches).
    PushSubscription.objects.filter(target=f"order:{order.pk}").update(tracking_version=-1)
    transition_order(order, "delivered")
    wait_until(
        lambda: not PushSubscription.objects.exists(), 20, "the revoked link's subscription gone"
    )
    assert len(push_service.requests("viewer")) == 1

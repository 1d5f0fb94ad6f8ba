"""Who may read or change e-mail preferences and subscribe a browser to push.

- Preferences: ``/api/notification-preferences/`` has no id; every caller sees
  and changes only their own. Anonymous callers get 401; a customer's
  read-only API token may read but not change (403).
- Push subscriptions follow the live streams' rule: a customer may subscribe
  to their own orders (``mine``, or ``order:<id>`` of their own order), staff
  to ``staff`` and any order, an anonymous viewer to one order with its
  tracking link. Nobody subscribes to another customer's order: the answer
  is the same whether the order exists or not, and nothing is stored.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from notifications.email.models import EmailPreferences
from notifications.push.models import PushSubscription
from orders.access import make_tracking_token
from tests.support.api import session_client
from tests.support.push_service import BrowserKeys

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def push_on(settings: Any) -> None:
    settings.VAPID_PUBLIC_KEY = "BPublicKeyForTheMatrix"
    settings.VAPID_PRIVATE_KEY = "private"
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
    settings.WEBHOOKS_ALLOW_HTTP = False


def browser_subscription() -> dict[str, Any]:
    keys = BrowserKeys.generate()
    auth = base64.urlsafe_b64encode(keys.auth).rstrip(b"=").decode()
    push_id = base64.urlsafe_b64encode(os.urandom(12)).decode()
    # A public address: the SSRF rule refuses private ones outside tests.
    return {
        "endpoint": f"https://93.184.216.34/push/{push_id}",
        "keys": {"p256dh": keys.p256dh, "auth": auth},
    }


def subscribe(client: APIClient, stream: str, token: str | None = None) -> Any:
    body: dict[str, Any] = {"stream": stream, "subscription": browser_subscription()}
    if token is not None:
        body["token"] = token
    return client.post("/api/push/subscriptions/", body, format="json")


# -- preferences ---------------------------------------------------------------------


def test_preferences_are_the_callers_own(alice: Any, bob: Any) -> None:
    EmailPreferences.objects.create(user=bob, muted=["shipped", "delivered"])
    as_alice = session_client(alice)
    assert as_alice.get("/api/notification-preferences/").json() == {
        "email": {"placed": True, "shipped": True, "delivered": True, "cancelled": True}
    }
    changed = as_alice.patch(
        "/api/notification-preferences/", {"email": {"placed": False}}, format="json"
    )
    assert changed.status_code == 200 and changed.json()["email"]["placed"] is False
    # Bob's are untouched, and there is no way to name them.
    assert EmailPreferences.objects.get(user=bob).muted == ["shipped", "delivered"]
    assert as_alice.get(f"/api/notification-preferences/{bob.pk}/").status_code == 404
    assert as_alice.get(f"/api/notification-preferences/?user={bob.pk}").json()["email"]["shipped"]


def test_preferences_need_a_signed_in_caller_and_a_writable_credential(alice: Any) -> None:
    anonymous = APIClient()
    assert anonymous.get("/api/notification-preferences/").status_code == 401
    assert anonymous.patch("/api/notification-preferences/", {}, format="json").status_code == 401
    token = APIClient()
    token.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")
    assert token.get("/api/notification-preferences/").status_code == 200
    body = {"email": {"placed": False}}
    assert token.patch("/api/notification-preferences/", body, format="json").status_code == 403
    no_csrf = APIClient(enforce_csrf_checks=True)
    no_csrf.force_login(alice)
    assert no_csrf.patch("/api/notification-preferences/", body, format="json").status_code == 403


def test_bad_preferences_are_a_400_naming_the_field(alice: Any) -> None:
    client = session_client(alice)
    for body, field in [
        ({"email": {"staff_new_orders": False}}, "email.staff_new_orders"),  # not staff
        ({"email": {"shipped": "no"}}, "email.shipped"),
        ({"email": []}, "email"),
    ]:
        response = client.patch("/api/notification-preferences/", body, format="json")
        assert response.status_code == 400, body
        assert field in response.json()["error"]["fields"], response.json()


# -- push subscriptions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "stream", "expected"),
    [
        ("anonymous", "mine", 401),
        ("anonymous", "staff", 401),
        ("anonymous", "order:{alice_order}", 401),
        ("anonymous", "order:{missing}", 401),
        ("bob", "order:{alice_order}", 403),
        ("bob", "order:{missing}", 403),
        ("bob", "staff", 403),
        ("alice", "order:{alice_order}", 201),
        ("alice", "mine", 201),
        ("staff", "staff", 201),
        ("staff", "order:{alice_order}", 201),
    ],
)
def test_who_may_subscribe_to_what(
    who: str, stream: str, expected: int, alice: Any, bob: Any, staff_user: Any, make_order: Any
) -> None:
    order = make_order(alice)
    users = {"alice": alice, "bob": bob, "staff": staff_user}
    client = APIClient() if who == "anonymous" else session_client(users[who])
    name = stream.format(alice_order=order.pk, missing=order.pk + 1000)
    response = subscribe(client, name)
    assert response.status_code == expected, response.content
    assert PushSubscription.objects.count() == (1 if expected == 201 else 0)
    if expected != 201:
        assert str(order.reference) not in response.content.decode()


def test_a_tracking_link_grants_its_own_order_only(alice: Any, bob: Any, make_order: Any) -> None:
    mine, theirs = make_order(alice), make_order(bob)
    token = make_tracking_token(mine)
    anonymous = APIClient()
    assert subscribe(anonymous, f"order:{theirs.pk}", token).status_code == 403
    assert subscribe(anonymous, "mine", token).status_code == 401
    assert subscribe(anonymous, f"order:{mine.pk}", token + "x").status_code == 403
    ok = subscribe(anonymous, f"order:{mine.pk}", token)
    assert ok.status_code == 201
    subscription = PushSubscription.objects.get()
    assert subscription.user is None and subscription.order_id == mine.pk


def test_an_owner_on_their_order_page_follows_all_their_orders(alice: Any, make_order: Any) -> None:
    order = make_order(alice)
    assert subscribe(session_client(alice), f"order:{order.pk}").json()["scope"] == "mine"
    assert PushSubscription.objects.get().user == alice


def test_bad_subscriptions_are_a_400_naming_the_field(alice: Any) -> None:
    client = session_client(alice)
    good = browser_subscription()
    cases = [
        ({"stream": "mine", "subscription": {**good, "endpoint": "http://10.0.0.1/x"}}, "endpoint"),
        ({"stream": "mine", "subscription": {**good, "endpoint": 5}}, "endpoint"),
        ({"stream": "mine", "subscription": {**good, "keys": {"auth": "x"}}}, "keys.p256dh"),
        (
            {"stream": "mine", "subscription": {**good, "keys": {**good["keys"], "auth": "AAAA"}}},
            "keys.auth",
        ),
        ({"stream": "mine", "subscription": "x"}, "subscription"),
        ({"stream": 7, "subscription": good}, "stream"),
        ({"stream": "everything", "subscription": good}, "stream"),
    ]
    for body, field in cases:
        response = client.post("/api/push/subscriptions/", body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert field in response.json()["error"]["fields"], response.json()
    assert not PushSubscription.objects.exists()


def test_unsubscribing_needs_the_endpoint_itself(alice: Any, bob: Any) -> None:
    client = session_client(alice)
    subscription = browser_subscription()
    client.post(
        "/api/push/subscriptions/", {"stream": "mine", "subscription": subscription}, format="json"
    )
    other = session_client(bob)
    other.delete(
        "/api/push/subscriptions/", {"endpoint": "https://93.184.216.34/push/guess"}, format="json"
    )
    assert PushSubscription.objects.count() == 1
    response = client.delete(
        "/api/push/subscriptions/", {"endpoint": subscription["endpoint"]}, format="json"
    )
    assert response.status_code == 204 and not PushSubscription.objects.exists()

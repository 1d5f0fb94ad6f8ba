"""A tracking link shows the order, not the person — and only while it should.

- **Bound to the order and its current customer.** A link stops working when
  the order changes customer (``Order.save``, the admin included), when the
  customer or staff revoke or rotate the order's links (REST
  ``POST``/``DELETE api/orders/<id>/tracking-link/``: the matrix below), and
  a stale in-memory order saved later does not bring it back.
- **No person in anything a link holder gets.** Through a real daphne, an
  anonymous holder's every byte — the pages, the JSON state, WebSocket, SSE
  and long-poll frames, live events included — carries no username, name,
  e-mail or shipping address of the customer.
- **No token in a URL.** The transports refuse one in the query string; the
  browser test beside the pages (frontend/tests/test_tracking_links.py)
  shows it in no request line and no access log.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from orders.access import make_tracking_token, order_for_token, tracking_cookie_name
from orders.actions import LineRequest, place_order, revoke_tracking_links, transition_order
from orders.models import Order
from tests.support.api import assert_error
from tests.support.asgi import http_get
from tests.support.forms import form_values
from tests.support.live import ws_connect, ws_recv, ws_send

MISSING_ORDER = 987654321

# -- revoke / rotate over REST: who may ------------------------------------------------------

# principal -> (A's order, B's order, a missing order) for POST; DELETE answers 204 for 200.
LINK_MATRIX = {
    "anonymous": (401, 401, 401),
    "alice": (200, 404, 404),
    "bob": (404, 200, 404),
    "staff": (200, 200, 404),
    "alice_token": (403, 403, 403),  # a customer's API token is read-only
    "staff_token": (200, 200, 404),
}


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["post", "delete"])
@pytest.mark.parametrize("principal", LINK_MATRIX)
def test_the_orders_customer_and_staff_may_revoke_or_rotate_its_links(
    api_as: Any, alice: Any, bob: Any, make_order: Any, principal: str, method: str
) -> None:
    a, b = make_order(alice, "paid"), make_order(bob)
    links = {a.pk: make_tracking_token(a), b.pk: make_tracking_token(b)}
    client = api_as(principal)
    statuses, bodies = [], {}
    for order_id in (a.pk, b.pk, MISSING_ORDER):
        answer = getattr(client, method)(f"/api/orders/{order_id}/tracking-link/")
        statuses.append(answer.status_code)
        if answer.status_code >= 400:
            assert_error(answer, answer.status_code)
            text = answer.content.decode()
            for order in (a, b):
                assert order.reference not in text and f"{order.total:.2f}" not in text
            bodies[order_id] = text.replace(str(order_id), "<id>")
    ok = 200 if method == "post" else 204
    assert statuses == [ok if s == 200 else s for s in LINK_MATRIX[principal]]
    if b.pk in bodies and MISSING_ORDER in bodies:
        assert bodies[b.pk] == bodies[MISSING_ORDER]  # another's order looks like none
    for order, status in zip((a, b), statuses, strict=False):
        still_open = order_for_token(links[order.pk]) is not None
        assert still_open == (status != ok), (order, status)


@pytest.mark.django_db
def test_rotating_gives_a_working_link_and_ends_the_old_one(
    api_as: Any, alice: Any, make_order: Any
) -> None:
    order = make_order(alice)
    old = make_tracking_token(order)
    answer = api_as("alice").post(f"/api/orders/{order.pk}/tracking-link/")
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"token", "url"}
    assert body["url"] == f"http://testserver/track/#{body['token']}"
    assert order_for_token(body["token"]) == order
    assert order_for_token(old) is None
    # Revoking shows no link, and ends the rotated one too.
    assert api_as("alice").delete(f"/api/orders/{order.pk}/tracking-link/").status_code == 204
    assert order_for_token(body["token"]) is None


@pytest.mark.django_db
def test_a_session_needs_the_csrf_token_to_revoke(alice: Any, make_order: Any) -> None:
    from rest_framework.test import APIClient

    order = make_order(alice)
    link = make_tracking_token(order)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    answer = client.delete(f"/api/orders/{order.pk}/tracking-link/")
    assert_error(answer, 403, "forbidden")
    assert order_for_token(link) is not None


@pytest.mark.django_db
def test_handing_a_link_to_the_tracking_page_needs_the_csrf_token(
    alice: Any, make_order: Any
) -> None:
    order = make_order(alice)
    token = make_tracking_token(order)
    browser = Client(enforce_csrf_checks=True)
    browser.get("/track/")  # the page sets the csrftoken cookie
    assert browser.post("/track/", HTTP_X_TRACKING_TOKEN=token).status_code == 403
    csrf = browser.cookies["csrftoken"].value
    answer = browser.post("/track/", HTTP_X_TRACKING_TOKEN=token, HTTP_X_CSRFTOKEN=csrf)
    assert answer.status_code == 200


@pytest.mark.django_db
def test_the_order_detail_etag_changes_when_links_are_revoked(
    api_as: Any, alice: Any, make_order: Any
) -> None:
    order = make_order(alice)
    client = api_as("alice")
    first = client.get(f"/api/orders/{order.pk}/")
    assert (
        client.get(f"/api/orders/{order.pk}/", HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304
    )
    revoke_tracking_links(order)
    again = client.get(f"/api/orders/{order.pk}/", HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 200
    assert order_for_token(again.json()["tracking_token"]) is not None


# -- bound to the current customer --------------------------------------------------------------


@pytest.mark.django_db
def test_a_change_of_customer_ends_the_previous_customers_links(
    alice: Any, bob: Any, make_order: Any
) -> None:
    order = make_order(alice, "paid")
    alices_link = make_tracking_token(order)
    order.customer = bob
    order.save()
    assert order_for_token(alices_link) is None
    bobs_link = make_tracking_token(order)
    assert order_for_token(bobs_link) == order
    # Giving it back does not revive the first link either: the version moved on.
    order.customer = alice
    order.save(update_fields=["customer"])
    assert order_for_token(alices_link) is None
    assert order_for_token(bobs_link) is None
    assert order_for_token(make_tracking_token(Order.objects.get(pk=order.pk))) is not None


@pytest.mark.django_db
def test_a_stale_copy_saved_later_does_not_revive_revoked_links(
    alice: Any, make_order: Any
) -> None:
    order = make_order(alice)
    link = make_tracking_token(order)
    stale = Order.objects.get(pk=order.pk)
    revoke_tracking_links(order)
    stale.shipping_city = "Leeds"
    stale.save()
    assert order_for_token(link) is None


@pytest.mark.django_db
def test_giving_an_order_to_another_customer_in_the_admin_ends_the_link(
    alice: Any, bob: Any, staff_user: Any, make_order: Any
) -> None:
    staff_user.is_superuser = True
    staff_user.save()
    order = make_order(alice, "paid")
    link = make_tracking_token(order)
    admin = Client()
    admin.force_login(staff_user)
    url = f"/admin/orders/order/{order.pk}/change/"
    values = form_values(admin.get(url).content.decode())
    assert values["customer"] == str(alice.pk)
    answer = admin.post(url, {**values, "customer": str(bob.pk)})
    assert answer.status_code == 302, answer.content.decode()[:2000]
    assert Order.objects.get(pk=order.pk).customer_id == bob.pk
    assert order_for_token(link) is None


# -- tokens never in a URL ------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("memory_layer")
@pytest.mark.parametrize("path", ["/events/stream/", "/events/poll/"])
async def test_the_http_transports_refuse_a_token_in_the_url(
    alice: Any, make_order: Any, path: str
) -> None:
    order = await sync_to_async(make_order)(alice)
    token = await sync_to_async(make_tracking_token)(order)
    query = urlencode({"stream": f"order:{order.pk}", "token": token, "timeout": "0"})
    answer = await http_get(path, query.encode())
    assert answer.status == 400
    error = answer.json()["error"]
    assert error["code"] == "bad_token" and set(error["fields"]) == {"token"}
    # The header (and the tracking page's cookie) are the way.
    query = urlencode({"stream": f"order:{order.pk}", "timeout": "0"})
    for header in (b"x-tracking-token", b"cookie"):
        value = (
            token if header == b"x-tracking-token" else f"{tracking_cookie_name(order.pk)}={token}"
        )
        answer = await http_get(path, query.encode(), [(header, value.encode())])
        assert answer.status == 200, (header, answer.body[:200])


# -- nothing about the person ----------------------------------------------------------------------

# The customer and their address: none of this may reach a link holder.
PERSON = {
    "username": "zelda-quux-7741",
    "first_name": "Zeldaria",
    "last_name": "Quixotelle",
    "email": "zelda.quux@mail-7741.example",
}
SHIPPING = {
    "shipping_name": "Zeldaria Quixotelle",
    "shipping_address": "42 Quuxington Lane",
    "shipping_city": "Xyzzyville",
    "shipping_postcode": "QQ9 9QZ",
    "shipping_country": "GB",
}
NEW_ADDRESS = "7 Frobozz Crescent"


def personal_values() -> list[str]:
    values = [*PERSON.values(), *SHIPPING.values(), NEW_ADDRESS]
    return [v for v in values if v != "GB"]  # a country code alone is no one's


def assert_no_person(where: str, data: str | bytes) -> None:
    text = (data.decode("utf-8", "replace") if isinstance(data, bytes) else data).lower()
    for value in personal_values():
        for form in (value, value.replace(" ", "+"), value.replace(" ", "%20")):
            assert form.lower() not in text, (where, value)


@pytest.fixture
def zelda(db: None) -> Any:
    from django.contrib.auth import get_user_model

    from tests.support.fixtures import password_hash

    user = get_user_model()(**PERSON)
    user.password = password_hash()
    user.save()
    return user


@pytest.mark.asyncio
@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_a_link_holder_gets_no_byte_about_the_person(
    daphne_server: Any, zelda: Any, products: Any
) -> None:
    def place() -> Order:
        return place_order(zelda, [LineRequest(products[0].pk, 2)], shipping=dict(SHIPPING))

    order = await sync_to_async(place)()
    await sync_to_async(transition_order)(order.pk, "paid")
    token = await sync_to_async(make_tracking_token)(order)
    stream = f"order:{order.pk}"
    seen: list[tuple[str, bytes]] = []

    async with httpx.AsyncClient(base_url=daphne_server.url, timeout=10) as client:
        shell = await client.get("/track/")
        seen.append(("GET /track/", shell.content))
        csrf = client.cookies["csrftoken"]
        exchange = await client.post(
            "/track/", headers={"X-Tracking-Token": token, "X-CSRFToken": csrf}
        )
        assert exchange.status_code == 200, exchange.text
        seen.append(("POST /track/", exchange.content))
        page = await client.get(exchange.json()["url"])
        assert page.status_code == 200 and order.reference in page.text
        assert "2 items" in page.text and f"{order.total}" in page.text
        seen.append(("the page", page.content))
        state = await client.get(exchange.json()["url"], params={"format": "json"})
        assert state.json()["order"]["items"] == 2
        seen.append(("the JSON state", state.content))
        poll = await client.get(
            "/events/poll/", params={"stream": stream, "after": 0, "timeout": 0}
        )
        assert len(poll.json()["events"]) == 2
        seen.append(("long-poll", poll.content))

        async with await ws_connect(daphne_server) as ws:
            await ws_send(ws, {"action": "subscribe", "stream": stream, "after": 0, "token": token})
            frames = [await ws_recv(ws) for _ in range(3)]  # subscribed, two events
            assert [f["type"] for f in frames] == ["subscribed", "event", "event"]
            async with client.stream(
                "GET", "/events/stream/", params={"stream": stream, "after": 0}
            ) as sse:
                assert sse.status_code == 200
                chunks = sse.aiter_bytes()
                received = b""

                async def until(count: int) -> None:
                    nonlocal received
                    while received.count(b"\ndata: {") < count:
                        received += await asyncio.wait_for(chunks.__anext__(), 10)

                await until(2)
                # Live: a status change, and a change of address (order.updated).
                await sync_to_async(transition_order)(order.pk, "packed")

                def move() -> None:
                    fresh = Order.objects.get(pk=order.pk)
                    fresh.shipping_address = NEW_ADDRESS
                    fresh.save()

                await sync_to_async(move)()
                await until(4)
                seen.append(("SSE", received))
            frames += [await ws_recv(ws) for _ in range(2)]
            assert [f["event"]["type"] for f in frames[-2:]] == [
                "order.status_changed",
                "order.updated",
            ]
            seen.append(("WebSocket", json.dumps(frames).encode()))
        poll = await client.get(
            "/events/poll/", params={"stream": stream, "after": 0, "timeout": 0}
        )
        seen.append(("long-poll, later", poll.content))

    assert {name for name, _ in seen} >= {"the page", "SSE", "WebSocket", "long-poll"}
    for where, data in seen:
        assert_no_person(where, data)
    # The checks can fail: the owner's own view has the address.
    owner = Client()
    await sync_to_async(owner.force_login)(zelda)
    html = (await sync_to_async(owner.get)(f"/orders/{order.pk}/")).content.decode()
    assert re.search(re.escape(PERSON["username"]), html)

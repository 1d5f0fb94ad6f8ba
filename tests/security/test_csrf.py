"""CSRF is enforced on every state-changing request a browser (session) can make.

The REST API answers a session POST without a CSRF token with 403 and the
API's JSON error; the sign-in and sign-out forms refuse too. Each refusal has
a positive control (the same request with the token succeeds), so the test
fails if the token check were off.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from tests.support.fixtures import PASSWORD, SHIPPING

pytestmark = pytest.mark.django_db


def browser(user: Any | None = None) -> Client:
    """A client that, like a browser, gets no CSRF exemption."""
    client = Client(enforce_csrf_checks=True, HTTP_HOST="127.0.0.1")
    if user is not None:
        client.force_login(user)
    client.get("/login/" if user is None else "/orders/")  # sets the csrftoken cookie
    return client


def csrf_token(client: Client) -> str:
    return client.cookies["csrftoken"].value


def order_payload(products: list[Any]) -> dict[str, Any]:
    return {"lines": [{"product": products[0].pk, "quantity": 1}], **SHIPPING}


def assert_csrf_refusal(answer: Any) -> None:
    assert answer.status_code == 403
    assert answer["Content-Type"] == "application/json"
    error = answer.json()["error"]
    assert "CSRF" in error["message"]


def test_placing_an_order_with_a_session_needs_the_csrf_token(alice: Any, products: Any) -> None:
    client = browser(alice)
    refused = client.post("/api/orders/", order_payload(products), content_type="application/json")
    assert_csrf_refusal(refused)
    accepted = client.post(
        "/api/orders/",
        order_payload(products),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=csrf_token(client),
    )
    assert accepted.status_code == 201, accepted.content


def test_a_staff_transition_with_a_session_needs_the_csrf_token(
    staff_user: Any, alice: Any, make_order: Any
) -> None:
    order = make_order(alice, "paid")
    client = browser(staff_user)
    url = f"/api/orders/{order.pk}/transition/"
    assert_csrf_refusal(client.post(url, {"status": "packed"}, content_type="application/json"))
    order.refresh_from_db()
    assert order.status == "paid"
    accepted = client.post(
        url,
        {"status": "packed"},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=csrf_token(client),
    )
    assert accepted.status_code == 200, accepted.content


def test_the_sign_in_form_needs_the_csrf_token(alice: Any) -> None:
    client = browser()
    form = {"username": "alice", "password": PASSWORD}
    assert client.post("/login/", form).status_code == 403
    assert "_auth_user_id" not in client.session
    signed_in = client.post("/login/", {**form, "csrfmiddlewaretoken": csrf_token(client)})
    assert signed_in.status_code == 302
    assert client.session["_auth_user_id"] == str(alice.pk)


def test_the_sign_out_form_needs_the_csrf_token(alice: Any) -> None:
    client = browser(alice)
    assert client.post("/logout/").status_code == 403
    assert client.session.get("_auth_user_id") == str(alice.pk)
    assert client.post("/logout/", {"csrfmiddlewaretoken": csrf_token(client)}).status_code == 302
    assert "_auth_user_id" not in client.session


def test_an_api_token_needs_no_csrf_token(staff_user: Any, alice: Any, make_order: Any) -> None:
    """Tokens are not sent by browsers on their own, so CSRF does not apply to them."""
    from rest_framework.authtoken.models import Token

    order = make_order(alice, "paid")
    client = Client(enforce_csrf_checks=True, HTTP_HOST="127.0.0.1")
    answer = client.post(
        f"/api/orders/{order.pk}/transition/",
        {"status": "packed"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff_user).key}",
    )
    assert answer.status_code == 200, answer.content


@pytest.mark.live
@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_on_a_real_server_a_session_post_without_the_token_is_refused(
    daphne_server: Any, alice: Any, products: Any, login_cookies: Any
) -> None:
    cookies = await sync_to_async(login_cookies)(alice)
    async with httpx.AsyncClient(base_url=daphne_server.url, cookies=cookies) as client:
        answer = await client.post("/api/orders/", json=order_payload(products))
    assert answer.status_code == 403
    assert answer.headers["content-type"] == "application/json"
    assert "CSRF" in answer.json()["error"]["message"]

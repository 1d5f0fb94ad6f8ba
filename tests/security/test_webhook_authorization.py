"""Who may manage webhooks: staff only, by session (with CSRF) or staff token.

Every webhook operation is tried as anonymous (401), a customer by session
(403), a customer's read-only API token (403, including create), staff by
session and staff by token (allowed). A refusal carries nothing about the
endpoint: not its URL and never its secret.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from notifications.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.support.api import session_client

pytestmark = pytest.mark.django_db

URL = "https://93.184.216.34/secret-path"
OK, UNAUTH, FORBIDDEN = "ok", 401, 403
MATRIX = {
    "anonymous": UNAUTH,
    "customer_session": FORBIDDEN,
    "customer_token": FORBIDDEN,
    "staff_session": OK,
    "staff_token": OK,
}
# (method, path template, body, success status)
OPERATIONS = [
    ("get", "/api/webhooks/", None, 200),
    ("post", "/api/webhooks/", {"url": "https://93.184.216.35/new"}, 201),
    ("get", "/api/webhooks/{id}/", None, 200),
    ("patch", "/api/webhooks/{id}/", {"description": "changed"}, 200),
    ("put", "/api/webhooks/{id}/", {"url": URL, "description": "put"}, 200),
    ("post", "/api/webhooks/{id}/rotate/", None, 200),
    ("get", "/api/webhooks/{id}/deliveries/", None, 200),
    ("post", "/api/webhooks/{id}/deliveries/{delivery}/resend/", None, 202),
    ("post", "/api/webhooks/{id}/replay/", {"after": 0}, 202),
    ("delete", "/api/webhooks/{id}/", None, 204),
]


def client_for(principal: str, alice: Any, staff: Any) -> APIClient:
    user = staff if principal.startswith("staff") else alice
    if principal.endswith("_session"):
        return session_client(user)
    client = APIClient(enforce_csrf_checks=True)
    if principal.endswith("_token"):
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def endpoint(make_order: Any, alice: Any) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.create(url=URL)
    order = make_order(alice)
    WebhookDelivery.objects.create(
        endpoint=endpoint, event=order.events.first(), event_type="order.created"
    )
    return endpoint


@pytest.mark.parametrize("principal", MATRIX)
@pytest.mark.parametrize(("method", "path", "body", "success"), OPERATIONS)
def test_webhook_matrix(
    principal: str,
    method: str,
    path: str,
    body: Any,
    success: int,
    endpoint: WebhookEndpoint,
    alice: Any,
    staff_user: Any,
) -> None:
    client = client_for(principal, alice, staff_user)
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    url = path.format(id=endpoint.id, delivery=delivery.id)
    response = getattr(client, method)(url, body, format="json")
    expected = MATRIX[principal]
    if expected == OK:
        assert response.status_code == success, response.content
        return
    assert response.status_code == expected, response.content
    text = response.content.decode()
    assert json.loads(text)["error"]["code"] in ("unauthenticated", "forbidden")
    assert URL not in text and endpoint.secret not in text and "secret-path" not in text
    endpoint.refresh_from_db()
    assert endpoint.url == URL and endpoint.description == ""  # nothing changed
    assert WebhookEndpoint.objects.count() == 1


def test_staff_session_without_csrf_token_cannot_create(staff_user: Any) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(staff_user)
    response = client.post("/api/webhooks/", {"url": URL}, format="json")
    assert response.status_code == 403
    assert not WebhookEndpoint.objects.exists()


def test_customer_token_cannot_create_even_a_valid_endpoint(alice: Any) -> None:
    token, _ = Token.objects.get_or_create(user=alice)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.post("/api/webhooks/", {"url": URL}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "Only staff may manage webhooks."
    assert not WebhookEndpoint.objects.exists()

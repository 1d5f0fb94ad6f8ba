"""REST API test helpers, shared by the orders and notifications suites: clients
acting as each principal (fixture ``api_as``), and the one error-shape assertion."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.utils.crypto import get_random_string
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

# Who calls the API, for the permission matrix: (user fixture or None, how).
PRINCIPALS = {
    "anonymous": (None, None),
    "alice": ("alice", "session"),
    "bob": ("bob", "session"),
    "staff": ("staff_user", "session"),
    "alice_token": ("alice", "token"),
    "staff_token": ("staff_user", "token"),
}


def session_client(user: Any) -> APIClient:
    """A browser: signed in by session cookie, sending the CSRF token like the JS client."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    secret = get_random_string(32)
    client.cookies[settings.CSRF_COOKIE_NAME] = secret
    client.credentials(HTTP_X_CSRFTOKEN=secret)
    return client


def token_client(user: Any) -> APIClient:
    """A third party holding an API token (as made by ``create_api_token``)."""
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is ``status`` in the one error shape; returns the ``error`` object."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert set(body) == {"error"}
    error = body["error"]
    assert {"code", "message", "fields"} <= set(error)
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["fields"], dict)
    if code is not None:
        assert error["code"] == code, error
    return error

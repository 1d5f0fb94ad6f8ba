"""Throttling per user and per token: 429 in the error shape, with Retry-After."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings as django_settings

from tests.support.api import assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(settings: Any) -> Any:
    """Set throttle rates for one test (the throttles read them per request)."""

    def set_rates(**rates: str) -> None:
        rest = dict(django_settings.REST_FRAMEWORK)
        rest["DEFAULT_THROTTLE_RATES"] = {**rest["DEFAULT_THROTTLE_RATES"], **rates}
        settings.REST_FRAMEWORK = rest

    return set_rates


def test_a_user_over_their_rate_gets_429_with_retry_after(
    api_as: Any, alice: Any, rates: Any
) -> None:
    rates(user="3/min")
    client = api_as("alice")
    for _ in range(3):
        assert client.get("/api/orders/").status_code == 200
    response = client.get("/api/orders/")
    error = assert_error(response, 429, "throttled")
    assert 0 < int(response["Retry-After"]) <= 60
    assert "throttled" in error["message"].lower()


def test_the_user_budget_is_shared_by_session_and_token(
    api_as: Any, alice: Any, rates: Any
) -> None:
    rates(user="2/min", token="100/min")
    assert api_as("alice").get("/api/orders/").status_code == 200
    assert api_as("alice_token").get("/api/orders/").status_code == 200
    assert_error(api_as("alice").get("/api/orders/"), 429)


def test_a_token_has_its_own_budget_below_its_users(api_as: Any, alice: Any, rates: Any) -> None:
    rates(user="100/min", token="2/min")
    token_client = api_as("alice_token")
    assert token_client.get("/api/products/").status_code == 200
    assert token_client.get("/api/products/").status_code == 200
    assert_error(token_client.get("/api/products/"), 429, "throttled")
    # The same user signed in through the browser is not held back by the token.
    assert api_as("alice").get("/api/products/").status_code == 200


def test_users_do_not_share_a_budget(api_as: Any, alice: Any, bob: Any, rates: Any) -> None:
    rates(user="1/min")
    assert api_as("alice").get("/api/orders/").status_code == 200
    assert api_as("bob").get("/api/orders/").status_code == 200
    assert_error(api_as("alice").get("/api/orders/"), 429)


def test_anonymous_callers_are_throttled_by_address(api_as: Any, rates: Any) -> None:
    rates(anon="2/min")
    client = api_as("anonymous")
    for _ in range(2):
        assert client.get("/api/schema/", HTTP_ACCEPT="application/json").status_code == 200
    assert_error(client.get("/api/schema/", HTTP_ACCEPT="application/json"), 429, "throttled")

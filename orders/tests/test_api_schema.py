"""Property-based run against the published OpenAPI schema (schemathesis).

Every operation is called with generated valid and invalid input, as a staff
token holder (may do everything) and as a customer's read-only token; no
answer may be a 5xx, and every answer must match the status codes, content
types and body schemas the schema declares.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


# Loaded at collection through the real WSGI stack: the schema view needs no
# database (anonymous, no session cookie).
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@pytest.fixture(autouse=True)
def real_requests(db: None, settings: Any) -> Iterator[None]:
    # No rates: this run is about shapes; test_api_throttling is about limits.
    rest = dict(settings.REST_FRAMEWORK)
    rest["DEFAULT_THROTTLE_RATES"] = {"user": None, "token": None, "anon": None}
    settings.REST_FRAMEWORK = rest
    # As Django's test client does: requests through the real WSGI handler
    # must not close the connection holding the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def token_for(user: Any, alice: Any, bob: Any, make_order: Any) -> dict[str, str]:
    """Auth header for ``user``, with a little data for the calls to find."""
    make_order(alice, "paid")
    make_order(bob, "shipped")
    token, _ = Token.objects.get_or_create(user=user)
    return {"Authorization": f"Token {token.key}"}


@pytest.fixture
def staff_token(staff_user: Any, alice: Any, bob: Any, make_order: Any) -> dict[str, str]:
    return token_for(staff_user, alice, bob, make_order)


@pytest.fixture
def customer_token(alice: Any, bob: Any, make_order: Any) -> dict[str, str]:
    return token_for(alice, alice, bob, make_order)


HYPOTHESIS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@schema.parametrize()
@HYPOTHESIS
def test_staff_token_answers_match_the_schema(case: Any, staff_token: dict[str, str]) -> None:
    case.validate_response(case.call(headers=staff_token), checks=CHECKS)


@schema.parametrize()
@HYPOTHESIS
def test_customer_token_answers_match_the_schema(case: Any, customer_token: dict[str, str]) -> None:
    case.validate_response(case.call(headers=customer_token), checks=CHECKS)

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
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.api import assert_error

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


def body_operations() -> list[tuple[str, str]]:
    """(method, path template) of every operation the schema gives a body."""
    return [
        (method.upper(), path)
        for path, operations in schema.raw_schema["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    ]


@pytest.mark.parametrize("content_type", ["", "text/plain"])
def test_a_body_the_api_does_not_parse_is_a_documented_415(
    staff_token: dict[str, str], content_type: str
) -> None:
    """Found by this file's run: a body sent without a Content-Type (or with
    one no parser takes) is 415 ``unsupported_media_type``, which the schema
    did not list; now every operation with a body lists 413 and 415."""
    client = APIClient()
    operations = body_operations()
    assert operations
    for method, path in operations:
        responses = schema.raw_schema["paths"][path][method.lower()]["responses"]
        assert {"413", "415"} <= set(responses), (method, path)
    response = client.generic(
        "PUT",
        "/api/notification-preferences/",
        b"email=on",
        content_type=content_type,
        HTTP_AUTHORIZATION=staff_token["Authorization"],
    )
    assert_error(response, 415, "unsupported_media_type")

"""Failures answer in the one JSON error shape: database down (503), bugs (500), 404s."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import InterfaceError, OperationalError, connection
from django.test import RequestFactory

from booktime.errors import not_found, server_error
from tests.support.api import assert_error

pytestmark = pytest.mark.django_db


def failing_queries(exc: Exception) -> Callable[..., Any]:
    """A real execute wrapper that fails every query the way a lost database does."""

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        raise exc

    return wrapper


@pytest.mark.parametrize(
    "exc",
    [
        OperationalError("server closed the connection unexpectedly"),
        InterfaceError("connection already closed"),
    ],
)
@pytest.mark.parametrize("path", ["/api/orders/", "/api/events/?after=0", "/api/products/"])
def test_a_database_outage_is_503_unavailable_with_retry_after_as_on_the_streams(
    api_as: Any, alice: Any, exc: Exception, path: str
) -> None:
    client = api_as("alice_token")
    with connection.execute_wrapper(failing_queries(exc)):
        response = client.get(path)
    assert_error(response, 503, "unavailable")
    assert response["Retry-After"] == "2"


def test_an_unexpected_error_is_a_json_500_without_a_traceback(
    api_as: Any, alice: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = api_as("alice_token")
    with connection.execute_wrapper(failing_queries(RuntimeError("boom"))):
        response = client.get("/api/orders/")
    error = assert_error(response, 500, "server_error")
    assert "boom" not in response.content.decode()
    assert error["message"] == "Internal server error."
    assert any("boom" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_django_error_handlers_answer_json_for_api_paths_only() -> None:
    factory = RequestFactory()
    assert_error(not_found(factory.get("/api/missing/"), None), 404, "not_found")
    assert_error(server_error(factory.get("/api/orders/")), 500, "server_error")
    assert not_found(factory.get("/missing/"), None)["Content-Type"].startswith("text/html")
    assert server_error(factory.get("/track/"))["Content-Type"].startswith("text/html")

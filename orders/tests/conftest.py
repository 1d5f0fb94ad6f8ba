"""Fixtures for the orders tests; people and data come from booktime.testing.fixtures."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from orders.tests.api_helpers import PRINCIPALS, session_client, token_client


@pytest.fixture
def api_as(request: pytest.FixtureRequest, db: None) -> Callable[[str], APIClient]:
    """Factory: ``api_as("alice_token")`` -> an APIClient acting as that principal."""
    cache.clear()  # throttle history: user and token ids repeat across tests

    def make(principal: str) -> APIClient:
        fixture, how = PRINCIPALS[principal]
        if fixture is None:
            return APIClient(enforce_csrf_checks=True)
        user = request.getfixturevalue(fixture)
        return session_client(user) if how == "session" else token_client(user)

    return make

"""Fixtures for the notification tests: people, an order, and WebSocket
communicators on the project's real ASGI application (helpers in
``tests.support.asgi``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from orders.actions import LineRequest, place_order
from orders.models import Order, Product
from tests.support.asgi import open_socket


@pytest.fixture
def staff(staff_user: User) -> User:
    return staff_user


@pytest.fixture
def product(products: list[Product]) -> Product:
    return products[0]


@pytest.fixture
def alices_order(alice: User, product: Product) -> Order:
    return place_order(alice, [LineRequest(product.pk, 2)])


@pytest_asyncio.fixture
async def socket_factory() -> AsyncIterator[Any]:
    """Factory: ``await socket_factory(headers, path)`` -> an accepted communicator,
    disconnected when the test ends."""
    opened: list[WebsocketCommunicator] = []

    async def factory(
        headers: list[tuple[bytes, bytes]], path: str = "/ws/live/"
    ) -> WebsocketCommunicator:
        communicator = await open_socket(headers, path)
        opened.append(communicator)
        return communicator

    yield factory
    for communicator in opened:
        await communicator.disconnect()

"""Fixtures for the notification tests: people, an order, and a client that
speaks to the project's real ASGI application (routing, session middleware,
origin check) through channels' communicators."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from booktime.testing.asgi import http_scope, session_cookie
from orders.actions import LineRequest, place_order
from orders.models import Order, Product


@pytest.fixture
def staff(staff_user: User) -> User:
    return staff_user


@pytest.fixture
def product(products: list[Product]) -> Product:
    return products[0]


@pytest.fixture
def alices_order(alice: User, product: Product) -> Order:
    return place_order(alice, [LineRequest(product.pk, 2)])


def ws_headers(user: User | None, origin: str = "http://127.0.0.1") -> list[tuple[bytes, bytes]]:
    headers = [(b"host", b"127.0.0.1"), (b"origin", origin.encode())]
    cookie = session_cookie(user)
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return headers


async def open_socket(
    headers: list[tuple[bytes, bytes]], path: str = "/ws/live/"
) -> WebsocketCommunicator:
    from booktime.asgi import application

    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


@pytest_asyncio.fixture
async def socket_factory() -> AsyncIterator[Any]:
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


class HttpStream:
    """A streaming HTTP request to the real ASGI app (HttpCommunicator cannot
    test a response that never completes)."""

    def __init__(
        self, path: str, query: str = "", headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        from channels.testing import ApplicationCommunicator

        from booktime.asgi import application

        self.communicator = ApplicationCommunicator(
            application, http_scope(path, query.encode(), headers)
        )
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.complete = False

    async def start(self, timeout: float = 5) -> HttpStream:
        await self.communicator.send_input({"type": "http.request", "body": b""})
        start = await self.communicator.receive_output(timeout)
        assert start["type"] == "http.response.start", start
        self.status = start["status"]
        self.headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
        return self

    async def chunk(self, timeout: float = 5) -> bytes:
        message = await self.communicator.receive_output(timeout)
        assert message["type"] == "http.response.body", message
        self.complete = not message.get("more_body", False)
        return message.get("body", b"")

    async def body(self, timeout: float = 5) -> bytes:
        data = b""
        while not self.complete:
            data += await self.chunk(timeout)
        return data

    async def json(self, timeout: float = 5) -> Any:
        import json

        return json.loads(await self.body(timeout))

    async def close(self) -> None:
        await self.communicator.send_input({"type": "http.disconnect"})
        await self.communicator.wait(timeout=5)


def http_headers(user: User | None, **extra: str) -> list[tuple[bytes, bytes]]:
    headers = [(b"host", b"127.0.0.1")]
    cookie = session_cookie(user)
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    headers += [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in extra.items()]
    return headers

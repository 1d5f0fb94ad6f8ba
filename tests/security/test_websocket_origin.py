"""The WebSocket origin check, on a real daphne.

Only pages from an allowed host may open ``ws/live/`` (a cross-site page
would otherwise ride on the visitor's session cookie). A refused handshake
gets HTTP 403 before any frame is exchanged.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from websockets.exceptions import InvalidStatus

from tests.support.live import ws_connect, ws_recv, ws_send

pytestmark = [pytest.mark.asyncio, pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "http://127.0.0.1.evil.example",  # an allowed host as a prefix of another
        "http://evil.example/?127.0.0.1",
        "null",  # sandboxed iframes, file:// pages
        None,  # no Origin header at all
    ],
)
async def test_a_handshake_from_another_origin_or_none_is_refused(
    daphne_server: Any, alice: Any, login_cookies: Any, origin: str | None
) -> None:
    cookies = await sync_to_async(login_cookies)(alice)
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(daphne_server, cookies=cookies, origin=origin)
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("origin", ["", "http://localhost", "https://127.0.0.1"])
async def test_a_handshake_from_an_allowed_host_is_accepted(
    daphne_server: Any, alice: Any, login_cookies: Any, origin: str
) -> None:
    cookies = await sync_to_async(login_cookies)(alice)
    async with await ws_connect(daphne_server, cookies=cookies, origin=origin) as ws:
        await ws_send(ws, {"action": "ping"})
        assert (await ws_recv(ws))["type"] == "pong"

"""ws/live/ against real daphne processes on real Redis, with a real WebSocket client."""

from __future__ import annotations

import httpx
import pytest
from asgiref.sync import sync_to_async

from orders.actions import transition_order
from tests.support.live import ws_connect, ws_recv, ws_recv_until, ws_send

pytestmark = [pytest.mark.asyncio, pytest.mark.live, pytest.mark.django_db(transaction=True)]


def is_event(frame: dict) -> bool:
    return frame["type"] == "event"


async def subscribe(ws, stream: str, after: int | None = None) -> None:
    message = {"action": "subscribe", "stream": stream}
    if after is not None:
        message["after"] = after
    await ws_send(ws, message)
    frame, _ = await ws_recv_until(ws, lambda f: f["type"] == "subscribed")
    assert frame["stream"] == stream


async def test_a_change_committed_in_another_process_reaches_the_subscriber(
    daphne_server, alice, make_order, login_cookies
):
    order = await sync_to_async(make_order)(alice)
    cookies = await sync_to_async(login_cookies)(alice)
    async with await ws_connect(daphne_server, cookies=cookies) as ws:
        await subscribe(ws, f"order:{order.pk}")
        # This test process is the "other process": it commits, and its
        # on-commit hook publishes through Redis to the daphne process.
        await sync_to_async(transition_order)(order.pk, "paid")
        frame, _ = await ws_recv_until(ws, is_event)
        assert frame["event"]["order"]["status"] == "paid"


async def test_two_servers_on_one_redis_both_deliver_a_change_made_through_either(
    start_daphne, alice, staff_user, make_order, login_cookies
):
    order = await sync_to_async(make_order)(alice)
    alice_cookies = await sync_to_async(login_cookies)(alice)
    staff_cookies = await sync_to_async(login_cookies)(staff_user)
    server_a = start_daphne("a")
    server_b = start_daphne("b")
    async with (
        await ws_connect(server_a, cookies=alice_cookies) as on_a,
        await ws_connect(server_b, cookies=alice_cookies) as on_b,
        await ws_connect(server_b, cookies=staff_cookies) as staff_on_b,
    ):
        await subscribe(on_a, f"order:{order.pk}")
        await subscribe(on_b, "mine")
        await subscribe(staff_on_b, "staff")
        from rest_framework.authtoken.models import Token

        token = await sync_to_async(Token.objects.create)(user=staff_user)
        for server, status in ((server_a, "paid"), (server_b, "packed")):
            async with httpx.AsyncClient(base_url=server.url) as client:
                answer = await client.post(
                    f"/api/orders/{order.pk}/transition/",
                    json={"status": status},
                    headers={"Authorization": f"Token {token.key}"},
                )
                assert answer.status_code == 200, answer.text
            for ws in (on_a, on_b, staff_on_b):
                frame, _ = await ws_recv_until(ws, is_event)
                assert frame["event"]["order"]["status"] == status


async def test_a_client_that_missed_three_changes_gets_exactly_those_on_resubscribe(
    daphne_server, alice, make_order, login_cookies
):
    order = await sync_to_async(make_order)(alice)
    cookies = await sync_to_async(login_cookies)(alice)
    async with await ws_connect(daphne_server, cookies=cookies) as ws:
        await subscribe(ws, f"order:{order.pk}", after=0)
        created, _ = await ws_recv_until(ws, is_event)
        last_seen = created["event"]["id"]

    for status in ("paid", "packed", "shipped"):  # while disconnected
        await sync_to_async(transition_order)(order.pk, status)

    async with await ws_connect(daphne_server, cookies=cookies) as ws:
        await subscribe(ws, f"order:{order.pk}", after=last_seen)
        frames = [await ws_recv(ws) for _ in range(3)]
        assert [f["event"]["order"]["status"] for f in frames] == ["paid", "packed", "shipped"]
        ids = [f["event"]["id"] for f in frames]
        assert ids == sorted(ids) and ids[0] > last_seen
        await ws_send(ws, {"action": "ping"})
        assert (await ws_recv(ws))["type"] == "pong"  # nothing else was queued


async def test_a_foreign_origin_cannot_open_a_socket(daphne_server, alice, login_cookies):
    cookies = await sync_to_async(login_cookies)(alice)
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus):
        await ws_connect(daphne_server, cookies=cookies, origin="http://evil.example")

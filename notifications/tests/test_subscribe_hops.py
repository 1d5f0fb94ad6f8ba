"""Database thread hops per subscribe (issue 13, round 2; docs/performance.md).

A subscribe with a cursor is joined first, then authorized and backfilled in
ONE database hop (``notifications.hops.database_hop``); an SSE or long-poll
request also resolves its session there (no hop of its own in the
middleware). "From now" takes two
hops (the newest id is read before the join). The resume rule and refusals
hold: nothing is sent before the verdict, a refusal leaves the group.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

import notifications.access as access
import notifications.resume as resume
from notifications.hops import database_hop
from orders.actions import transition_order
from tests.support.asgi import HttpStream, http_headers, ws_headers

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("memory_layer"),
]

TIMEOUT = 5


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the functions the consumers run on the database thread, in order."""
    seen: list[str] = []

    async def counting(function: Any, *args: Any) -> Any:
        seen.append(getattr(function, "__name__", repr(function)))
        return await database_hop(function, *args)

    monkeypatch.setattr(resume, "database_hop", counting)
    monkeypatch.setattr(access, "database_hop", counting)
    return seen


@pytest.fixture
def no_middleware_hop(monkeypatch: pytest.MonkeyPatch) -> None:
    """channels' eager user lookup must not run for the streams (HTTP or WebSocket)."""
    import channels.auth

    async def refuse(scope: Any) -> Any:
        raise AssertionError("the middleware looked the user up")

    monkeypatch.setattr(channels.auth, "get_user", refuse)


async def test_a_websocket_subscribe_with_a_cursor_is_one_hop(
    alice, alices_order, socket_factory, hops, no_middleware_hop
):
    ws = await socket_factory(await sync_to_async(ws_headers)(alice))
    await ws.send_json_to({"action": "subscribe", "stream": f"order:{alices_order.pk}", "after": 0})
    assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "subscribed"
    frame = await ws.receive_json_from(timeout=TIMEOUT)
    assert frame["type"] == "event" and frame["event"]["type"] == "order.created"
    assert hops == ["_authorize_then"]
    await sync_to_async(transition_order)(alices_order.pk, "paid")
    frame = await ws.receive_json_from(timeout=TIMEOUT)
    assert frame["event"]["order"]["status"] == "paid"


async def test_from_now_reads_the_newest_id_before_joining_two_hops(
    alice, alices_order, socket_factory, hops
):
    ws = await socket_factory(await sync_to_async(ws_headers)(alice))
    await ws.send_json_to({"action": "subscribe", "stream": f"order:{alices_order.pk}"})
    assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "subscribed"
    await ws.send_json_to({"action": "ping"})  # handled in order: the backfill is done
    assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "pong"
    assert hops == ["_authorize_then", "read_backlog"]


@pytest.mark.parametrize("path", ["/events/stream/", "/events/poll/"])
async def test_an_http_stream_with_a_cursor_is_one_hop_with_a_lazy_session(
    alice, alices_order, hops, no_middleware_hop, path
):
    headers = await sync_to_async(http_headers)(alice)
    response = await HttpStream(path, f"stream=order:{alices_order.pk}&after=0", headers).start()
    assert response.status == 200
    try:
        data = await response.chunk()  # SSE: the retry hint first; long-poll: the answer
        if not response.complete:
            data += await response.chunk()
        assert b"order.created" in data
        assert hops == ["_authorize_then"]
    finally:
        await response.close()


@pytest.mark.parametrize("path", ["/events/stream/", "/events/poll/"])
async def test_a_stale_session_cookie_on_an_http_stream_reads_as_anonymous(
    alice, alices_order, no_middleware_hop, path
):
    from django.contrib.sessions.models import Session

    headers = await sync_to_async(http_headers)(alice)
    await sync_to_async(Session.objects.all().delete)()
    response = await HttpStream(path, f"stream=order:{alices_order.pk}&after=0", headers).start()
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthenticated"


async def test_a_refused_subscribe_leaves_the_group_and_hears_nothing(
    alice, bob, alices_order, socket_factory
):
    ws = await socket_factory(await sync_to_async(ws_headers)(bob))
    await ws.send_json_to({"action": "subscribe", "stream": f"order:{alices_order.pk}", "after": 0})
    frame = await ws.receive_json_from(timeout=TIMEOUT)
    assert (frame["type"], frame["code"]) == ("error", "forbidden")
    assert not get_channel_layer().groups.get(f"order.{alices_order.pk}")
    await sync_to_async(transition_order)(alices_order.pk, "paid")
    assert await ws.receive_nothing(timeout=0.3)


async def test_a_websocket_with_a_stale_cookie_still_follows_a_tracking_link(
    alice, alices_order, socket_factory, no_middleware_hop
):
    from django.contrib.sessions.models import Session

    from orders.access import make_tracking_token

    token = await sync_to_async(make_tracking_token)(alices_order)
    ws = await socket_factory(await sync_to_async(ws_headers)(alice))
    await sync_to_async(Session.objects.all().delete)()
    stream = f"order:{alices_order.pk}"
    await ws.send_json_to({"action": "subscribe", "stream": stream, "after": 0, "token": token})
    assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "subscribed"
    assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "event"


async def test_a_websocket_whose_session_ended_before_its_first_subscribe_closes_4401(
    alice, alices_order, socket_factory, no_middleware_hop
):
    from django.contrib.sessions.models import Session

    ws = await socket_factory(await sync_to_async(ws_headers)(alice))
    await sync_to_async(Session.objects.all().delete)()
    await ws.send_json_to({"action": "subscribe", "stream": "mine", "after": 0})
    frame = await ws.receive_json_from(timeout=TIMEOUT)
    assert (frame["type"], frame["code"], frame["stream"]) == ("error", "unauthenticated", "mine")
    assert (await ws.receive_output(timeout=TIMEOUT)) == {"type": "websocket.close", "code": 4401}

"""The ws/live/ protocol through the real ASGI app (in-memory layer)."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from orders.access import make_tracking_token
from orders.actions import transition_order
from orders.models import OrderEvent
from tests.support.asgi import ws_headers

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("memory_layer"),
]

TIMEOUT = 5


async def expect(ws: WebsocketCommunicator, frame_type: str) -> dict:
    frame = await ws.receive_json_from(timeout=TIMEOUT)
    assert frame["type"] == frame_type, frame
    return frame


async def test_it_streams_a_status_change_to_the_orders_customer(
    alice, alices_order, socket_factory
):
    ws = await socket_factory(await sync_to_async(ws_headers)(alice))
    await ws.send_json_to({"action": "subscribe", "stream": f"order:{alices_order.pk}"})
    assert (await expect(ws, "subscribed"))["stream"] == f"order:{alices_order.pk}"

    await sync_to_async(transition_order)(alices_order.pk, "paid")

    frame = await expect(ws, "event")
    assert frame["stream"] == f"order:{alices_order.pk}"
    envelope = frame["event"]
    assert envelope["type"] == "order.status_changed"
    assert envelope["order"]["status"] == "paid"
    assert envelope["order"]["previous_status"] == "placed"
    assert envelope["order"]["reference"] == alices_order.reference
    assert set(envelope) == {"id", "type", "at", "order"}
    assert await ws.receive_nothing(timeout=0.2)


async def test_it_backfills_after_the_cursor_then_goes_live_without_duplicates(
    alice, alices_order, socket_factory
):
    first = await sync_to_async(lambda: OrderEvent.objects.get(order=alices_order).id)()
    for status in ("paid", "packed", "shipped"):
        await sync_to_async(transition_order)(alices_order.pk, status)

    ws = await socket_factory(await sync_to_async(ws_headers)(alice))
    await ws.send_json_to(
        {"action": "subscribe", "stream": f"order:{alices_order.pk}", "after": first}
    )
    await expect(ws, "subscribed")
    statuses = [(await expect(ws, "event"))["event"]["order"]["status"] for _ in range(3)]
    assert statuses == ["paid", "packed", "shipped"]

    await sync_to_async(transition_order)(alices_order.pk, "delivered")
    assert (await expect(ws, "event"))["event"]["order"]["status"] == "delivered"
    assert await ws.receive_nothing(timeout=0.2)


async def test_mine_and_staff_streams_carry_the_stream_name(
    alice, staff, alices_order, socket_factory
):
    customer = await socket_factory(await sync_to_async(ws_headers)(alice))
    dashboard = await socket_factory(await sync_to_async(ws_headers)(staff))
    await customer.send_json_to({"action": "subscribe", "stream": "mine"})
    await dashboard.send_json_to({"action": "subscribe", "stream": "staff"})
    await expect(customer, "subscribed")
    await expect(dashboard, "subscribed")

    await sync_to_async(transition_order)(alices_order.pk, "paid")

    assert (await expect(customer, "event"))["stream"] == "mine"
    assert (await expect(dashboard, "event"))["stream"] == "staff"


async def test_a_socket_following_two_streams_gets_each_event_once_per_stream(
    staff, alices_order, socket_factory
):
    ws = await socket_factory(await sync_to_async(ws_headers)(staff))
    for stream in (f"order:{alices_order.pk}", "staff"):
        await ws.send_json_to({"action": "subscribe", "stream": stream})
        await expect(ws, "subscribed")
    await sync_to_async(transition_order)(alices_order.pk, "paid")
    streams = sorted([(await expect(ws, "event"))["stream"] for _ in range(2)])
    assert streams == [f"order:{alices_order.pk}", "staff"]
    assert await ws.receive_nothing(timeout=0.2)


async def test_unsubscribe_stops_the_stream(alice, alices_order, socket_factory):
    ws = await socket_factory(await sync_to_async(ws_headers)(alice))
    stream = f"order:{alices_order.pk}"
    await ws.send_json_to({"action": "subscribe", "stream": stream})
    await expect(ws, "subscribed")
    await ws.send_json_to({"action": "unsubscribe", "stream": stream})
    assert (await expect(ws, "unsubscribed"))["stream"] == stream
    await sync_to_async(transition_order)(alices_order.pk, "paid")
    assert await ws.receive_nothing(timeout=0.3)


async def test_a_cursor_from_the_future_gets_a_reset_not_silence(
    alice, alices_order, socket_factory
):
    ws = await socket_factory(await sync_to_async(ws_headers)(alice))
    await ws.send_json_to(
        {"action": "subscribe", "stream": f"order:{alices_order.pk}", "after": 10**9}
    )
    await expect(ws, "subscribed")
    reset = await expect(ws, "reset")
    newest = await sync_to_async(lambda: OrderEvent.objects.order_by("-id").first().id)()
    assert reset == {"type": "reset", "stream": f"order:{alices_order.pk}", "cursor": newest}


async def test_ping_answers_pong(alice, socket_factory):
    ws = await socket_factory(await sync_to_async(ws_headers)(alice))
    await ws.send_json_to({"action": "ping"})
    await expect(ws, "pong")


async def test_a_tracking_token_opens_one_order_to_an_anonymous_viewer(
    alices_order, socket_factory
):
    token = await sync_to_async(make_tracking_token)(alices_order)
    ws = await socket_factory(await sync_to_async(ws_headers)(None))
    await ws.send_json_to(
        {"action": "subscribe", "stream": f"order:{alices_order.pk}", "token": token}
    )
    await expect(ws, "subscribed")
    await sync_to_async(transition_order)(alices_order.pk, "paid")
    assert (await expect(ws, "event"))["event"]["order"]["status"] == "paid"


async def test_a_tracking_token_in_the_url_is_refused(alices_order, socket_factory):
    """Access logs keep URLs: a token there is an error, and opens nothing."""
    token = await sync_to_async(make_tracking_token)(alices_order)
    ws = await socket_factory(await sync_to_async(ws_headers)(None), f"/ws/live/?token={token}")
    error = await expect(ws, "error")
    assert error["code"] == "bad_token" and "URL" in error["message"]
    await ws.send_json_to({"action": "subscribe", "stream": f"order:{alices_order.pk}"})
    assert (await expect(ws, "error"))["code"] == "unauthenticated"


async def test_the_tracking_pages_cookie_opens_its_order(alices_order, socket_factory):
    token = await sync_to_async(make_tracking_token)(alices_order)
    cookie = f"bt_track_{alices_order.pk}={token}"
    ws = await socket_factory(
        [*await sync_to_async(ws_headers)(None), (b"cookie", cookie.encode())]
    )
    await ws.send_json_to({"action": "subscribe", "stream": f"order:{alices_order.pk}"})
    await expect(ws, "subscribed")


async def test_a_foreign_origin_is_refused_at_the_handshake(alice):
    from booktime.asgi import application

    headers = await sync_to_async(ws_headers)(alice, "http://evil.example")
    ws = WebsocketCommunicator(application, "/ws/live/", headers=headers)
    connected, _ = await ws.connect()
    assert not connected


BAD_FRAMES = [
    ("not json", "bad_json"),
    ("[1, 2]", "bad_json"),
    (json.dumps({"action": "dance"}), "unknown_action"),
    (json.dumps({"no": "action"}), "unknown_action"),
    (json.dumps({"action": "subscribe", "stream": "orders:1"}), "bad_stream"),
    (json.dumps({"action": "subscribe", "stream": "order:abc"}), "bad_stream"),
    (json.dumps({"action": "subscribe", "stream": "order:0"}), "bad_stream"),
    (json.dumps({"action": "subscribe", "stream": 42}), "bad_stream"),
    (json.dumps({"action": "subscribe", "stream": "mine", "after": -1}), "bad_cursor"),
    (json.dumps({"action": "subscribe", "stream": "mine", "after": "12"}), "bad_cursor"),
    (json.dumps({"action": "subscribe", "stream": "mine", "after": 1.5}), "bad_cursor"),
    (json.dumps({"action": "subscribe", "stream": "mine", "after": True}), "bad_cursor"),
    (json.dumps({"action": "subscribe", "stream": "mine", "token": 5}), "bad_token"),
    (json.dumps({"action": "unsubscribe", "stream": "mine"}), "not_subscribed"),
    (json.dumps({"action": "ping", "pad": "x" * 70_000}), "too_large"),
]


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES)
async def test_bad_input_gets_an_error_frame_and_the_socket_stays_usable(
    alice, socket_factory, frame, code
):
    before = await sync_to_async(OrderEvent.objects.count)()
    ws = await socket_factory(await sync_to_async(ws_headers)(alice))
    await ws.send_to(text_data=frame)
    error = await expect(ws, "error")
    assert error["code"] == code
    assert error["message"]
    await ws.send_json_to({"action": "ping"})
    await expect(ws, "pong")
    assert await sync_to_async(OrderEvent.objects.count)() == before


async def test_binary_frames_are_refused(alice, socket_factory):
    ws = await socket_factory(await sync_to_async(ws_headers)(alice))
    await ws.send_to(bytes_data=b"\x00\x01")
    assert (await expect(ws, "error"))["code"] == "bad_frame"


async def test_more_than_fifty_subscriptions_are_refused(staff, product, socket_factory, settings):
    ws = await socket_factory(await sync_to_async(ws_headers)(staff))
    for order_id in range(1, settings.MAX_SUBSCRIPTIONS_PER_SOCKET + 1):
        await ws.send_json_to({"action": "subscribe", "stream": f"order:{order_id}"})
        await expect(ws, "subscribed")
    await ws.send_json_to({"action": "subscribe", "stream": "staff"})
    error = await expect(ws, "error")
    assert error["code"] == "too_many_subscriptions"
    await ws.send_json_to({"action": "ping"})
    await expect(ws, "pong")


async def test_a_change_landing_while_subscribing_without_a_cursor_is_not_lost(
    alice, alices_order, socket_factory, monkeypatch
):
    """ "From now" is the newest event before joining the group, so a change
    committed between the join and the backlog read still reaches the client."""
    import notifications.resume as resume

    real_read_backlog = resume.read_backlog

    def change_lands_first(subscription, after, *args, **kwargs):
        monkeypatch.setattr(resume, "read_backlog", real_read_backlog)
        transition_order(alices_order.pk, "paid")
        return real_read_backlog(subscription, after, *args, **kwargs)

    monkeypatch.setattr(resume, "read_backlog", change_lands_first)
    ws = await socket_factory(await sync_to_async(ws_headers)(alice))
    await ws.send_json_to({"action": "subscribe", "stream": f"order:{alices_order.pk}"})
    await expect(ws, "subscribed")
    assert (await expect(ws, "event"))["event"]["order"]["status"] == "paid"
    assert await ws.receive_nothing(timeout=0.2)

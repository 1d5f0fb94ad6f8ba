"""Server-sent events at events/stream/ through the real ASGI app (in-memory layer)."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from orders.actions import transition_order
from orders.models import OrderEvent
from tests.support.asgi import HttpStream, http_headers
from tests.support.sse import SSEFrame

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("memory_layer"),
]


async def open_stream(user, query: str, **headers: str) -> HttpStream:
    hdrs = await sync_to_async(http_headers)(user, **headers)
    return await HttpStream("/events/stream/", query, hdrs).start()


async def read_events(stream: HttpStream, count: int) -> list[SSEFrame]:
    """The next ``count`` events with data (a lone ``retry:`` hint is none)."""
    events: list[SSEFrame] = []
    while len(events) < count:
        frame = await stream.sse()
        if frame.data:
            events.append(frame)
    return events


async def test_it_sends_stream_headers_and_a_retry_hint_first(alice, alices_order):
    stream = await open_stream(alice, f"stream=order:{alices_order.pk}")
    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.headers["x-accel-buffering"] == "no"
    hint = await stream.sse()
    assert hint.retry is not None and hint.retry > 0 and not hint.data
    await stream.close()


async def test_it_streams_live_events_with_id_event_and_data(alice, alices_order):
    stream = await open_stream(alice, f"stream=order:{alices_order.pk}")
    await sync_to_async(transition_order)(alices_order.pk, "paid")
    [event] = await read_events(stream, 1)
    envelope = event.json()
    assert event.event == "order.status_changed"
    assert event.id is not None and int(event.id) == envelope["id"]
    assert envelope["order"]["status"] == "paid"
    await stream.close()


async def test_it_resumes_after_the_cursor_and_last_event_id_wins(alice, alices_order):
    created = await sync_to_async(lambda: OrderEvent.objects.get(order=alices_order).id)()
    for status in ("paid", "packed", "shipped"):
        await sync_to_async(transition_order)(alices_order.pk, status)
    paid = created + 1
    # ?after=0 would replay everything; the header says "seen up to paid".
    stream = await open_stream(
        alice, f"stream=order:{alices_order.pk}&after=0", last_event_id=str(paid)
    )
    events = await read_events(stream, 2)
    assert [e.json()["order"]["status"] for e in events] == ["packed", "shipped"]
    await sync_to_async(transition_order)(alices_order.pk, "delivered")
    [live] = await read_events(stream, 1)
    assert live.json()["order"]["status"] == "delivered"
    await stream.close()


async def test_a_cursor_it_cannot_serve_gets_a_reset_event(alice, alices_order):
    stream = await open_stream(alice, f"stream=order:{alices_order.pk}&after=999999999")
    [reset] = await read_events(stream, 1)
    assert reset.event == "reset"
    assert reset.id is not None and reset.json()["cursor"] == int(reset.id)
    await stream.close()


async def test_leaving_removes_the_group_membership(alice, alices_order):
    layer = get_channel_layer()
    group = f"order.{alices_order.pk}"
    stream = await open_stream(alice, f"stream=order:{alices_order.pk}")
    await stream.chunk()
    assert len(layer.groups.get(group, {})) == 1
    await stream.close()
    assert len(layer.groups.get(group, {})) == 0


@pytest.mark.parametrize(
    ("query", "headers", "status", "code", "field"),
    [
        ("", {}, 400, "bad_stream", "stream"),
        ("stream=everything", {}, 400, "bad_stream", "stream"),
        ("stream=mine&after=-3", {}, 400, "bad_cursor", "after"),
        ("stream=mine&after=abc", {}, 400, "bad_cursor", "after"),
        ("stream=mine", {"last_event_id": "x1"}, 400, "bad_cursor", "Last-Event-ID"),
        ("stream=staff", {}, 403, "forbidden", None),
    ],
)
async def test_bad_requests_get_a_json_error_naming_the_parameter(
    alice, query, headers, status, code, field
):
    stream = await open_stream(alice, query, **headers)
    assert stream.status == status
    assert stream.headers["content-type"] == "application/json"
    error = (await stream.json())["error"]
    assert error["code"] == code
    if field:
        assert field in error["fields"]


async def test_anonymous_readers_get_401_and_other_customers_403(bob, alices_order):
    anonymous = await open_stream(None, f"stream=order:{alices_order.pk}")
    assert anonymous.status == 401
    assert (await anonymous.json())["error"]["code"] == "unauthenticated"
    other = await open_stream(bob, f"stream=order:{alices_order.pk}")
    assert other.status == 403
    body = await other.json()
    assert alices_order.reference not in json.dumps(body)


async def test_a_rest_api_token_opens_a_stream_and_a_bad_one_is_anonymous(alice, alices_order):
    from rest_framework.authtoken.models import Token

    token = await sync_to_async(Token.objects.create)(user=alice)
    ok = await open_stream(
        None, f"stream=order:{alices_order.pk}", authorization=f"Token {token.key}"
    )
    assert ok.status == 200
    await ok.close()
    refused = await open_stream(None, f"stream=order:{alices_order.pk}", authorization="Token nope")
    assert refused.status == 401


async def test_a_client_holding_too_many_streams_gets_429_until_one_ends(alice, settings):
    """In one process (the in-memory layer) the cap counts locally; across
    processes it is shared in Redis (tests/reliability/test_live_limits.py)."""
    from notifications import slots

    settings.SSE_MAX_PER_CLIENT = 2
    held = [await open_stream(alice, "stream=mine") for _ in range(2)]
    assert [stream.status for stream in held] == [200, 200]
    refused = await open_stream(alice, "stream=mine")
    assert refused.status == 429
    assert refused.headers["content-type"] == "application/json"
    error = (await refused.json())["error"]
    assert error["code"] == "too_many_streams" and "2" in error["message"]
    await refused.close()
    await held[0].close()
    again = await open_stream(alice, "stream=mine")
    assert again.status == 200
    for stream in (again, held[1]):
        await stream.close()
    assert not slots.local["sse"], dict(slots.local["sse"])

"""HTTP long-poll at events/poll/ through the real ASGI app (in-memory layer)."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from orders.actions import transition_order
from orders.models import OrderEvent
from tests.support.asgi import HttpStream, http_headers

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("memory_layer"),
]


async def poll(user, query: str) -> HttpStream:
    headers = await sync_to_async(http_headers)(user)
    return await HttpStream("/events/poll/", query, headers).start()


async def first_event_id(order) -> int:
    return await sync_to_async(
        lambda: OrderEvent.objects.filter(order=order).order_by("id")[0].id
    )()


async def test_it_answers_at_once_when_events_after_the_cursor_exist(alice, alices_order):
    created = await first_event_id(alices_order)
    await sync_to_async(transition_order)(alices_order.pk, "paid")
    response = await poll(alice, f"stream=order:{alices_order.pk}&after={created}")
    body = await response.json()
    assert response.status == 200
    assert [e["order"]["status"] for e in body["events"]] == ["paid"]
    assert body["cursor"] == body["events"][-1]["id"]
    assert body["stream"] == f"order:{alices_order.pk}"


async def test_it_holds_until_the_next_event_then_answers_with_it(alice, alices_order):
    created = await first_event_id(alices_order)
    # start() returns only once headers are sent; the request is parked meanwhile.
    pending = HttpStream(
        "/events/poll/",
        f"stream=order:{alices_order.pk}&after={created}&timeout=10",
        await sync_to_async(http_headers)(alice),
    )
    started = asyncio.ensure_future(pending.start(timeout=10))
    layer = get_channel_layer()
    group = f"order.{alices_order.pk}"
    for _ in range(200):  # wait until the poll has joined its group
        if layer.groups.get(group):
            break
        await asyncio.sleep(0.01)
    assert layer.groups.get(group), "the long-poll never joined its group"
    assert not started.done()
    await sync_to_async(transition_order)(alices_order.pk, "paid")
    await started
    body = await pending.json()
    assert [e["order"]["status"] for e in body["events"]] == ["paid"]
    await pending.communicator.wait(timeout=5)
    assert not layer.groups.get(group)


async def test_timeout_zero_answers_empty_with_the_cursor(alice, alices_order):
    created = await first_event_id(alices_order)
    body = await (
        await poll(alice, f"stream=order:{alices_order.pk}&after={created}&timeout=0")
    ).json()
    assert body["events"] == []
    assert body["cursor"] >= created


async def test_a_short_timeout_answers_empty(alice, alices_order):
    created = await first_event_id(alices_order)
    body = await (
        await poll(alice, f"stream=order:{alices_order.pk}&after={created}&timeout=1")
    ).json()
    assert body == {"stream": f"order:{alices_order.pk}", "events": [], "cursor": created}


async def test_a_poll_loop_sees_every_event_once_in_order(alice, alices_order):
    cursor = await first_event_id(alices_order)
    seen = []
    for status in ("paid", "packed", "shipped", "delivered"):
        await sync_to_async(transition_order)(alices_order.pk, status)
        body = await (await poll(alice, f"stream=mine&after={cursor}&timeout=0")).json()
        seen += [e["order"]["status"] for e in body["events"]]
        cursor = body["cursor"]
    assert seen == ["paid", "packed", "shipped", "delivered"]


async def test_a_future_cursor_gets_reset(alice, alices_order):
    body = await (await poll(alice, f"stream=order:{alices_order.pk}&after=987654321")).json()
    assert body["reset"] is True
    assert body["events"] == []


@pytest.mark.parametrize(
    ("query", "status", "code", "field"),
    [
        ("stream=mine&timeout=61", 400, "bad_timeout", "timeout"),
        ("stream=mine&timeout=-1", 400, "bad_timeout", "timeout"),
        ("stream=mine&timeout=1.5", 400, "bad_timeout", "timeout"),
        ("stream=mine&after=-1", 400, "bad_cursor", "after"),
        ("stream=mine&after=1e3", 400, "bad_cursor", "after"),
        ("stream=nope", 400, "bad_stream", "stream"),
        ("after=1", 400, "bad_stream", "stream"),
        ("stream=staff", 403, "forbidden", None),
    ],
)
async def test_bad_parameters_get_400_naming_the_parameter(alice, query, status, code, field):
    response = await poll(alice, query)
    error = (await response.json())["error"]
    assert response.status == status
    assert error["code"] == code
    if field:
        assert field in error["fields"]


async def test_anonymous_gets_401(alices_order):
    response = await poll(None, f"stream=order:{alices_order.pk}")
    assert response.status == 401


async def test_a_client_holding_too_many_polls_gets_429(alice, alices_order, settings):
    settings.LONGPOLL_MAX_PER_CLIENT = 2
    headers = await sync_to_async(http_headers)(alice)
    parked = []
    for _ in range(2):
        stream = HttpStream("/events/poll/", "stream=mine&timeout=30", headers)
        await stream.communicator.send_input({"type": "http.request", "body": b""})
        parked.append(stream)
    from notifications.longpoll import open_polls

    for _ in range(200):
        if sum(open_polls.values()) == 2:
            break
        await asyncio.sleep(0.01)
    refused = await HttpStream("/events/poll/", "stream=mine&timeout=30", headers).start()
    assert refused.status == 429
    assert (await refused.json())["error"]["code"] == "too_many_polls"
    for stream in parked:
        await stream.close()
    assert sum(open_polls.values()) == 0

"""A group join that fails while a stream opens is retried until the stream is in.

``join_group`` hands a failed ``group_add`` (Redis down, or no connection free
in the layer's pool) to a background re-join (``rejoin_later``). With a
cursor the group is joined before the stream is authorized, so the first
retry can come while nothing is followed yet; it must not give up then, or
the socket never hears a live event (seen after a 1,000-client reconnect
storm on the ``redis`` layer).
"""

from __future__ import annotations

import threading

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

import notifications.resume as resume
from notifications.recovery import RecoveryMixin
from orders.actions import transition_order
from orders.models import OrderEvent
from tests.support.asgi import ws_headers

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("memory_layer"),
]

TIMEOUT = 5


async def test_a_failed_join_retried_before_the_stream_is_authorized_still_joins_it(
    alice, alices_order, socket_factory, monkeypatch
):
    layer = get_channel_layer()
    real_group_add = layer.group_add
    failed: list[str] = []

    async def group_add_failing_once(group: str, channel: str) -> None:
        if not failed:
            failed.append(group)
            raise ConnectionError("Too many connections")
        await real_group_add(group, channel)

    monkeypatch.setattr(layer, "group_add", group_add_failing_once)

    # The stream's authorization (and its first backlog page) waits, on the
    # database thread, until the background re-join has made its first try.
    retried = threading.Event()
    real_rejoin = RecoveryMixin._rejoin

    async def observed_rejoin(self: RecoveryMixin) -> None:
        try:
            await real_rejoin(self)
        finally:
            retried.set()

    monkeypatch.setattr(RecoveryMixin, "_rejoin", observed_rejoin)
    real_read_backlog = resume.read_backlog

    def read_after_the_retry(*args, **kwargs):
        assert retried.wait(TIMEOUT), "the failed join was not retried"
        return real_read_backlog(*args, **kwargs)

    monkeypatch.setattr(resume, "read_backlog", read_after_the_retry)

    created = await sync_to_async(lambda: OrderEvent.objects.get(order=alices_order).id)()
    ws = await socket_factory(await sync_to_async(ws_headers)(alice))
    stream = f"order:{alices_order.pk}"
    await ws.send_json_to({"action": "subscribe", "stream": stream, "after": created})
    assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "subscribed"
    assert failed == [f"order.{alices_order.pk}"]

    await sync_to_async(transition_order)(alices_order.pk, "paid")
    frame = await ws.receive_json_from(timeout=TIMEOUT)
    assert frame["type"] == "event", frame
    assert frame["event"]["order"]["status"] == "paid"
    assert await ws.receive_nothing(timeout=0.2)

"""A consumer reads the server's own per-connection queue as its inbox.

daphne hands an application ``receive=queue.get`` (so does channels' test
communicator); the consumer takes that queue as its inbox
(``notifications.recovery.server_queue``), so an open connection holds no
pump task and no second queue (round 8 in docs/performance.md). Any other
``receive`` (another ASGI server's) is pumped into an inbox of the
consumer's own. Both stream the same, through the real ASGI app on Redis.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from orders.actions import transition_order
from tests.support.asgi import application, with_host, ws_answer, ws_headers


def unqueued(app: Any) -> Any:
    """``app`` behind a ``receive`` that is not a ``Queue.get``, as uvicorn's is not."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def receive_message() -> dict[str, Any]:
            return await receive()

        await app(scope, receive_message, send)

    return wrapped


def receive_pumps() -> int:
    """Tasks pumping an ASGI receive into an inbox (not the ``redis`` layer's
    receive, which that layer pumps on every server)."""
    count = 0
    for task in asyncio.all_tasks():
        coroutine = task.get_coro()
        if coroutine.__qualname__ == "pump" and coroutine.cr_frame is not None:
            source = coroutine.cr_frame.f_locals.get("source")
            count += getattr(source, "__name__", "") != "receive_from_layer"
    return count


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("servers_queue", [True, False], ids=["daphne-receive", "other-receive"])
async def test_a_consumer_streams_on_the_servers_queue_or_on_its_own(
    alice, alices_order, servers_queue
):
    app = application() if servers_queue else unqueued(application())
    headers = with_host(await sync_to_async(ws_headers)(alice))
    ws = WebsocketCommunicator(app, "/ws/live/", headers=headers)
    accepted, _ = await ws.connect(timeout=5)
    assert accepted
    frame = await ws_answer(ws, {"action": "subscribe", "stream": f"order:{alices_order.pk}"})
    assert frame["type"] == "subscribed", frame
    assert receive_pumps() == (0 if servers_queue else 1)

    await sync_to_async(transition_order)(alices_order.pk, "paid")
    frame = await ws.receive_json_from(timeout=5)
    while frame["type"] != "event":
        frame = await ws.receive_json_from(timeout=5)
    assert frame["event"]["order"]["status"] == "paid"

    await ws.disconnect()
    assert ws.future.done()
    assert receive_pumps() == 0

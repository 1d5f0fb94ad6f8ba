"""The database unavailable for a moment: streams keep their connections,
answer new requests with a clear "unavailable" error, and recover.

The failure is injected where the consumers read the database (the log and
the authorization query), through the real ASGI app.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError

import notifications.access as access
import notifications.resume as resume
from orders.actions import transition_order
from tests.support.asgi import HttpStream, http_headers, ws_headers

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("memory_layer"),
]


@pytest.fixture
def database_down(monkeypatch):
    """While active, the consumers' database reads fail like a lost connection."""

    def fail(*args, **kwargs):
        raise OperationalError("could not connect to server: Connection refused")

    state = {"down": False}
    for module, name in ((resume, "read_backlog"), (access, "authorize_principal")):
        function = getattr(module, name)
        monkeypatch.setattr(
            module, name, lambda *a, _f=function, **k: fail() if state["down"] else _f(*a, **k)
        )
    return state


async def test_a_websocket_subscribe_gets_unavailable_then_works_once_the_database_is_back(
    alice, alices_order, socket_factory, database_down
):
    from channels.layers import get_channel_layer

    ws = await socket_factory(await sync_to_async(ws_headers)(alice))
    database_down["down"] = True
    await ws.send_json_to({"action": "subscribe", "stream": f"order:{alices_order.pk}", "after": 0})
    error = await ws.receive_json_from(timeout=5)
    assert error["type"] == "error" and error["code"] == "unavailable"
    assert error["retry_after"] == 2  # as the HTTP transports' and REST's Retry-After
    assert not get_channel_layer().groups.get(f"order.{alices_order.pk}")

    database_down["down"] = False
    await ws.send_json_to({"action": "subscribe", "stream": f"order:{alices_order.pk}", "after": 0})
    assert (await ws.receive_json_from(timeout=5))["type"] == "subscribed"
    frame = await ws.receive_json_from(timeout=5)
    assert frame["type"] == "event", frame
    assert frame["event"]["type"] == "order.created"


async def test_live_events_keep_flowing_to_open_streams_while_the_database_is_down(
    alice, alices_order, socket_factory, database_down
):
    ws = await socket_factory(await sync_to_async(ws_headers)(alice))
    await ws.send_json_to({"action": "subscribe", "stream": f"order:{alices_order.pk}"})
    assert (await ws.receive_json_from(timeout=5))["type"] == "subscribed"
    await ws.send_json_to({"action": "ping"})  # handled in order: the backfill is done
    assert (await ws.receive_json_from(timeout=5))["type"] == "pong"
    database_down["down"] = True  # live delivery carries the event; no query needed
    await sync_to_async(transition_order)(alices_order.pk, "paid")
    frame = await ws.receive_json_from(timeout=5)
    assert frame["type"] == "event", frame
    assert frame["event"]["order"]["status"] == "paid"


@pytest.mark.parametrize("path", ["/events/stream/", "/events/poll/"])
async def test_http_streams_answer_503_json_with_retry_after(
    alice, alices_order, database_down, path
):
    headers = await sync_to_async(http_headers)(alice)
    database_down["down"] = True
    response = await HttpStream(path, f"stream=order:{alices_order.pk}&after=0", headers).start()
    assert response.status == 503
    assert response.headers["retry-after"] == "2"
    assert (await response.json())["error"]["code"] == "unavailable"

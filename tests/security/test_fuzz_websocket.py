"""Fuzz ws/live/ with hypothesis through the real ASGI app (in-memory layer).

Any frame — random JSON values, protocol-shaped objects with random fields,
random text, random bytes, oversized frames — gets exactly one answer
(``error``, ``subscribed``, ``unsubscribed`` or ``pong``, possibly followed by
backfilled ``event``/``reset`` frames of a stream the user may read), the
socket stays open, nothing is written to the event log and nothing is logged
as an error.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from orders.models import OrderEvent
from tests.support.asgi import ORIGIN, session_cookie, ws_open

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("memory_layer"),
]

ANSWERS = {"error", "subscribed", "unsubscribed", "pong"}
FOLLOW_UPS = {"event", "reset"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)


def frames(order_ids: list[int]) -> st.SearchStrategy[str | bytes]:
    """Text or binary frames; many shaped like the protocol, so they get past the parser."""
    streams = st.sampled_from(
        ["mine", "staff", "order:0", "order:-1", "order:01", "order:99999999", "order:", "x" * 70]
        + [f"order:{pk}" for pk in order_ids]
    )
    cursors = st.integers(0, 10**6) | st.integers(-(2**70), 2**70) | json_values
    # Mostly plausible values, so that many frames reach authorization and the backfill.
    protocol = st.fixed_dictionaries(
        {
            "action": st.sampled_from(["subscribe", "subscribe", "unsubscribe", "ping"])
            | json_values
        },
        optional={
            "stream": streams | streams | json_values,
            "after": cursors,
            "token": st.text(max_size=80) | json_values,
            "extra": json_values,
        },
    )
    subscribes = st.fixed_dictionaries(
        {"action": st.just("subscribe"), "stream": streams},
        optional={"after": st.integers(0, 10**6), "token": st.text(max_size=80)},
    )
    oversized = st.integers(60_000, 70_000).map(
        lambda n: json.dumps({"action": "ping", "p": "x" * n})
    )
    return st.one_of(
        subscribes.map(json.dumps),
        protocol.map(json.dumps),
        json_values.map(json.dumps),
        st.text(max_size=200),
        st.binary(max_size=200),
        oversized,
    )


@pytest.fixture
def orders(alice: Any, bob: Any, make_order: Any) -> list[Any]:
    """Alice's order (she may read it) and Bob's (she may not)."""
    return [make_order(alice, "paid"), make_order(bob, "shipped")]


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_any_frame_gets_one_answer_and_the_socket_stays_open(
    data: Any, alice: Any, orders: list[Any], caplog: Any
) -> None:
    caplog.set_level(logging.ERROR)
    alices, bobs = orders
    frame = data.draw(frames([alices.pk, bobs.pk]), label="frame")
    before = await sync_to_async(OrderEvent.objects.count)()
    cookie = await sync_to_async(session_cookie)(alice)
    ws, accepted, _ = await ws_open([(b"origin", ORIGIN), (b"cookie", cookie.encode())])
    assert accepted
    try:
        # send_input, not send_to: empty frames are legal on the wire.
        key = "bytes" if isinstance(frame, bytes) else "text"
        await ws.send_input({"type": "websocket.receive", key: frame})
        # A marker the fuzz frame cannot produce: everything before its answer
        # is the answer to the fuzz frame.
        marker = f"marker-{uuid.uuid4().hex}"
        await ws.send_json_to({"action": "unsubscribe", "stream": marker})
        replies = []
        while True:
            reply = await ws.receive_json_from(timeout=5)
            if reply.get("stream") == marker:
                assert reply["type"] == "error" and reply["code"] == "not_subscribed"
                break
            replies.append(reply)
        assert replies, f"no answer to {frame!r}"
        assert replies[0]["type"] in ANSWERS, replies
        event(f"answer: {replies[0]['type']} {replies[0].get('code', '')}")
        assert all(r["type"] in FOLLOW_UPS for r in replies[1:]), replies
        if replies[0]["type"] == "error":
            assert isinstance(replies[0]["code"], str) and replies[0]["message"]
        for reply in replies:
            if reply["type"] == "event":
                assert reply["event"]["order"]["id"] == alices.pk, "another customer's event"
        # Still open and still speaking the protocol.
        await ws.send_json_to({"action": "ping"})
        assert (await ws.receive_json_from(timeout=5))["type"] == "pong"
    finally:
        await ws.disconnect()
    assert await sync_to_async(OrderEvent.objects.count)() == before
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

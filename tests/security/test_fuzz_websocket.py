"""Fuzz ws/live/ with hypothesis through the real ASGI app (in-memory layer).

Any frame — random JSON values, protocol-shaped objects with random fields,
random text, random bytes, oversized frames — gets exactly one answer
(``error``, ``subscribed``, ``unsubscribed`` or ``pong``, possibly followed by
backfilled ``event``/``reset`` frames of a stream the user may read), the
socket stays open, nothing is written to the event log and nothing is logged
as an error or with a traceback.

Random values rarely hit what hurts a server, so a second test draws only
adversarial frames (``adversarial_frames``): nesting up to thousands deep
(balanced or not, bare or inside a subscribe), numbers far too long or out of
range (``1e400``, 10**5000), ``NaN``, long strings and odd ones (NUL, lone
surrogates, right-to-left marks), keys given twice.
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


def nested(depth: int, kind: str) -> str:
    """JSON text nested ``depth`` deep: arrays, objects, or unclosed arrays."""
    if kind == "array":
        return "[" * depth + "]" * depth
    if kind == "object":
        return '{"a":' * depth + "1" + "}" * depth
    return "[" * depth


def adversarial_frames(order_ids: list[int]) -> st.SearchStrategy[str]:
    """Frames built to hurt: depth, number size, string content, repeated keys."""
    depths = st.integers(1, 20) | st.integers(20, 40) | st.integers(900, 20_000)
    deep = st.builds(nested, depths, st.sampled_from(["array", "object", "open"]))
    huge_numbers = st.sampled_from(
        ["1e400", "-1e400", "1e-400", "NaN", "Infinity", "-0", "9" * 5000, "9" * 40, "9" * 41]
        + [str(2**63), str(-(2**63)), "1" + "0" * 4300, "0." + "0" * 5000 + "1"]
    ) | st.integers(1, 60_000).map(lambda n: "7" * n)
    odd_strings = st.sampled_from(
        [
            '"\\u0000"',
            '"\\ud800"',
            '"\\udfff\\ud800"',
            '"\\ud83d\\ude00"',
            '"order:1\\u0000"',
            '"\\u202eorder:1"',
            '"order:\\u0661"',
            '"\\\\ud800"',
            '"' + "x" * 60_000 + '"',
            '"' + "\\u00e9" * 9000 + '"',
        ]
    )
    streams = st.sampled_from(["mine", "staff"] + [f"order:{pk}" for pk in order_ids]).map(
        json.dumps
    )
    values = deep | huge_numbers | odd_strings | streams
    field = st.sampled_from(["stream", "after", "token", "action", "extra"])
    protocol = st.builds(
        lambda action, name, value: f'{{"action":{action},"{name}":{value}}}',
        st.sampled_from(['"subscribe"', '"unsubscribe"', '"ping"']),
        field,
        values,
    )
    repeated = st.builds(
        lambda a, b: f'{{"action":"ping","action":{a},"stream":{b},"stream":{b}}}',
        st.sampled_from(['"subscribe"', '"ping"']),
        streams,
    )
    return (protocol | deep | repeated | values).filter(lambda f: len(f) <= 70_000)


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
    alices, bobs = orders
    frame = data.draw(frames([alices.pk, bobs.pk]), label="frame")
    await check_frame(frame, alice, orders, caplog)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_an_adversarial_frame_gets_one_answer_and_the_socket_stays_open(
    data: Any, alice: Any, orders: list[Any], caplog: Any
) -> None:
    alices, bobs = orders
    frame = data.draw(adversarial_frames([alices.pk, bobs.pk]), label="frame")
    await check_frame(frame, alice, orders, caplog)


async def check_frame(frame: str | bytes, alice: Any, orders: list[Any], caplog: Any) -> None:
    caplog.set_level(logging.ERROR)
    alices, _ = orders
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
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]

"""Fuzz the SSE and long-poll endpoints' query strings and headers with hypothesis.

Through the real ASGI app (routing, session and token middleware): whatever
the query string, ``Last-Event-ID``, cookie or ``Authorization`` header, the
answer is 200 (a stream, a poll answer, or a poll still waiting) or
400/401/403/429 with the JSON error body, never a 5xx or a crash; no event is
written, nothing is logged as an error or with a traceback, no long-poll or
SSE slot is leaked, and a 200 never carries another customer's order.

Besides random values, ``adversarial_requests`` draws what hurts servers:
parameters given twice, numbers of 5,000 digits (Python's ``int()`` refuses
them) or ``1e400``, non-ASCII digits, NUL, invalid UTF-8 and lone surrogates,
right-to-left marks, 8 KB values, and headers that are huge, odd or repeated.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlencode

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from notifications import slots
from notifications.longpoll import open_polls
from orders.access import make_tracking_token
from orders.models import OrderEvent
from tests.support.asgi import http_get, session_cookie

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("memory_layer"),
]

ERRORS = {400, 401, 403, 429}
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

header_text = st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=60)


@pytest.fixture
def world(alice: Any, bob: Any, make_order: Any) -> dict[str, Any]:
    alices, bobs = make_order(alice, "paid"), make_order(bob, "shipped")
    from rest_framework.authtoken.models import Token

    return {
        "alices": alices,
        "bobs": bobs,
        "cookie": session_cookie(alice),
        "api_token": Token.objects.create(user=alice).key,
        "tracking": make_tracking_token(alices),
    }


def requests(world: dict[str, Any]) -> st.SearchStrategy[tuple[bytes, list[tuple[bytes, bytes]]]]:
    """(query string, headers): mostly plausible parameters, some pure noise."""
    alices, bobs = world["alices"].pk, world["bobs"].pk
    stream = st.sampled_from(
        ["mine", "staff", f"order:{alices}", f"order:{bobs}", "order:0", "order:99999999", ""]
    ) | st.text(max_size=30)
    number = st.integers(0, 10**6).map(str) | st.integers(-(2**70), 2**70).map(str)
    params = st.fixed_dictionaries(
        {},
        optional={
            "stream": stream,
            "after": number | st.text(max_size=25),
            "timeout": st.sampled_from(["0", "1", "", "61", "-1", "1e3", "０"])
            | st.text(max_size=5),
            "token": st.sampled_from([world["tracking"], world["tracking"][:-2] + "xx"])
            | st.text(max_size=40),
            "junk": st.text(max_size=20),
        },
    )
    plausible = st.fixed_dictionaries(
        {"stream": st.sampled_from(["mine", "staff", f"order:{alices}", f"order:{bobs}"])},
        optional={
            "after": st.integers(0, 10**6).map(str),
            "timeout": st.sampled_from(["0", "1"]),
            "token": st.sampled_from([world["tracking"], "nope"]),
        },
    )
    query = (
        plausible.map(lambda p: urlencode(p).encode())
        | params.map(lambda p: urlencode(p).encode())
        | st.binary(max_size=80)
    )
    credentials = st.fixed_dictionaries(
        {},
        optional={
            b"last-event-id": st.integers(0, 10**6).map(str),
            b"cookie": st.sampled_from([world["cookie"], "sessionid=nope"]),
            b"authorization": st.sampled_from([f"Token {world['api_token']}", "Token nope"]),
            b"x-tracking-token": st.sampled_from([world["tracking"], "nope"]),
        },
    )
    noise = st.fixed_dictionaries(
        {},
        optional={
            b"last-event-id": number | header_text,
            b"cookie": st.sampled_from([world["cookie"], "sessionid=nope"]) | header_text,
            b"authorization": st.sampled_from(
                [f"Token {world['api_token']}", "Token nope", "Token ", "Bearer x"]
            )
            | header_text,
        },
    )
    headers = (credentials | noise).map(lambda h: [(k, v.encode("latin-1")) for k, v in h.items()])
    return st.tuples(query, headers)


# Query values built to hurt, as raw (already percent-encoded) query text.
HOSTILE_VALUES = [
    "9" * 5000,  # int() refuses over 4,300 digits
    "9" * 20,
    "1e400",
    "-1",
    "-0",
    "%EF%BC%90",  # a full-width zero: isdigit(), not ASCII
    "%D9%A3",  # an Arabic-Indic three
    "%00",
    "order:1%00",
    "%ED%A0%80",  # a lone surrogate, UTF-8 encoded (invalid UTF-8)
    "%C0%80",  # an overlong NUL
    "%FF%FE",
    "%E2%80%AEmine",  # right-to-left override
    "x" * 8000,
    "order:" + "1" * 5000,
    "",
]


def adversarial_requests(
    world: dict[str, Any],
) -> st.SearchStrategy[tuple[bytes, list[tuple[bytes, bytes]]]]:
    """Query strings with repeated, huge and odd parameters; headers likewise."""
    alices = world["alices"].pk
    names = st.sampled_from(["stream", "after", "timeout", "token", "junk"])
    values = st.sampled_from(HOSTILE_VALUES) | st.sampled_from(["mine", f"order:{alices}", "0"])
    pairs = st.lists(st.tuples(names, values), max_size=6)
    # Often a stream Alice may read first, so the rest reaches deeper code.
    lead = st.sampled_from([[], [("stream", f"order:{alices}")], [("stream", "mine")]])
    query = st.builds(lambda a, b: "&".join(f"{k}={v}" for k, v in a + b).encode(), lead, pairs)
    header_values = st.sampled_from(
        ["9" * 5000, "1e400", "-1", " 1", "1 ", "\xff\xfe", "0" * 30, "x" * 6000]
    )
    header_names = st.sampled_from([b"last-event-id", b"authorization", b"cookie"])

    def header(name: bytes, value: str) -> tuple[bytes, bytes]:
        prefix = "Token " if name == b"authorization" else ""
        return name, (prefix + value).encode("latin-1")

    # A list, so a header may come twice (two Last-Event-IDs).
    headers = st.lists(st.builds(header, header_names, header_values), max_size=4)
    signed_in = st.booleans().map(
        lambda yes: [(b"cookie", world["cookie"].encode())] if yes else []
    )
    return st.tuples(query, st.builds(lambda a, b: a + b, signed_in, headers))


async def check(
    path: str, request: tuple[bytes, list[tuple[bytes, bytes]]], world: dict[str, Any], caplog: Any
) -> None:
    caplog.set_level(logging.ERROR)
    query, headers = request
    # Each example on fresh throttle counters: failed tokens of earlier
    # examples would otherwise turn most answers into 429s.
    await sync_to_async(cache.clear)()
    before = await sync_to_async(OrderEvent.objects.count)()
    # Only a long-poll may hold its answer: an SSE request must start its
    # answer (a stream or an error) within http_get's timeout, however slow the
    # machine; a quiet 0.2 s there was read as "held" on a busy CI runner.
    hold = 0.2 if path == "/events/poll/" else None
    answer = await http_get(path, query, headers, hold=hold)
    event(f"status {answer.status}")
    if answer.status is None:
        assert path == "/events/poll/", "only a long-poll may hold its answer"
    elif answer.status in ERRORS:
        assert answer.content_type == "application/json", answer
        error = answer.json()["error"]
        assert isinstance(error["code"], str) and error["message"]
    else:
        assert answer.status == 200, (answer.status, answer.body[:300])
        if path == "/events/stream/":
            assert answer.content_type.startswith("text/event-stream")
            lines = answer.body.decode().splitlines()
            events = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
            events = [e for e in events if "order" in e]
        else:
            body = answer.json()
            assert isinstance(body["events"], list) and isinstance(body["cursor"], int)
            events = body["events"]
        # Every credential in play is Alice's (session, API token, tracking link).
        assert {e["order"]["id"] for e in events} <= {world["alices"].pk}
    assert await sync_to_async(OrderEvent.objects.count)() == before
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not open_polls, f"long-poll slots leaked: {dict(open_polls)}"
    assert not slots.local["sse"], f"SSE slots leaked: {dict(slots.local['sse'])}"


@FUZZ
@given(data=st.data())
async def test_any_sse_request_gets_a_stream_or_a_json_error(
    data: Any, world: dict[str, Any], caplog: Any
) -> None:
    await check("/events/stream/", data.draw(requests(world), label="request"), world, caplog)


@FUZZ
@given(data=st.data())
async def test_any_long_poll_request_gets_an_answer_or_a_json_error(
    data: Any, world: dict[str, Any], caplog: Any
) -> None:
    await check("/events/poll/", data.draw(requests(world), label="request"), world, caplog)


ADVERSARIAL = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@ADVERSARIAL
@given(data=st.data())
async def test_an_adversarial_sse_request_gets_a_stream_or_a_json_error(
    data: Any, world: dict[str, Any], caplog: Any
) -> None:
    request = data.draw(adversarial_requests(world), label="request")
    await check("/events/stream/", request, world, caplog)


@ADVERSARIAL
@given(data=st.data())
async def test_an_adversarial_long_poll_request_gets_an_answer_or_a_json_error(
    data: Any, world: dict[str, Any], caplog: Any
) -> None:
    request = data.draw(adversarial_requests(world), label="request")
    await check("/events/poll/", request, world, caplog)

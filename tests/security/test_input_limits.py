"""No input hurts the server (issue 12, section 3): the cases the issue names, one by one.

Any nesting depth, number length or string content, on every surface, gets
an error frame or a 4xx JSON naming the input, and the socket stays usable:

- ``booktime.limits.load_json``: the one JSON parser for WebSocket frames and
  REST bodies (depth, numbers, NUL and lone surrogates, keys given twice);
- REST bodies: 400 ``parse_error`` / 413 ``too_large`` naming ``body``, for
  JSON, forms and multipart alike;
- REST parameters: ``page``/``page_size`` that DRF ignored or guessed at, and
  any parameter given twice, are 400 ``invalid`` naming it;
- streams: a WebSocket frame nested 1,000 deep is an error frame; a long-poll
  ``timeout`` of 5,000 digits and a parameter given twice are 400 JSON.

Randomised and adversarial variants: ``test_fuzz_websocket.py``,
``test_fuzz_http_streams.py``; on a real daphne: ``test_hostile_client.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from booktime.limits import MAX_JSON_DEPTH, InputError, load_json
from tests.support.api import assert_error
from tests.support.asgi import (
    http_get,
    http_headers,
    open_socket,
    ws_answer,
    ws_headers,
    ws_open,
)

DEEP = "[" * 1000 + "]" * 1000


# -- the parser ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (DEEP, "nested deeper"),
        ("[" * 5000, "nested deeper"),
        ('{"a":' * (MAX_JSON_DEPTH + 1) + "1" + "}" * (MAX_JSON_DEPTH + 1), "nested deeper"),
        ("1" * 5000, "longer than"),
        ('{"after": ' + "9" * 41 + "}", "longer than"),
        ("1e400", "out of range"),
        ("[-1e400]", "out of range"),
        ("NaN", "not a JSON number"),
        ('["Infinity", Infinity]', "not a JSON number"),
        ('"\\u0000"', "NUL"),
        ('{"stream": "\\ud800"}', "lone surrogate"),
        ('{"\\udfff": 1}', "lone surrogate"),
        ('{"action": "ping", "action": "subscribe"}', "twice"),
        (b"\xff\xfe[]", "not UTF-8"),
        ("[1, 2", "not valid JSON"),
    ],
)
def test_json_outside_the_limits_is_refused_with_a_reason(text: Any, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        load_json(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH, None),
        ('"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["', "[" * 46),
        ('"\\ud83d\\ude00"', "\U0001f600"),  # a surrogate *pair* is one character
        ('"\\\\ud800"', "\\ud800"),  # an escaped backslash, not an escape
        ('{"after": 9223372036854775807, "x": 1.5e300}', None),
    ],
)
def test_json_within_the_limits_parses(text: str, value: Any) -> None:
    parsed = load_json(text)
    if value is not None:
        assert parsed == value


# -- REST bodies ------------------------------------------------------------------------

HOSTILE_BODIES = [
    DEEP,
    '{"lines": ' + DEEP + "}",
    '{"lines": [{"product": ' + "9" * 5000 + ', "quantity": 1}]}',
    '{"lines": [{"product": 1e400, "quantity": 1}]}',
    '{"lines": [{"product": 1, "quantity": NaN}]}',
    '{"lines": [{"product": 1, "quantity": 1}], "shipping_name": "\\ud800"}',
    '{"lines": [{"product": 1, "quantity": 1}], "shipping_name": "a\\u0000b"}',
    '{"lines": [], "lines": [{"product": 1, "quantity": 1}]}',
]


@pytest.mark.django_db
@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
def test_a_hostile_json_body_is_a_400_naming_the_body(
    api_as: Any, products: Any, body: str
) -> None:
    answer = api_as("alice").post("/api/orders/", body, content_type="application/json")
    error = assert_error(answer, 400, "parse_error")
    assert "body" in error["fields"]


@pytest.mark.django_db
def test_a_hostile_transition_body_is_a_400(api_as: Any, alice: Any, make_order: Any) -> None:
    order = make_order(alice, "paid")
    url = f"/api/orders/{order.pk}/transition/"
    client = api_as("staff_token")
    for body in (DEEP, '{"status": "packed", "note": "\\udc00"}', '{"status": 1e999}'):
        assert_error(client.post(url, body, content_type="application/json"), 400, "parse_error")
    assert order.events.count() == 2  # nothing was recorded


@pytest.mark.django_db
def test_a_body_over_the_size_limit_is_a_413(api_as: Any, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    client = api_as("alice")
    body = json.dumps({"lines": [], "shipping_name": "x" * 20_000})
    error = assert_error(client.post("/api/orders/", body, content_type="application/json"), 413)
    assert error["code"] == "too_large" and "body" in error["fields"]
    form = "shipping_name=" + "x" * 20_000
    answer = client.post("/api/orders/", form, content_type="application/x-www-form-urlencoded")
    assert_error(answer, 413, "too_large")


@pytest.mark.django_db
def test_a_form_with_too_many_fields_is_a_400(api_as: Any) -> None:
    client = api_as("alice")
    form = "&".join(f"f{n}=1" for n in range(1500))
    answer = client.post("/api/orders/", form, content_type="application/x-www-form-urlencoded")
    assert "body" in assert_error(answer, 400, "parse_error")["fields"]
    answer = client.post("/api/orders/", {f"f{n}": "1" for n in range(1500)}, format="multipart")
    assert "body" in assert_error(answer, 400, "parse_error")["fields"]


@pytest.mark.django_db
def test_a_body_that_is_not_utf8_is_a_400(api_as: Any) -> None:
    answer = api_as("alice").post("/api/orders/", b'{"a": "\xff"}', content_type="application/json")
    assert "body" in assert_error(answer, 400, "parse_error")["fields"]


# -- REST parameters --------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value", ["abc", "0", "-1", "201", "9" * 5000, "1e3", "%EF%BC%91", "2.0", ""]
)
def test_a_bad_page_size_is_a_400_naming_it(
    api_as: Any, alice: Any, make_order: Any, value: str
) -> None:
    make_order(alice)
    error = assert_error(api_as("alice").get(f"/api/orders/?page_size={value}"), 400, "invalid")
    assert set(error["fields"]) == {"page_size"}
    assert "200" in error["fields"]["page_size"]


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["abc", "0", "-1", "9" * 5000, ""])
def test_a_bad_page_is_a_400_naming_it(
    api_as: Any, alice: Any, make_order: Any, value: str
) -> None:
    make_order(alice)
    error = assert_error(api_as("alice").get(f"/api/orders/?page={value}"), 400, "invalid")
    assert set(error["fields"]) == {"page"}


@pytest.mark.django_db
def test_good_pages_still_work(api_as: Any, alice: Any, make_order: Any) -> None:
    for _ in range(3):
        make_order(alice)
    client = api_as("alice")
    assert len(client.get("/api/orders/?page_size=200").json()["results"]) == 3
    assert len(client.get("/api/orders/?page_size=2&page=last").json()["results"]) == 1
    assert_error(client.get("/api/orders/?page_size=2&page=3"), 404, "not_found")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/api/orders/?status=paid&status=placed",
        "/api/orders/?page_size=2&page_size=3",
        "/api/events/?after=1&after=2",
        "/api/events/?limit=5&limit=5",
        "/api/products/?x=1&x=2",
    ],
)
def test_a_parameter_given_twice_is_a_400_naming_it(api_as: Any, path: str) -> None:
    name = path.split("?")[1].split("=")[0]
    error = assert_error(api_as("alice_token").get(path), 400, "invalid")
    assert set(error["fields"]) == {name}


# -- streams ---------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("memory_layer")
async def test_a_websocket_frame_nested_1000_deep_gets_an_error_frame(alice: Any) -> None:
    socket = await open_socket(await sync_to_async(ws_headers)(alice))
    try:
        for frame in (DEEP, '{"action": "subscribe", "stream": ' + DEEP + "}", "[" * 60_000):
            await socket.send_to(text_data=frame)
            error = await socket.receive_json_from(timeout=5)
            assert error["type"] == "error" and error["code"] == "bad_json", error
            assert "nested deeper" in error["message"]
        assert (await ws_answer(socket, {"action": "ping"}))["type"] == "pong"
    finally:
        await socket.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("memory_layer")
@pytest.mark.parametrize(
    ("path", "query", "field", "code"),
    [
        ("/events/poll/", "stream=mine&timeout=" + "9" * 5000, "timeout", "bad_timeout"),
        ("/events/poll/", "stream=mine&after=" + "9" * 5000, "after", "bad_cursor"),
        ("/events/poll/", "stream=mine&stream=staff", "stream", "invalid"),
        ("/events/poll/", "stream=mine&timeout=0&timeout=60", "timeout", "invalid"),
        ("/events/stream/", "stream=mine&after=1&after=2", "after", "invalid"),
        ("/events/stream/", "stream=mine&after=1e400", "after", "bad_cursor"),
    ],
)
async def test_a_hostile_stream_parameter_is_a_400_json_naming_it(
    alice: Any, path: str, query: str, field: str, code: str
) -> None:
    headers = await sync_to_async(http_headers)(alice)
    answer = await http_get(path, query.encode(), headers)
    assert answer.status == 400 and answer.content_type == "application/json", answer
    error = answer.json()["error"]
    assert error["code"] == code and field in error["fields"], error


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("memory_layer")
async def test_a_huge_last_event_id_is_a_400_naming_it(alice: Any) -> None:
    headers = await sync_to_async(http_headers)(alice, last_event_id="9" * 5000)
    answer = await http_get("/events/stream/", b"stream=mine", headers)
    assert answer.status == 400 and answer.content_type == "application/json", answer
    assert "Last-Event-ID" in answer.json()["error"]["fields"]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("memory_layer")
async def test_a_repeated_last_event_id_is_a_400_naming_it(alice: Any) -> None:
    """Like a repeated query parameter: which copy counts would be a guess
    (the server took the first, a proxy in front may take the last)."""
    headers = await sync_to_async(http_headers)(alice, last_event_id="1")
    headers.append((b"last-event-id", b"999999"))
    answer = await http_get("/events/stream/", b"stream=mine", headers)
    assert answer.status == 400 and answer.content_type == "application/json", answer
    error = answer.json()["error"]
    assert error["code"] == "invalid" and set(error["fields"]) == {"Last-Event-ID"}, error


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("memory_layer")
@pytest.mark.parametrize(
    ("header", "field"),
    [(b"x-tracking-token", "X-Tracking-Token"), (b"authorization", "Authorization")],
)
@pytest.mark.parametrize("path", ["/events/stream/", "/events/poll/"])
async def test_a_repeated_credential_header_is_a_400_naming_it(
    path: str, header: bytes, field: str
) -> None:
    headers = [(header, b"Token one"), (header, b"Token two")]
    answer = await http_get(path, b"stream=mine&timeout=0", headers)
    assert answer.status == 400 and answer.content_type == "application/json", answer
    error = answer.json()["error"]
    assert error["code"] == "invalid" and set(error["fields"]) == {field}, error


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("memory_layer")
async def test_a_websocket_with_a_repeated_credential_header_is_refused(alice: Any) -> None:
    headers = await sync_to_async(ws_headers)(alice)
    once, accepted, _ = await ws_open([*headers, (b"x-tracking-token", b"a")])
    assert accepted
    await once.disconnect()
    twice = [*headers, (b"x-tracking-token", b"a"), (b"x-tracking-token", b"b")]
    _, accepted, _ = await ws_open(twice)
    assert not accepted

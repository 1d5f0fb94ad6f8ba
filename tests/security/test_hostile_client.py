"""A hostile client against a real daphne: every surface, nothing breaks, nothing leaks.

Bob (a customer, by session cookie and by API token) and an anonymous client
probe every surface the way an attacker would — WebSocket frames, SSE and
long-poll query strings and headers, every REST endpoint (``api/orders/``,
``api/products/``, ``api/events/``, ``api/webhooks/``) with hostile bodies and
parameters, and the page forms (sign-in, sign-out, tracking) — with nesting
thousands deep, numbers of 5,000 digits and ``1e400``, NUL, invalid UTF-8 and
lone surrogates, 8 KB values, parameters and headers given twice, a bad Host
header, bodies too big or with too many fields, and Alice's order id. Staff
send hostile webhook bodies too (staff may see everything, so only their
server errors count).

Requests go over raw sockets (HTTP/1.0, bytes exactly as written), so no
client library tidies the input first. Then:

- no answer is a 5xx, every refusal under ``api/`` and the streams is the JSON
  error shape, and every WebSocket is still answering ``ping`` at the end;
- the server log holds no traceback and no 5xx;
- no byte of Alice's data (her order's reference, her username, her e-mail)
  is in anything Bob or the anonymous client received.

The server runs with throttles opened wide so that probes reach the parsers
instead of stopping at a 429 (throttles have their own tests).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from asgiref.sync import sync_to_async

from tests.support.live import ws_connect, ws_recv, ws_send

pytestmark = [pytest.mark.asyncio, pytest.mark.live, pytest.mark.django_db(transaction=True)]

WIDE_OPEN = {
    "API_THROTTLE_ANON": "100000/min",
    "API_THROTTLE_USER": "100000/min",
    "API_THROTTLE_TOKEN": "100000/min",
    "AUTH_FAILURES_PER_ADDRESS": "100000",
    "LOGIN_FAILURES_PER_ADDRESS": "100000",
    "LOGIN_FAILURES_PER_USERNAME": "100000",
    "LONGPOLL_MAX_PER_CLIENT": "1000",
    "SSE_MAX_PER_CLIENT": "1000",
}

DEEP = "[" * 1000 + "]" * 1000
# Query values as raw (percent-encoded where needed) query text.
QUERY_VALUES = [
    "9" * 5000,
    "1e400",
    "-1",
    "%00",
    "%ED%A0%80",  # a lone surrogate, UTF-8 encoded: invalid UTF-8
    "%C0%80",
    "%FF",
    "%E2%80%AE",
    "%EF%BC%91",  # a full-width digit
    "x" * 8000,
    quote(DEEP),
]
JSON_BODIES = [
    DEEP,
    "[" * 100_000,
    '{"lines": ' + DEEP + "}",
    '{"lines": [{"product": ' + "9" * 5000 + ', "quantity": 1}]}',
    '{"lines": [{"product": 1e400, "quantity": 1e400}]}',
    '{"lines": [{"product": 1, "quantity": NaN}]}',
    '{"lines": [{"product": 1, "quantity": 1}], "shipping_name": "\\ud800"}',
    '{"lines": [{"product": 1, "quantity": 1}], "shipping_city": "a\\u0000b"}',
    '{"lines": [{"product": 1, "quantity": 1}], "shipping_name": "' + "x" * 100_000 + '"',
    '{"status": "paid", "status": "cancelled"}',
    '{"url": "https://hooks.example/\\u0000", "event_types": ' + DEEP + "}",
    '{"url": "' + "h" * 10_000 + '", "event_types": ["order.created"]}',
    '{"after": 1e400}',
    '{"after": -' + "9" * 40 + "}",
    '"\\udfff"',
    "\xff\xfe",
]


@dataclass
class Answer:
    label: str
    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


async def raw_http(
    server: Any,
    method: str,
    target: bytes,
    headers: list[tuple[bytes, bytes]] = (),
    body: bytes = b"",
    *,
    stream: bool = False,
) -> tuple[int | None, dict[str, str], bytes]:
    """One HTTP/1.0 request over a raw socket, bytes as given. ``stream``: read
    the head and the first body bytes, then hang up (an SSE stream)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    lines = [method.encode() + b" " + target + b" HTTP/1.0"]
    if not any(name.lower() == b"host" for name, _ in headers):
        lines.append(b"Host: 127.0.0.1:%d" % server.port)
    if body:
        lines.append(b"Content-Length: %d" % len(body))
    lines += [name + b": " + value for name, value in headers]
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    data = b""
    try:
        await writer.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while loop.time() < deadline:
            if stream and b"\r\n\r\n" in data and data.split(b"\r\n\r\n", 1)[1]:
                break
            chunk = await asyncio.wait_for(reader.read(65536), deadline - loop.time())
            if not chunk:
                break
            data += chunk
    except (ConnectionError, TimeoutError):
        pass  # a refused upload may be cut short; what came back still counts
    finally:
        writer.close()
    head, _, content = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3})", status_line)
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return (int(match.group(1)) if match else None), parsed, content


class Hostile:
    """Sends probes to one server and keeps every answer."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.answers: list[Answer] = []
        self.frames: list[tuple[str, str]] = []  # (who, text of a WebSocket frame)

    async def http(
        self,
        label: str,
        method: str,
        target: str | bytes,
        headers: list[tuple[bytes, bytes]] = (),
        body: bytes | str = b"",
        *,
        stream: bool = False,
    ) -> Answer:
        if isinstance(target, str):
            target = target.encode("latin-1")
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogatepass")
        status, parsed, content = await raw_http(
            self.server, method, target, list(headers), body, stream=stream
        )
        answer = Answer(label, status, parsed, content)
        self.answers.append(answer)
        return answer


def cookie(**values: str) -> tuple[bytes, bytes]:
    return b"cookie", "; ".join(f"{k}={v}" for k, v in values.items()).encode()


def token(key: str) -> tuple[bytes, bytes]:
    return b"authorization", f"Token {key}".encode("latin-1")


@pytest.fixture
def world(alice: Any, bob: Any, staff_user: Any, make_order: Any, login_cookies: Any) -> Any:
    from rest_framework.authtoken.models import Token

    alices = make_order(alice, "shipped")
    bobs = make_order(bob, "paid")
    return {
        "alices": alices,
        "bobs": bobs,
        "secrets": [alices.reference.encode(), b"alice", b"alice@example.com"],
        "bob_cookie": cookie(**login_cookies(bob)),
        "bob_token": token(Token.objects.create(user=bob).key),
        "staff_token": token(Token.objects.create(user=staff_user).key),
    }


async def probe_websocket(hostile: Hostile, server: Any, cookies: Any, alices: int) -> None:
    """Hostile frames on one socket; each gets an answer, the socket keeps working."""
    frames: list[str | bytes] = [
        DEEP,
        "[" * 60_000,
        '{"action": "subscribe", "stream": ' + DEEP + "}",
        '{"action": "subscribe", "stream": "mine", "after": ' + "9" * 5000 + "}",
        '{"action": "subscribe", "stream": "mine", "after": 1e400}',
        '{"action": "subscribe", "stream": "mine", "after": NaN}',
        '{"action": "subscribe", "stream": "\\ud800"}',
        '{"action": "subscribe", "stream": "order:1\\u0000"}',
        '{"action": "subscribe", "stream": "\\u202eorder:1"}',
        '{"action": "subscribe", "stream": "' + "x" * 60_000 + '"}',
        '{"action": "ping", "action": "subscribe", "stream": "staff"}',
        json.dumps({"action": "subscribe", "stream": f"order:{alices}"}),
        json.dumps({"action": "subscribe", "stream": f"order:{alices}", "token": "x" * 5000}),
        json.dumps({"action": "subscribe", "stream": f"order:{alices}", "token": "\x00"}),
        json.dumps({"action": "subscribe", "stream": "staff", "after": 0}),
        json.dumps({"action": "subscribe", "stream": f"order:{'9' * 5000}"}),
        json.dumps({"action": "ping", "pad": "x" * 1_000_000}),
        b"\x00\xff" * 100,
        "\udcff".encode("utf-8", "surrogatepass").decode("latin-1"),
    ]
    who = "anonymous" if cookies is None else "bob"
    async with await ws_connect(server, cookies=cookies) as ws:
        for frame in frames:
            await ws.send(frame)
            reply = await ws_recv(ws)
            hostile.frames.append((who, json.dumps(reply)))
            assert reply["type"] == "error", (frame[:80], reply)
        await ws_send(ws, {"action": "ping"})
        assert (await ws_recv(ws))["type"] == "pong"


async def probe_streams(hostile: Hostile, world: Any) -> None:
    """SSE and long-poll: hostile query strings and headers, as Bob and anonymous."""
    alices = world["alices"].pk
    who = {
        "bob": [world["bob_cookie"]],
        "bob_token": [world["bob_token"]],
        "anonymous": [],
    }
    names = ["stream", "after", "timeout", "token"]
    queries = [f"stream=order:{alices}", "stream=staff", "stream=mine&stream=staff"]
    queries += [f"stream=mine&{name}={value}" for name in names for value in QUERY_VALUES]
    queries += ["stream=mine&after=1&after=2", "stream=mine&timeout=0&timeout=0", "a=%"]
    headers = [
        [(b"last-event-id", b"9" * 5000)],
        [(b"last-event-id", b"1e400")],
        [(b"last-event-id", b"1"), (b"last-event-id", b"2")],
        [(b"last-event-id", b"\xff\xfe")],
        [token("x" * 5000)],
        [token("\xff" * 40)],
        [(b"x-tracking-token", b"x" * 5000)],
        [(b"x-tracking-token", b"\xff\xfe")],
        [cookie(sessionid="x" * 4000)],
        [cookie(**{f"bt_track_{alices}": "forged"})],
    ]
    for name, credentials in who.items():
        for query in queries:
            await hostile.http(
                f"{name} poll {query[:40]}",
                "GET",
                f"/events/poll/?timeout=0&{query}",
                credentials,
            )
            await hostile.http(
                f"{name} sse {query[:40]}",
                "GET",
                f"/events/stream/?{query}",
                credentials,
                stream=True,
            )
        for extra in headers:
            await hostile.http(
                f"{name} poll headers", "GET", "/events/poll/?stream=mine&timeout=0", extra
            )
            await hostile.http(
                f"{name} sse headers", "GET", "/events/stream/?stream=mine", extra, stream=True
            )
            await hostile.http(
                f"{name} sse alice's order",
                "GET",
                f"/events/stream/?stream=order:{alices}",
                [*credentials, *extra],
                stream=True,
            )


async def probe_rest(hostile: Hostile, world: Any) -> None:
    alices, bobs = world["alices"].pk, world["bobs"].pk
    json_type = (b"content-type", b"application/json")
    form_type = (b"content-type", b"application/x-www-form-urlencoded")
    for name, credentials in (("bob_token", [world["bob_token"]]), ("anonymous", [])):
        gets = [
            "/api/orders/",
            f"/api/orders/{alices}/",
            f"/api/orders/{'9' * 5000}/",
            "/api/orders/?status=paid&status=placed",
            "/api/products/?page_size=abc",
            f"/api/events/?after=0&order={alices}",
            "/api/events/?after=0&type=order.created&type=order.created",
            "/api/webhooks/",
            f"/api/webhooks/1/deliveries/?page_size={'9' * 5000}",
            "/api/schema/",
        ]
        gets += [f"/api/orders/?page_size={v}" for v in QUERY_VALUES]
        gets += [f"/api/orders/?page={v}" for v in QUERY_VALUES]
        gets += [f"/api/orders/?created_after={v}" for v in QUERY_VALUES]
        gets += [f"/api/events/?after={v}" for v in QUERY_VALUES]
        gets += [f"/api/events/?limit={v}&after=0" for v in QUERY_VALUES]
        for target in gets:
            await hostile.http(f"{name} GET {target[:50]}", "GET", target, credentials)
        for body in JSON_BODIES:
            for target in (
                "/api/orders/",
                f"/api/orders/{alices}/transition/",
                f"/api/orders/{bobs}/transition/",
                "/api/webhooks/",
            ):
                await hostile.http(
                    f"{name} POST {target}", "POST", target, [*credentials, json_type], body
                )
        too_many = "&".join(f"f{n}=1" for n in range(1500))
        for body in (too_many, "lines=" + "x" * 3_000_000, "%ZZ=%ED%A0%80"):
            await hostile.http(
                f"{name} POST form", "POST", "/api/orders/", [*credentials, form_type], body
            )
        await hostile.http(
            f"{name} POST multipart",
            "POST",
            "/api/orders/",
            [*credentials, (b"content-type", b"multipart/form-data; boundary=zz")],
            '--zz\r\nContent-Disposition: form-data; name="a"\r\n\r\n' + "x" * 100 + "\r\n",
        )
        await hostile.http(
            f"{name} bad Host", "GET", "/api/orders/", [*credentials, (b"host", b"evil.example")]
        )


async def probe_staff_webhooks(hostile: Hostile, world: Any) -> None:
    """Staff's hostile webhook bodies and parameters: no 5xx (they may see everything)."""
    staff = [world["staff_token"], (b"content-type", b"application/json")]
    for body in JSON_BODIES:
        await hostile.http("staff POST webhooks", "POST", "/api/webhooks/", staff, body)
    for value in QUERY_VALUES:
        await hostile.http("staff GET webhooks", "GET", f"/api/webhooks/?page_size={value}", staff)
        await hostile.http(
            "staff deliveries", "GET", f"/api/webhooks/1/deliveries/?page={value}", staff
        )


async def probe_pages(hostile: Hostile, world: Any) -> None:
    """Sign-in, sign-out and tracking pages, as Bob and anonymous."""
    alices = world["alices"].pk
    page = await hostile.http("anonymous GET login", "GET", "/login/")
    csrf = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
    set_cookie = page.headers.get("set-cookie", "")
    csrf_cookie = re.search(r"csrftoken=([^;]+)", set_cookie)
    assert csrf and csrf_cookie, "the sign-in page sets its CSRF token"
    form = [(b"content-type", b"application/x-www-form-urlencoded")]
    base = [*form, cookie(csrftoken=csrf_cookie.group(1))]
    token_field = "csrfmiddlewaretoken=" + csrf.group(1).decode()
    logins = [f"username={v}&password={v}" for v in ["%00", "%ED%A0%80", "x" * 100_000, "9" * 5000]]
    logins += ["username=a&username=b&password=c&password=d"]
    logins += ["&".join(f"f{n}=1" for n in range(1500))]
    for body in logins:
        await hostile.http("anonymous POST login", "POST", "/login/", base, f"{token_field}&{body}")
    await hostile.http("anonymous POST login, no CSRF", "POST", "/login/", form, "username=x")
    for credentials, name in (([world["bob_cookie"]], "bob"), ([], "anonymous")):
        await hostile.http(f"{name} POST logout, no CSRF", "POST", "/logout/", credentials)
        for target in (
            f"/orders/{alices}/",
            f"/orders/{alices}/?format=json",
            f"/orders/{'9' * 5000}/",
            "/orders/?format=json&format=json",
            "/staff/?format=json",
            f"/track/{alices}/",
            f"/track/{alices}/?format=json",
            "/track/" + "x" * 5000 + "/",
            "/track/%00/",
            "/track/%ED%A0%80/",
        ):
            await hostile.http(f"{name} GET {target[:40]}", "GET", target, credentials)
        for extra in (
            [(b"x-tracking-token", b"x" * 5000)],
            [(b"x-tracking-token", b"\xff\xfe")],
            [cookie(**{f"bt_track_{alices}": "x" * 3000})],
        ):
            for method in ("GET", "POST"):
                await hostile.http(
                    f"{name} {method} track", method, f"/track/{alices}/", credentials + extra
                )
                await hostile.http(f"{name} {method} /track/", method, "/track/", extra)


async def test_a_hostile_client_breaks_nothing_and_sees_nothing_of_another_customer(
    start_daphne: Any, world: Any, alice: Any, bob: Any, login_cookies: Any
) -> None:
    server = start_daphne("hostile", **WIDE_OPEN)
    log_start = server.log_path.stat().st_size
    hostile = Hostile(server)
    bob_cookies = await sync_to_async(login_cookies)(bob)

    await probe_websocket(hostile, server, bob_cookies, world["alices"].pk)
    await probe_websocket(hostile, server, None, world["alices"].pk)
    await probe_streams(hostile, world)
    await probe_rest(hostile, world)
    await probe_pages(hostile, world)
    await probe_staff_webhooks(hostile, world)

    assert len(hostile.answers) > 700
    unanswered = [a.label for a in hostile.answers if a.status is None]
    assert not unanswered, unanswered[:10]
    server_errors = [(a.label, a.status, a.body[:200]) for a in hostile.answers if a.status >= 500]
    assert not server_errors, server_errors[:10]
    # Refusals by the API and the streams are the JSON error shape.
    for answer in hostile.answers:
        if 400 <= answer.status < 500 and ("/api/" in answer.label or " poll" in answer.label):
            if "bad Host" in answer.label:
                continue  # refused by Django before routing, as a page
            assert answer.content_type.startswith("application/json"), answer
            assert set(json.loads(answer.body)["error"]) >= {"code", "message", "fields"}

    log = server.log_path.read_bytes()[log_start:].decode(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert not re.search(r'" 5\d\d ', log), "a 5xx in the access log"

    received = [a.body for a in hostile.answers if not a.label.startswith("staff")]
    received += [text.encode() for _, text in hostile.frames]
    for secret in world["secrets"]:
        leaked = [blob[:200] for blob in received if secret in blob]
        assert not leaked, (secret, leaked[:3])

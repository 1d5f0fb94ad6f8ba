"""Who may read what, on every transport and the REST API.

Principals: anonymous, customer A (Alice), customer B (Bob), staff, the holder
of A's tracking link, a tampered link (A's signature on B's order id), an
expired link, a revoked link (A's, before its links were revoked), Alice's
API token (read-only customer) and a staff API token. Tracking links travel
as they do from the tracking page: in the WebSocket subscribe frame and the
``X-Tracking-Token`` header, never in a URL.
Streams: A's order, B's order, an order id that does not exist, ``mine`` and
``staff``. Each combination is tried over WebSocket, SSE and long-poll
through the real ASGI app (routing, session and token middleware), and over
the REST equivalents (order detail, ``/api/events/?order=``). A refusal
carries nothing about the order: not its reference, status or total, and
the answer for B's order is the answer for an order that does not exist.
The last tests run one principal through each transport on a real daphne.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from django.conf import settings
from django.core import signing

from orders.access import make_tracking_token, tracking_signer
from orders.actions import revoke_tracking_links
from tests.support.asgi import ORIGIN, http_get, session_cookie, ws_answer, ws_open
from tests.support.live import ws_connect, ws_recv, ws_send

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

MISSING_ORDER = 987654321
STREAMS = ("order:A", "order:B", "order:missing", "mine", "staff")
OK, UNAUTH, FORBIDDEN = "ok", "unauthenticated", "forbidden"

# principal -> answer for each of STREAMS
MATRIX = {
    "anonymous": (UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH),
    "customer_a": (OK, FORBIDDEN, FORBIDDEN, OK, FORBIDDEN),
    "customer_b": (FORBIDDEN, OK, FORBIDDEN, OK, FORBIDDEN),
    "staff": (OK, OK, OK, OK, OK),
    "tracking_link_a": (OK, FORBIDDEN, FORBIDDEN, UNAUTH, UNAUTH),
    "tampered_link": (FORBIDDEN, FORBIDDEN, FORBIDDEN, UNAUTH, UNAUTH),
    "expired_link": (FORBIDDEN, FORBIDDEN, FORBIDDEN, UNAUTH, UNAUTH),
    "revoked_link": (FORBIDDEN, FORBIDDEN, FORBIDDEN, UNAUTH, UNAUTH),
    "api_token_a": (OK, FORBIDDEN, FORBIDDEN, OK, FORBIDDEN),
    "api_token_staff": (OK, OK, OK, OK, OK),
}
HTTP_STATUS = {OK: 200, UNAUTH: 401, FORBIDDEN: 403}


@dataclass
class Principal:
    name: str
    headers: list[tuple[bytes, bytes]]  # cookie / Authorization
    token: str | None  # tracking token: subscribe frame's ``token`` / ``X-Tracking-Token``
    visible_orders: set[int] | None  # None: every order


@dataclass
class World:
    a: Any  # Alice's order
    b: Any  # Bob's order
    principals: dict[str, Principal]

    def stream(self, name: str) -> str:
        ids = {"order:A": self.a.pk, "order:B": self.b.pk, "order:missing": MISSING_ORDER}
        return f"order:{ids[name]}" if name in ids else name

    def order_id(self, name: str) -> int:
        return {"order:A": self.a.pk, "order:B": self.b.pk, "order:missing": MISSING_ORDER}[name]

    def secrets(self) -> list[str]:
        """What a refusal must never contain."""
        out = []
        for order in (self.a, self.b):
            out += [order.reference, f"{order.total:.2f}", f'"{order.status}"']
        return out


def expired_token(order: Any) -> str:
    """A tracking token for ``order`` signed longer ago than TRACKING_TOKEN_MAX_AGE."""
    real = tracking_signer(order.customer_id)

    class OldSigner(signing.TimestampSigner):
        def timestamp(self) -> str:
            return signing.b62_encode(int(time.time()) - settings.TRACKING_TOKEN_MAX_AGE - 60)

    payload = {"o": order.pk, "v": order.tracking_version}
    token = OldSigner(salt=real.salt).sign_object(payload, compress=False)
    # Genuine apart from its age: without max_age it verifies.
    assert real.unsign_object(token) == payload
    return token


def tampered_token(real_token: str, order_id: int) -> str:
    """``real_token``'s timestamp and signature on another order id."""
    _, timestamp, signature = real_token.split(":")
    payload = signing.b64_encode(
        json.dumps({"o": order_id, "v": 1}, separators=(",", ":")).encode()
    )
    token = f"{payload.decode()}:{timestamp}:{signature}"
    with pytest.raises(signing.BadSignature):
        tracking_signer(0).unsign_object(token)
    return token


@pytest.fixture
def world(alice: Any, bob: Any, staff_user: Any, make_order: Any) -> World:
    from rest_framework.authtoken.models import Token

    a, b = make_order(alice, "paid"), make_order(bob, "shipped")
    revoked_link = make_tracking_token(a)
    a = revoke_tracking_links(a)
    link_a = make_tracking_token(a)

    def cookie(user: Any) -> list[tuple[bytes, bytes]]:
        return [(b"cookie", session_cookie(user).encode())]

    def api_token(user: Any) -> list[tuple[bytes, bytes]]:
        return [(b"authorization", f"Token {Token.objects.create(user=user).key}".encode())]

    principals = [
        Principal("anonymous", [], None, set()),
        Principal("customer_a", cookie(alice), None, {a.pk}),
        Principal("customer_b", cookie(bob), None, {b.pk}),
        Principal("staff", cookie(staff_user), None, None),
        Principal("tracking_link_a", [], link_a, {a.pk}),
        Principal("tampered_link", [], tampered_token(link_a, b.pk), set()),
        Principal("expired_link", [], expired_token(a), set()),
        Principal("revoked_link", [], revoked_link, set()),
        Principal("api_token_a", api_token(alice), None, {a.pk}),
        Principal("api_token_staff", api_token(staff_user), None, None),
    ]
    return World(a, b, {p.name: p for p in principals})


@dataclass
class Outcome:
    verdict: str  # ok / unauthenticated / forbidden
    text: str  # the refusal as the client saw it ("" when allowed)
    events: list[dict[str, Any]]  # events delivered at once (long-poll only)


# -- one attempt per transport ------------------------------------------------------


async def via_websocket(principal: Principal, stream: str) -> Outcome:
    ws, accepted, _ = await ws_open([(b"origin", ORIGIN), *principal.headers])
    assert accepted
    try:
        frame = {"action": "subscribe", "stream": stream, "after": 0}
        if principal.token is not None:
            frame["token"] = principal.token
        answer = await ws_answer(ws, frame)
    finally:
        await ws.disconnect()
    if answer["type"] == "subscribed":
        return Outcome(OK, "", [])
    assert answer["type"] == "error", answer
    assert set(answer) <= {"type", "code", "message", "stream"}, answer
    return Outcome(answer["code"], json.dumps(answer, sort_keys=True), [])


async def via_http(path: str, principal: Principal, stream: str, **extra: str) -> Outcome:
    params = {"stream": stream, "after": "0", **extra}
    headers = list(principal.headers)
    if principal.token is not None:
        headers.append((b"x-tracking-token", principal.token.encode()))
    answer = await http_get(path, urlencode(params).encode(), headers)
    if answer.status == 200:
        events = answer.json()["events"] if path == "/events/poll/" else []
        return Outcome(OK, "", events)
    assert answer.content_type == "application/json", answer
    verdict = {401: UNAUTH, 403: FORBIDDEN}.get(answer.status, f"HTTP {answer.status}")
    assert answer.json()["error"]["code"] == verdict
    return Outcome(verdict, answer.body.decode(), [])


async def via_sse(principal: Principal, stream: str) -> Outcome:
    return await via_http("/events/stream/", principal, stream)


async def via_long_poll(principal: Principal, stream: str) -> Outcome:
    return await via_http("/events/poll/", principal, stream, timeout="0")


TRANSPORTS = {"websocket": via_websocket, "sse": via_sse, "long_poll": via_long_poll}


def assert_refusals_say_nothing(world: World, outcomes: dict[str, Outcome]) -> None:
    for name, outcome in outcomes.items():
        if outcome.verdict != OK:
            for secret in world.secrets():
                assert secret not in outcome.text, (name, secret, outcome.text)

    def normalised(name: str) -> str:
        return outcomes[name].text.replace(str(world.order_id(name)), "<id>")

    if outcomes["order:B"].verdict != OK:
        # Another customer's order looks exactly like no order at all.
        assert outcomes["order:B"].verdict == outcomes["order:missing"].verdict
        assert normalised("order:B") == normalised("order:missing")


@pytest.mark.usefixtures("memory_layer")
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("principal", MATRIX)
async def test_each_principal_reads_exactly_the_streams_it_may(
    world: World, principal: str, transport: str
) -> None:
    who = world.principals[principal]
    outcomes = {name: await TRANSPORTS[transport](who, world.stream(name)) for name in STREAMS}
    assert {name: o.verdict for name, o in outcomes.items()} == dict(
        zip(STREAMS, MATRIX[principal], strict=True)
    )
    for outcome in outcomes.values():
        if who.visible_orders is not None:
            assert {e["order"]["id"] for e in outcome.events} <= who.visible_orders
    assert_refusals_say_nothing(world, outcomes)


# -- REST ---------------------------------------------------------------------------

# principal -> status for: detail A, detail B, detail missing, events?order=A,
# events?order=B, events?order=missing. The REST API takes no tracking links.
REST_MATRIX = {
    "anonymous": (401, 401, 401, 401, 401, 401),
    "customer_a": (200, 404, 404, 200, 403, 403),
    "customer_b": (404, 200, 404, 403, 200, 403),
    "staff": (200, 200, 404, 200, 200, 200),
    "tracking_link_a": (401, 401, 401, 401, 401, 401),
    "tampered_link": (401, 401, 401, 401, 401, 401),
    "expired_link": (401, 401, 401, 401, 401, 401),
    "revoked_link": (401, 401, 401, 401, 401, 401),
    "api_token_a": (200, 404, 404, 200, 403, 403),
    "api_token_staff": (200, 200, 404, 200, 200, 200),
}


async def rest_get(principal: Principal, path: str, params: dict[str, str]) -> Any:
    headers = list(principal.headers)
    if principal.token is not None:  # ignored: not a REST credential
        headers.append((b"x-tracking-token", principal.token.encode()))
    return await http_get(path, urlencode(params).encode(), headers)


@pytest.mark.usefixtures("memory_layer")
@pytest.mark.parametrize("principal", REST_MATRIX)
async def test_rest_order_detail_and_event_feed_follow_the_same_rule(
    world: World, principal: str
) -> None:
    who = world.principals[principal]
    statuses: list[int | None] = []
    texts: dict[tuple[str, str], str] = {}
    for kind in ("detail", "events"):
        for name in ("order:A", "order:B", "order:missing"):
            order_id = world.order_id(name)
            if kind == "detail":
                answer = await rest_get(who, f"/api/orders/{order_id}/", {})
            else:
                answer = await rest_get(who, "/api/events/", {"order": str(order_id), "after": "0"})
            statuses.append(answer.status)
            if answer.status == 200:
                body = answer.json()
                events = body["events"] if kind == "events" else body.get("events", [])
                if who.visible_orders is not None and kind == "events":
                    assert {e["order"]["id"] for e in events} <= who.visible_orders
            else:
                assert answer.content_type == "application/json"
                text = answer.body.decode()
                for secret in world.secrets():
                    assert secret not in text, (kind, name, secret)
                texts[(kind, name)] = text.replace(str(order_id), "<id>")
    assert tuple(statuses) == REST_MATRIX[principal]
    for kind in ("detail", "events"):
        if (kind, "order:B") in texts and (kind, "order:missing") in texts:
            assert texts[(kind, "order:B")] == texts[(kind, "order:missing")]

    # The whole feed: a customer sees only their own orders' events.
    answer = await rest_get(who, "/api/events/", {"after": "0"})
    if who.visible_orders is None or who.visible_orders:
        if principal.startswith("tracking"):
            assert answer.status == 401
        else:
            assert answer.status == 200
            orders = {e["order"]["id"] for e in answer.json()["events"]}
            assert orders
            if who.visible_orders is not None:
                assert orders <= who.visible_orders
    else:
        assert answer.status == 401


# -- one row per transport on a real server -------------------------------------------

LIVE_PRINCIPAL = "customer_b"


@pytest.mark.live
async def test_on_a_real_server_a_customer_is_refused_another_customers_order_everywhere(
    daphne_server: Any, world: World
) -> None:
    who = world.principals[LIVE_PRINCIPAL]
    expected = dict(zip(STREAMS, MATRIX[LIVE_PRINCIPAL], strict=True))
    cookies = dict(part.split("=", 1) for _, value in who.headers for part in [value.decode()])
    async with await ws_connect(daphne_server, cookies=cookies) as ws:
        for name in STREAMS:
            await ws_send(ws, {"action": "subscribe", "stream": world.stream(name), "after": 0})
            frame = await ws_recv(ws)
            while frame["type"] in ("event", "reset"):
                frame = await ws_recv(ws)
            verdict = OK if frame["type"] == "subscribed" else frame["code"]
            assert verdict == expected[name], ("websocket", name, frame)
    async with httpx.AsyncClient(base_url=daphne_server.url, cookies=cookies, timeout=10) as client:
        for name in STREAMS:
            query = {"stream": world.stream(name), "after": "0"}
            async with client.stream("GET", "/events/stream/", params=query) as response:
                assert response.status_code == HTTP_STATUS[expected[name]], ("sse", name)
            answer = await client.get("/events/poll/", params={**query, "timeout": "0"})
            assert answer.status_code == HTTP_STATUS[expected[name]], ("long-poll", name)
            if answer.status_code == 200:
                assert {e["order"]["id"] for e in answer.json()["events"]} <= {world.b.pk}
            else:
                assert world.a.reference not in answer.text
        rest = [
            (await client.get(f"/api/orders/{world.order_id(name)}/")).status_code
            for name in ("order:A", "order:B", "order:missing")
        ]
        assert rest == list(REST_MATRIX[LIVE_PRINCIPAL][:3])
